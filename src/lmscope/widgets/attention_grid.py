"""AttentionGrid: a heatmap per head of one layer (by="layer") or per layer of one head
(by="head"), optionally for two traces side by side or as their difference.

Each heatmap is max-pooled to at most `size` x `size` before it is synced (uint8 for
probabilities, float16 for differences), so 30 layers at 2048 tokens cost what 30 thumbnails
cost. `layer` and `head` are the selection: by="layer" shows every head of `layer` and rings
`head`, by="head" shows `head` in every layer and rings `layer`; clicking a heatmap sets both.
`link(lines)` makes an AttentionLines follow them.

On a long prompt (a layer's patterns too big for one block of `attention.BLOCK_BYTES`) every
panel (one trace, two side by side, or their difference) starts from a first pass
(`attention.first_pass_pool`: one query row per pooled row, a fraction of a second at 8,192
tokens) and is max-pooled exactly block by block while the kernel is idle (`status` says how
far, `exact` turns True; `fill_all()` without a loop); no [seq, seq] pattern of either trace
is computed whole or cached."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import traitlets as t

from lmscope import attention
from lmscope.errors import InputError, check_choice, check_count, check_index
from lmscope.options import keyword_options
from lmscope.widgets.base import LmscopeWidget, choice_check, index_check, static_bundle
from lmscope.widgets.traits import WireArray

if TYPE_CHECKING:
    from collections.abc import Iterator

    from lmscope.trace import Trace
    from lmscope.widgets.attention_lines import AttentionLines

MODES = ("single", "side", "diff")
FIRST_PASS = "first pass (one query row per pixel row)"


def _label(trace: Trace, limit: int = 40) -> str:
    text = trace.text.replace("\n", " ")
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    # an edited run and its original share their text: the panel titles tell them apart
    return f"{text} (edited)" if trace.edits else text


class AttentionGrid(LmscopeWidget):
    """Every head of a layer, or one head through every layer, as a grid of heatmaps."""

    _esm = static_bundle("attention_grid")

    n_layers = t.Int(1).tag(sync=True)
    n_heads = t.Int(1).tag(sync=True)
    by = t.Unicode("layer").tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    head = t.Int(0).tag(sync=True)
    mute_sink = t.Bool(False).tag(sync=True)
    mode = t.Unicode("single").tag(sync=True)
    can_diff = t.Bool(False).tag(sync=True)
    size = t.Int(128).tag(sync=True)
    labels = t.List(t.Unicode()).tag(sync=True)
    cells = t.List(t.List(t.Int())).tag(sync=True)  # (layer, head) of each heatmap
    names = t.List(t.Unicode()).tag(sync=True)  # prompt of each panel
    tokens = t.List(t.Unicode()).tag(sync=True)
    tokens_b = t.List(t.Unicode()).tag(sync=True)
    #: one [cells, r, r] heatmap stack per panel shown: "unit" probabilities or float16
    #: differences (mode "diff")
    panel_a = WireArray(kind="unit").tag(sync=True)
    panel_b = WireArray(kind="unit").tag(sync=True)
    diff = WireArray(kind="activation").tag(sync=True)
    exact = t.Bool(True).tag(sync=True)  # False while the heatmaps are a first pass
    status = t.Unicode("").tag(sync=True)  # progress of the exact pooling, "" when done

    @keyword_options
    def __init__(
        self,
        trace: Trace,
        *,
        layer: int = 0,
        head: int = 0,
        by: str = "layer",
        compare: Trace | None = None,
        mode: str | None = None,
        size: int = 128,
        mute_sink: bool = False,
    ) -> None:
        check_choice("by", by, attention.GRID_BY)
        layer = check_index("layer", layer, trace.n_layers)
        head = check_index("head", head, trace.n_heads)
        size = check_count("size", size, low=8, high=512)
        mode = check_choice("mode", mode or ("side" if compare is not None else "single"), MODES)
        if mode != "single" and compare is None:
            raise InputError(f"mode {mode!r} needs a second trace: pass compare=other_trace")
        can_diff = compare is not None and compare.seq_len == trace.seq_len
        if compare is not None and (compare.n_layers, compare.n_heads) != (
            trace.n_layers,
            trace.n_heads,
        ):
            raise InputError("compare must be a trace of the same model (same layers and heads)")
        if mode == "diff" and not can_diff:
            raise InputError(
                f"a difference needs prompts of the same length: {trace.seq_len} vs "
                f"{compare.seq_len} tokens; use mode='side'"
            )
        self._trace = trace
        self._compare = compare
        super().__init__(
            n_layers=trace.n_layers,
            n_heads=trace.n_heads,
            by=by,
            layer=layer,
            head=head,
            mute_sink=mute_sink,
            mode=mode,
            can_diff=can_diff,
            size=size,
            names=[_label(trace)] + ([_label(compare)] if compare is not None else []),
            tokens=list(trace.tokens),
            tokens_b=list(compare.tokens) if compare is not None else [],
        )
        self._refresh()
        self.observe(self._on_control, names=["by", "layer", "head", "mute_sink", "mode"])

    # -- what the browser may set ---------------------------------------------------------------
    _valid_layer = index_check("layer", size="n_layers")
    _valid_head = index_check("head", size="n_heads")
    _valid_by = choice_check("by", attention.GRID_BY)

    @t.validate("mode")
    def _valid_mode(self, proposal: dict) -> str:
        mode = check_choice("mode", proposal["value"], MODES)
        if mode != "single" and self._compare is None:
            raise InputError(f"mode {mode!r} needs a second trace (compare=...)")
        if mode == "diff" and not self.can_diff:
            raise InputError("a difference needs prompts of the same length; use 'side'")
        return mode

    @property
    def trace(self) -> Trace:
        return self._trace

    def _on_control(self, change: dict) -> None:
        # the selection moving within the cells on screen changes no heatmap
        within = {"layer": "head", "head": "layer"}.get(self.by)
        if change["name"] == within:
            return
        with self.reporting_errors():
            self._refresh()

    def _panels(self) -> list[tuple[str, Trace, Trace | None]]:
        """Each heatmap stack shown: its trait, its trace, and the trace subtracted from it."""
        if self.mode == "diff":
            return [("diff", self._trace, self._compare)]
        if self.mode == "side":
            return [("panel_a", self._trace, None), ("panel_b", self._compare, None)]
        return [("panel_a", self._trace, None)]

    def _refresh(self) -> None:
        """Every panel's heatmaps: exact at once on a short prompt; on a long one, each long
        layer's first pass now and its exact pooling block by block while the kernel is idle."""
        where, labels = attention.grid_cells(self._trace, self.by, self.layer, self.head)
        shown: dict[str, torch.Tensor | None] = dict.fromkeys(("panel_a", "panel_b", "diff"))
        pending = []  # (trait, trace, minus, long layers, their cells)
        for trait, tr, minus in self._panels():
            long = attention.long_layers(tr, where, self.size, minus=minus)
            opts = dict(mute_sink=self.mute_sink, minus=minus, long=long)
            shown[trait] = attention.grid_heatmaps(tr, where, self.size, first_pass=True, **opts)
            if long:
                pending.append((trait, tr, minus, long, shown[trait]))
        layers = range(self.n_layers) if self.by == "head" else [self.layer]
        with self.hold_sync():
            self.labels = labels
            self.cells = [list(w) for w in where]
            self.panel_a, self.panel_b, self.diff = shown.values()
            self.note = attention.notes(self._trace, layers)
            self.exact = not pending
            self.status = f"{FIRST_PASS}; exact max-pooling: 0%" if pending else ""
            self.error = ""
        if pending:
            self._start_steps(self._exact_steps(pending, where))
        else:
            self._steps = None  # a short grid now: nothing of an earlier one is still to come

    def _exact_steps(self, pending: list, where: list[tuple[int, int]]) -> Iterator[None]:
        """One block of query rows a step; each layer's exact heatmaps replace its first pass."""
        index = {cell: i for i, cell in enumerate(where)}
        total, n = sum(len(long) for _, _, _, long, _ in pending), 0
        for trait, tr, minus, long, cells in pending:
            r = cells.shape[-1]
            for layer, heads in long.items():
                out = torch.empty(len(heads), r, r)
                opts = dict(mute_sink=self.mute_sink, minus=minus)
                for done in attention.pool_blocks(tr, layer, heads, self.size, out, **opts):
                    self.status = f"{FIRST_PASS}; exact max-pooling: {(n + done) / total:.0%}"
                    yield
                n += 1
                for h, cell in zip(heads, out, strict=True):
                    cells[index[layer, h]] = cell
                setattr(self, trait, cells)
        with self.hold_sync():
            self.exact, self.status = True, ""

    def link(self, lines: AttentionLines) -> AttentionGrid:
        """Clicking a heatmap opens that layer and head in `lines` (one head, one block)."""
        if lines.trace is not self._trace:
            raise InputError("link an AttentionLines built on the same trace as this grid")

        def follow(change: dict) -> None:
            lines.show(self.layer, self.head)

        self.observe(follow, names=["layer", "head"])
        return self
