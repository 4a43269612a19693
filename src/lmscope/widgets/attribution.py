"""Attribution: which heads and MLPs wrote one logit, as a layers x heads grid of shares.

Python computes `trace.attribution(...)` (every head and MLP at one position) and syncs the
small table: [layers, heads] head shares, [layers] MLP and bias shares, float32. Clicking a
head selects it (`layer`, `head`, the shared selection's names); Python answers with that
head's share split by source position (`sources`, [seq]), which the view draws over the
prompt's tokens. Changing `token` (the attributed position), `target` or `foil` recomputes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import traitlets as t

from lmscope.errors import InputError, check_index, check_optional_index
from lmscope.lens import resolve_targets
from lmscope.options import keyword_options
from lmscope.widgets.base import LmscopeWidget, index_check, reports_errors, static_bundle
from lmscope.widgets.traits import WireArray

if TYPE_CHECKING:
    from lmscope.attribution import AttributionResult
    from lmscope.trace import Trace


class Attribution(LmscopeWidget):
    """Direct logit attribution of `target` after `token` (against `foil`), as a grid.

    `lmscope.Attribution(tr, target=" Poland", foil=" Warsaw")`. `token` is the attributed
    position (the selection's name; the analysis calls it `position`), `layer`/`head` the
    selected head (-1: none). The shares add up to the logit (or logit difference) shown in
    the header; see `Trace.attribution`.
    """

    _esm = static_bundle("attribution")

    n_layers = t.Int(1).tag(sync=True)
    n_heads = t.Int(1).tag(sync=True)
    tokens = t.List(t.Unicode()).tag(sync=True)  # the prompt, one label per position
    token = t.Int(0).tag(sync=True)  # the attributed position
    target = t.Int(0).tag(sync=True)  # vocabulary id
    foil = t.Int(-1).tag(sync=True)  # vocabulary id, -1 for none
    layer = t.Int(-1).tag(sync=True)  # the selected head's layer, -1 for none
    head = t.Int(-1).tag(sync=True)  # the selected head, -1 for none
    heads = WireArray(kind="table").tag(sync=True)  # [n_layers, n_heads]
    mlps = WireArray(kind="table").tag(sync=True)  # [n_layers]
    attn_bias = WireArray(kind="table").tag(sync=True)  # [n_layers], zeros if none
    summary = t.Dict().tag(sync=True)  # scalars and strings of the header
    sources = WireArray(kind="table").tag(sync=True)  # [seq] of the selected head
    #: shown by a dashboard: a button that opens the selected head in the attention view
    can_open = t.Bool(False).tag(sync=True)
    open_head = t.Int(0).tag(sync=True)  # bumped by that button

    @keyword_options
    def __init__(
        self,
        trace: Trace,
        *,
        target: int | str,
        token: int = -1,
        foil: int | str | None = None,
        layer: int = -1,
        head: int = -1,
    ) -> None:
        self._trace = trace
        self.result: AttributionResult | None = None
        target_id = self._token_id(target)
        foil_id = -1 if foil is None else self._token_id(foil)
        super().__init__(
            n_layers=trace.n_layers,
            n_heads=trace.n_heads,
            tokens=list(trace.tokens),
            token=check_index("token", token, trace.seq_len),
            target=target_id,
            foil=foil_id,
        )
        self._attribute()
        if layer != -1 or head != -1:
            self.select(layer, head)
        self.observe(self._on_question, names=["token", "target", "foil"])
        self.observe(self._on_head, names=["layer", "head"])

    @property
    def trace(self) -> Trace:
        return self._trace

    def close(self) -> None:
        super().close()
        self.result = None  # it refers to the trace too (for sources)

    def _token_id(self, token: int | str) -> int:
        tr = self._trace
        return resolve_targets(token, tr.tokenizer, tr.logits.shape[-1])[0]

    def attribute(
        self, target: int | str, *, token: int | None = None, foil: int | str | None = None
    ) -> None:
        """Attribute another target (after another token, against another foil) in one update."""
        position = check_index("token", self.token if token is None else token, self._trace.seq_len)
        target_id, foil_id = self._token_id(target), -1 if foil is None else self._token_id(foil)
        with self.changing_together(self._attribute):  # one recomputation for the three
            self.target, self.foil, self.token = target_id, foil_id, position

    def select(self, layer: int, head: int) -> None:
        """Select one head (its sources are shown); -1, -1 selects nothing."""
        if (layer, head) != (-1, -1):
            layer = check_optional_index("layer", layer, self.n_layers)
            head = check_optional_index("head", head, self.n_heads)
        with self.changing_together(self._push_sources):
            self.layer, self.head = layer, head

    _valid_token = index_check("token", size="tokens")
    _valid_layer = index_check("layer", size="n_layers", optional=True)
    _valid_head = index_check("head", size="n_heads", optional=True)

    @t.validate("target", "foil")
    def _valid_id(self, proposal: dict) -> int:
        value = proposal["value"]
        if proposal["trait"].name == "foil" and value == -1:
            return value
        return resolve_targets(value, None, self._trace.logits.shape[-1])[0]

    @reports_errors
    def _on_question(self, _change: dict | None = None) -> None:
        if not self._quiet:
            self._attribute()

    @reports_errors
    def _on_head(self, _change: dict | None = None) -> None:
        if not self._quiet:
            self._push_sources()

    def _attribute(self) -> None:
        if self.foil == self.target:
            raise InputError("target and foil are the same token: choose another foil")
        foil = None if self.foil == -1 else self.foil
        result = self._trace.attribution(self.target, position=self.token, foil=foil)
        self.result = result
        with self.hold_sync():
            self.heads = result.heads
            self.mlps = result.mlps
            self.attn_bias = result.attn_bias
            self.summary = {
                "target_token": result.target_token,
                "foil_token": result.foil_token if foil is not None else "",
                "attributed": result.attributed,
                "total": result.total,
                "model_value": result.model_value,
                "embed": result.embed,
                "rest": result.rest,
                "unexplained": result.unexplained,
                "final_norm": result.final_norm,
            }
            self._push_sources()

    def _push_sources(self) -> None:
        if self.result is None or self.layer < 0 or self.head < 0:
            self.sources = torch.zeros(0)
            return
        self.sources = self.result.sources(self.layer, self.head)
