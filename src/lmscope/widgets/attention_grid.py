"""AttentionGrid: a heatmap per head of one layer (by="layer") or per layer of one head
(by="head"), optionally for two traces side by side or as their difference.

Each heatmap is max-pooled to at most `size` x `size` before it is synced (uint8 for
probabilities, float16 for differences), so 30 layers at 2048 tokens cost what 30 thumbnails
cost. `layer` and `head` are the selection: by="layer" shows every head of `layer` and rings
`head`, by="head" shows `head` in every layer and rings `layer`; clicking a heatmap sets both.
`link(lines)` makes an AttentionLines follow them.

On a long prompt (a layer's patterns too big for one block of `attention.BLOCK_BYTES`) a single
grid starts from a first pass (`attention.first_pass_pool`: one query row per pooled row, a
fraction of a second at 8,192 tokens) and is max-pooled exactly block by block while the
kernel is idle (`status` says how far, `exact` turns True; `fill_all()` without a loop)."""

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
    from lmscope.trace import Trace
    from lmscope.widgets.attention_lines import AttentionLines

MODES = ("single", "side", "diff")


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

    def _long_groups(self) -> dict[int, list[int]]:
        """The layers of the cells shown (each with its heads) that pool block by block."""
        where, _ = attention.grid_cells(self._trace, self.by, self.layer, self.head)
        groups: dict[int, list[int]] = {}
        for layer, head in where:
            groups.setdefault(layer, []).append(head)
        return {
            layer: heads
            for layer, heads in groups.items()
            if attention.pools_by_blocks(self._trace, layer, heads, self.size)
        }

    def _first_pass(self, long: dict[int, list[int]]) -> None:
        """A long prompt's grid: first-pass heatmaps now, the exact ones while idle."""
        tr = self._trace
        where, labels = attention.grid_cells(tr, self.by, self.layer, self.head)
        r = min(tr.seq_len, self.size)
        cells = torch.empty(len(where), r, r)
        index = {cell: i for i, cell in enumerate(where)}
        for layer, heads in long.items():
            first = attention.first_pass_pool(tr, layer, heads, self.size, mute_sink=self.mute_sink)
            for h, cell in zip(heads, first, strict=True):
                cells[index[layer, h]] = cell
        for i, (layer, h) in enumerate(where):
            if layer not in long:  # short enough: exact at once, as on a short prompt
                m = tr.head(layer, h).float()
                m = attention.without_sink(m) if self.mute_sink else m
                cells[i] = attention.pool(m, self.size)
        shown = range(self.n_layers) if self.by == "head" else [self.layer]
        with self.hold_sync():
            self.labels = labels
            self.cells = [list(w) for w in where]
            self.panel_a, self.panel_b, self.diff = cells, None, None
            self.note = attention.notes(tr, shown)
            self.exact = False
            self.status = "first pass (one query row per pixel row); exact max-pooling: 0%"
            self.error = ""
        self._start_steps(self._exact_steps(long, cells, index))

    def _exact_steps(self, long: dict[int, list[int]], cells: torch.Tensor, index: dict):
        """One block of query rows a step; each layer's exact heatmaps replace its first pass."""
        r = cells.shape[-1]
        for n, (layer, heads) in enumerate(long.items()):
            out = torch.empty(len(heads), r, r)
            steps = attention.pool_blocks(
                self._trace, layer, heads, self.size, out, mute_sink=self.mute_sink
            )
            for done in steps:
                share = (n + done) / len(long)
                self.status = f"first pass (one query row per pixel row); exact: {share:.0%}"
                yield
            for h, cell in zip(heads, out, strict=True):
                cells[index[layer, h]] = cell
            self.panel_a = cells
        with self.hold_sync():
            self.exact, self.status = True, ""

    def _refresh(self) -> None:
        opts = dict(
            by=self.by, layer=self.layer, head=self.head, size=self.size, mute_sink=self.mute_sink
        )
        long = self._long_groups() if self.mode == "single" else {}
        if long:
            self._first_pass(long)
            return
        self._steps = None  # a short grid now: nothing of an earlier one is still to come
        a = b = diff = None
        if self.mode == "diff":
            diff = attention.grid_difference(self._trace, self._compare, **opts)
            where, labels = attention.grid_cells(self._trace, self.by, self.layer, self.head)
        else:
            a, labels, where = attention.grid(self._trace, **opts)
            if self.mode == "side":
                b, _, _ = attention.grid(self._compare, **opts)
        with self.hold_sync():
            self.labels = labels
            self.cells = [list(w) for w in where]
            self.panel_a, self.panel_b, self.diff = a, b, diff
            self.exact, self.status = True, ""
            shown = range(self.n_layers) if self.by == "head" else [self.layer]
            self.note = attention.notes(self._trace, shown)
            self.error = ""

    def link(self, lines: AttentionLines) -> AttentionGrid:
        """Clicking a heatmap opens that layer and head in `lines` (one head, one block)."""
        if lines.trace is not self._trace:
            raise InputError("link an AttentionLines built on the same trace as this grid")

        def follow(change: dict) -> None:
            lines.show(self.layer, self.head)

        self.observe(follow, names=["layer", "head"])
        return self
