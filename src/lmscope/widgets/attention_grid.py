"""AttentionGrid: a heatmap per head of one layer (by="layer") or per layer of one head
(by="head"), optionally for two traces side by side or as their difference.

Each heatmap is max-pooled to at most `size` x `size` before it is synced (uint8 for
probabilities, float16 for differences), so 30 layers at 2048 tokens cost what 30 thumbnails
cost. Clicking a cell sets `selected_layer`/`selected_head`; `link(lines)` makes an
AttentionLines follow those clicks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import traitlets as t

from lmscope import attention
from lmscope._wire import encode
from lmscope.errors import InputError, OutOfRangeError, check_index
from lmscope.widgets.base import LmscopeWidget, static_bundle

if TYPE_CHECKING:
    from lmscope.trace import Trace
    from lmscope.widgets.attention_lines import AttentionLines

MODES = ("single", "side", "diff")


def _label(trace: Trace, limit: int = 40) -> str:
    text = trace.text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AttentionGrid(LmscopeWidget):
    """Every head of a layer, or one head through every layer, as a grid of heatmaps."""

    _esm = static_bundle("attention_grid")

    n_layers = t.Int(1).tag(sync=True)
    n_heads = t.Int(1).tag(sync=True)
    by = t.Enum(attention.GRID_BY, "layer").tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    head = t.Int(0).tag(sync=True)
    mute_sink = t.Bool(False).tag(sync=True)
    mode = t.Enum(MODES, "single").tag(sync=True)
    can_diff = t.Bool(False).tag(sync=True)
    size = t.Int(128).tag(sync=True)
    labels = t.List(t.Unicode()).tag(sync=True)
    cells = t.List(t.List(t.Int())).tag(sync=True)  # (layer, head) of each heatmap
    names = t.List(t.Unicode()).tag(sync=True)  # prompt of each panel
    tokens = t.List(t.Unicode()).tag(sync=True)
    tokens_b = t.List(t.Unicode()).tag(sync=True)
    panels = t.List(t.Dict()).tag(sync=True)  # one envelope [cells, r, r] per panel shown
    selected_layer = t.Int(-1).tag(sync=True)
    selected_head = t.Int(-1).tag(sync=True)

    def __init__(
        self,
        trace: Trace,
        layer: int = 0,
        by: str = "layer",
        *,
        head: int = 0,
        compare: Trace | None = None,
        mode: str | None = None,
        size: int = 128,
        mute_sink: bool = False,
        **kwargs: Any,
    ) -> None:
        if by not in attention.GRID_BY:
            raise InputError(f"by must be one of {attention.GRID_BY}, got {by!r}")
        layer = check_index("layer", layer, trace.n_layers)
        head = check_index("head", head, trace.n_heads)
        if not 8 <= size <= 512:
            raise OutOfRangeError(f"size {size} is out of range: valid 8..512")
        mode = mode or ("side" if compare is not None else "single")
        if mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {mode!r}")
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
            **kwargs,
        )
        self._refresh()
        self.observe(self._on_control, names=["by", "layer", "head", "mute_sink", "mode"])

    @property
    def trace(self) -> Trace:
        return self._trace

    def _on_control(self, change: dict) -> None:
        with self.reporting_errors():
            self._refresh()

    def _refresh(self) -> None:
        check_index("layer", self.layer, self.n_layers)
        check_index("head", self.head, self.n_heads)
        if self.mode != "single" and self._compare is None:
            raise InputError(f"mode {self.mode!r} needs a second trace (compare=...)")
        if self.mode == "diff" and not self.can_diff:
            raise InputError("a difference needs prompts of the same length; use 'side'")
        opts = dict(
            by=self.by, layer=self.layer, head=self.head, size=self.size, mute_sink=self.mute_sink
        )
        panels = []
        if self.mode == "diff":
            diff = attention.grid_difference(self._trace, self._compare, **opts)
            panels.append(encode(diff.numpy().astype("float16")))
            where, labels = attention.grid_cells(self._trace, self.by, self.layer, self.head)
        else:
            cells, labels, where = attention.grid(self._trace, **opts)
            panels.append(encode(_quantize(cells)))
            if self.mode == "side":
                cells_b, _, _ = attention.grid(self._compare, **opts)
                panels.append(encode(_quantize(cells_b)))
        with self.hold_sync():
            self.labels = labels
            self.cells = [list(w) for w in where]
            self.panels = panels
            self.error = ""

    def link(self, lines: AttentionLines) -> AttentionGrid:
        """Clicking a heatmap opens that layer and head in `lines` (one head, one block)."""
        if lines.trace is not self._trace:
            raise InputError("link an AttentionLines built on the same trace as this grid")

        def follow(change: dict) -> None:
            if self.selected_layer < 0 or self.selected_head < 0:
                return
            lines.show(self.selected_layer, self.selected_head)

        self.observe(follow, names=["selected_layer", "selected_head"])
        return self


def _quantize(cells: torch.Tensor) -> np.ndarray:
    return (cells.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
