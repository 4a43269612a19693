"""TokenView: the trace's tokens with their ids, selectable. The smallest complete view: it
exercises the wire (ids as int32, the per-token probability of the model's own next-token
prediction as float16), selection flowing both ways, errors and the static export."""

from __future__ import annotations

from typing import Any

import torch
import traitlets as t

from lmscope.errors import check_index
from lmscope.widgets.base import LmscopeWidget, reports_errors, static_bundle
from lmscope.widgets.traits import WireArray


class TokenView(LmscopeWidget):
    _esm = static_bundle("tokens")

    tokens = t.List(t.Unicode()).tag(sync=True)
    ids = WireArray(kind="index").tag(sync=True)
    #: probability the model gave each token when predicting it (first token: none, 0)
    confidence = WireArray(kind="prob").tag(sync=True)
    selected_token = t.Int(-1).tag(sync=True)
    #: the selected token's top next-token predictions, pushed by Python on selection
    predictions = t.List(t.Unicode()).tag(sync=True)

    def __init__(self, trace: Any, selected_token: int = -1, **kwargs: Any) -> None:
        self._trace = trace
        ids = trace.input_ids
        probs = torch.zeros(len(ids))
        logits = getattr(trace, "logits", None)
        if logits is not None and len(ids) > 1:
            with torch.no_grad():
                prev = torch.log_softmax(logits[:-1].float(), dim=-1)
                probs[1:] = prev.gather(1, ids[1:, None].to(prev.device))[:, 0].exp().cpu()
        super().__init__(tokens=list(trace.tokens), ids=ids, confidence=probs, **kwargs)
        self.selected_token = selected_token
        self._predict()

    @t.validate("selected_token")
    def _valid_selection(self, proposal: dict) -> int:
        value = proposal["value"]
        return -1 if value == -1 else check_index("token", value, len(self.tokens))

    @t.observe("selected_token")
    @reports_errors
    def _predict(self, _change: Any = None) -> None:
        i = self.selected_token
        logits = getattr(self._trace, "logits", None)
        if i < 0 or logits is None:
            self.predictions = []
            return
        probs = torch.softmax(logits[i].float(), dim=-1)
        top = torch.topk(probs, 5)
        strings = getattr(self._trace, "token_strings", None)
        names = (
            strings(top.indices.tolist()) if strings else [f"#{j}" for j in top.indices.tolist()]
        )
        self.predictions = [f"{n} {p:.1%}" for n, p in zip(names, top.values.tolist(), strict=True)]
