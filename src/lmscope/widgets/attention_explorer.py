"""AttentionExplorer: the heatmap grid above the line diagram, one selection for both.

`layer` and `head` are the selection (the grid's own, linked both ways): a click on a heatmap
opens that layer and head in the line diagram, and so does setting them from Python or through
a Dashboard's shared selection. The line diagram keeps its own controls (a range of layers, the
mean or max over heads) until the selection moves again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import traitlets as t

from lmscope.options import keyword_options
from lmscope.widgets.attention_grid import AttentionGrid
from lmscope.widgets.attention_lines import AttentionLines
from lmscope.widgets.base import LmscopeComposite, index_check

if TYPE_CHECKING:
    from lmscope.trace import Trace


class AttentionExplorer(LmscopeComposite):
    """Every head of a layer as heatmaps (`grid`) and the selected one as lines (`lines`)."""

    layer = t.Int(0)
    head = t.Int(0)

    @keyword_options
    def __init__(
        self,
        trace: Trace,
        *,
        layer: int = 0,
        head: int = 0,
        size: int = 96,
        mute_sink: bool = False,
        compare: Trace | None = None,
        mode: str | None = None,
    ) -> None:
        # `compare` / `mode` go to the grid (AttentionGrid's side-by-side or difference heatmaps)
        self.grid = AttentionGrid(
            trace,
            layer=layer,
            head=head,
            size=size,
            mute_sink=mute_sink,
            compare=compare,
            mode=mode,
        )
        self.lines = AttentionLines(trace, layer=layer, head=head, mute_sink=mute_sink)
        super().__init__([self.grid, self.lines])
        self.layer, self.head = layer, head
        for name in ("layer", "head"):
            t.link((self, name), (self.grid, name))
        self.observe(self._follow, names=["layer", "head"])

    @property
    def trace(self) -> Trace:
        return self.grid.trace

    _valid_layer = index_check("layer", size="n_layers")
    _valid_head = index_check("head", size="n_heads")

    @property
    def n_layers(self) -> int:
        return self.grid.n_layers

    @property
    def n_heads(self) -> int:
        return self.grid.n_heads

    def _follow(self, _change: dict) -> None:
        with self.reporting_errors():
            self.lines.show(self.layer, self.head)

    def _export_title(self) -> str:
        return "lmscope: attention"
