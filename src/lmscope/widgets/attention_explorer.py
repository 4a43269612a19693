"""AttentionExplorer: the heatmap grid above the line diagram, one selection for both.

`layer` and `head` are the selection (the grid's own, linked both ways): a click on a heatmap
opens that layer and head in the line diagram, and so does setting them from Python or through
a Dashboard's shared selection. The line diagram keeps its own controls (a range of layers, the
mean or max over heads) until the selection moves again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import traitlets as t

from lmscope.errors import check_index
from lmscope.options import keyword_options
from lmscope.widgets.attention_grid import AttentionGrid
from lmscope.widgets.attention_lines import AttentionLines
from lmscope.widgets.base import LmscopeComposite

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
    ) -> None:
        layer = check_index("layer", layer, trace.n_layers)
        head = check_index("head", head, trace.n_heads)
        self.grid = AttentionGrid(trace, layer=layer, head=head, size=size, mute_sink=mute_sink)
        self.lines = AttentionLines(trace, layer=layer, head=head, mute_sink=mute_sink)
        super().__init__([self.grid, self.lines])
        self.layer, self.head = layer, head
        for name in ("layer", "head"):
            t.link((self, name), (self.grid, name))
        self.observe(self._follow, names=["layer", "head"])

    @property
    def trace(self) -> Trace:
        return self.grid.trace

    @t.validate("layer")
    def _valid_layer(self, proposal: dict) -> int:
        return check_index("layer", proposal["value"], self.grid.n_layers)

    @t.validate("head")
    def _valid_head(self, proposal: dict) -> int:
        return check_index("head", proposal["value"], self.grid.n_heads)

    def _follow(self, _change: dict) -> None:
        with self.reporting_errors():
            self.lines.show(self.layer, self.head)

    def _export_title(self) -> str:
        return "lmscope: attention"
