"""TokenView: the trace's tokens with their ids, selectable. The smallest complete view: it
exercises the wire (ids as int32, the per-token probability of the model's own next-token
prediction as float16), selection flowing both ways (a click sets `token`, Python
answers with `predictions`), a bulk request (every position's top next tokens, fetched once on
first hover), errors under the view, and the static export."""

from __future__ import annotations

from typing import Any

import torch
import traitlets as t

from lmscope import _wire
from lmscope.errors import check_count
from lmscope.options import keyword_options
from lmscope.widgets.base import (
    LmscopeWidget,
    index_check,
    reports_errors,
    request_handler,
    static_bundle,
)
from lmscope.widgets.traits import WireArray

#: logits softmaxed at once (float32 elements: 16 MB). A block this small is served again from
#: the allocator's free memory; a block of 1,024 rows of a 49k vocabulary (200 MB) is mapped
#: afresh each time (8,192 x 49,152 logits: 0.35 s in blocks of 128 rows, 0.83-0.91 s in 1,024).
BLOCK_ELEMENTS = 1 << 22


def _block_rows(vocab: int) -> int:
    return max(1, BLOCK_ELEMENTS // vocab)


class TokenView(LmscopeWidget):
    """Each token as a chip with its id, shaded by how confidently the model predicted it;
    `token` is the selection (-1: none), shared with a Dashboard's."""

    _esm = static_bundle("tokens")

    tokens = t.List(t.Unicode()).tag(sync=True)
    ids = WireArray(kind="index").tag(sync=True)
    #: probability the model gave each token when predicting it (first token: none, 0)
    confidence = WireArray(kind="prob").tag(sync=True)
    token = t.Int(-1).tag(sync=True)
    #: the selected token's top next-token predictions, pushed by Python on selection
    predictions = t.List(t.Unicode()).tag(sync=True)

    @keyword_options
    def __init__(self, trace: Any, *, token: int = -1) -> None:
        self._trace = trace
        ids = trace.input_ids
        probs = torch.zeros(len(ids))
        logits = getattr(trace, "logits", None)
        if logits is not None and len(ids) > 1:
            with torch.no_grad():
                # a block of rows at a time: the whole [seq, vocab] in float32 is 1.6 GB at 8k
                rows = _block_rows(logits.shape[-1])
                for a in range(0, len(ids) - 1, rows):
                    prev = torch.log_softmax(
                        logits[a : min(a + rows, len(ids) - 1)].float(), dim=-1
                    )
                    nxt = ids[a + 1 : a + 1 + prev.shape[0], None].to(prev.device)
                    probs[a + 1 : a + 1 + prev.shape[0]] = prev.gather(1, nxt)[:, 0].exp().cpu()
        super().__init__(tokens=list(trace.tokens), ids=ids, confidence=probs)
        self.token = token
        self._predict()

    _valid_token = index_check("token", size="tokens", optional=True)

    @t.observe("token")
    @reports_errors
    def _predict(self, _change: Any = None) -> None:
        i = self.token
        logits = getattr(self._trace, "logits", None)
        if i < 0 or logits is None:
            self.predictions = []
            return
        probs = torch.softmax(logits[i].float(), dim=-1)
        top = torch.topk(probs, 5)
        names = self._names(top.indices.tolist())
        self.predictions = [f"{n} {p:.1%}" for n, p in zip(names, top.values.tolist(), strict=True)]

    def _names(self, ids: list[int]) -> list[str]:
        strings = getattr(self._trace, "token_strings", None)
        return strings(ids) if strings else [f"#{j}" for j in ids]

    @request_handler("next_tokens")
    def _next_tokens(self, top_k: int = 3) -> tuple[dict, list]:
        """Every position's top-k next tokens: strings as JSON, probabilities as one float16
        buffer of shape [seq, top_k] (the view prefetches this once, for its tooltips)."""
        logits = getattr(self._trace, "logits", None)
        if logits is None:
            raise ValueError("this trace kept no logits, so there are no predictions to show")
        k = check_count("top_k", top_k, high=10)
        values, indices = [], []
        with torch.no_grad():
            rows = _block_rows(logits.shape[-1])
            for a in range(0, logits.shape[0], rows):
                top = torch.topk(torch.softmax(logits[a : a + rows].float(), dim=-1), k, dim=-1)
                values.append(top.values.cpu())
                indices.append(top.indices.cpu())
        ids = torch.cat(indices)
        names = self._names(ids.flatten().tolist())
        rows = [names[i * k : (i + 1) * k] for i in range(ids.shape[0])]
        env = _wire.encode(torch.cat(values), "prob")
        result = {"tokens": rows, "probs": {"dtype": env["dtype"], "shape": env["shape"]}}
        return result, [env["data"]]
