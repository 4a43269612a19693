"""Attribution: which heads and MLPs wrote one logit, as a layers x heads grid of shares.

Python computes `trace.attribution(...)` (every head and MLP at one position) and syncs the
small table: [layers, heads] head shares, [layers] MLP and bias shares, float32, and each
block's share read from the stored stream (`blocks`). Past `SPLIT_AT_ONCE` tokens the first
state is the stream's part only (every block's share, the embeddings', the total: no block run)
and the blocks are split into heads and MLP one per step while the kernel is idle, the largest
|share| first (`status` says how far, `exact` turns True; `fill_all()` without a loop; NaN marks
a block not split yet). Clicking a head selects it (`layer`, `head`, the shared selection's
names; a block not split yet is split then); Python answers with that head's share split by
source position (`sources`, [seq]), which the view draws over the prompt's tokens. Changing
`token` (the attributed position), `target` or `foil` recomputes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import traitlets as t

from lmscope.attribution import StagedAttribution
from lmscope.errors import InputError, check_index, check_optional_index
from lmscope.lens import resolve_targets
from lmscope.options import keyword_options
from lmscope.widgets.base import LmscopeWidget, index_check, reports_errors, static_bundle
from lmscope.widgets.traits import WireArray

if TYPE_CHECKING:
    from lmscope.attribution import AttributionResult
    from lmscope.trace import Trace

#: prompts up to this long are split into every head and MLP before the first state; longer
#: ones show each block's share from the stream first (a 30-layer split at 8,192 tokens takes
#: tens of seconds on a CPU: the attention's keys and values of every layer over the prompt)
SPLIT_AT_ONCE = 1024


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
    blocks = WireArray(kind="table").tag(sync=True)  # [n_layers] each block's share (stream)
    exact = t.Bool(True).tag(sync=True)  # False while blocks are still being split
    status = t.Unicode("").tag(sync=True)  # how far the split is, "" when done
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
        self._staged: StagedAttribution | None = None
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
        self.result = self._staged = None  # they refer to the trace too (for sources)

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
        tr = self._trace
        self._steps = None  # an earlier question's split is not wanted any more
        staged = StagedAttribution(tr, self.target, position=self.token, foil=foil)
        self._staged = staged
        if tr.seq_len <= SPLIT_AT_ONCE:
            staged.split(range(tr.n_layers))
        else:
            selected = [self.layer] if self.layer >= 0 and self.head >= 0 else []
            staged.split(selected)
            self._start_steps(self._split_rest(staged))
        self._sync(staged)

    def _split_rest(self, staged: StagedAttribution):
        """The blocks not split yet, the largest |share| first, one a step."""
        order = sorted(staged.pending, key=lambda layer: -abs(float(staged.blocks[layer])))
        for layer in order:
            if self._staged is not staged:
                return
            staged.split([layer])
            self._sync(staged, sources=False)
            yield

    def _sync(self, staged: StagedAttribution, *, sources: bool = True) -> None:
        result = staged.result()
        self.result = result
        n_layers = result.n_layers
        done = n_layers - len(result.pending)
        with self.hold_sync():
            self.heads = result.heads
            self.mlps = result.mlps
            self.attn_bias = result.attn_bias
            self.blocks = result.blocks
            self.summary = {
                "target_token": result.target_token,
                "foil_token": result.foil_token if result.foil is not None else "",
                "attributed": result.attributed,
                "total": result.total,
                "model_value": result.model_value,
                "embed": result.embed,
                "rest": result.rest,
                "unexplained": result.unexplained,
                "final_norm": result.final_norm,
                "route": result.route,
            }
            self.exact = result.complete
            self.status = (
                ""
                if result.complete
                else f"heads and MLPs of {done} of {n_layers} blocks so far (the largest "
                "blocks first; the others show their share from the stream)"
            )
            if sources:
                self._push_sources()

    def _push_sources(self) -> None:
        if self.result is None or self.layer < 0 or self.head < 0:
            self.sources = torch.zeros(0)
            return
        if self.layer in self.result.pending and self._staged is not None:
            self._staged.split([self.layer])  # a click on a block not split yet: split it now
            self._sync(self._staged, sources=False)
        self.sources = self.result.sources(self.layer, self.head)
