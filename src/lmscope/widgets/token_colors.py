"""TokenColors: the text redrawn with each token on its spectral color, three rows per layer.

Rows: attention output, MLP output and residual stream at the selected layer (colors from
`lmscope.coloring.token_colors`, aligned across layers). A slider and a play button step
through the layers; hovering a token outlines its `n_neighbors` nearest neighbours at that
layer; clicking selects it (`token`, which a Dashboard links to the other views' selection).

What travels: the colors of every layer as one uint8 array `[3, n_layers, seq, 3]` (3 bytes per
token per layer per row: 270 KB for 30 layers at 1024 tokens), so playing through layers and a
saved HTML page need no kernel; and, for the current layer only, an int32
`[3, seq, n_neighbors]`
neighbour table recomputed in Python when the layer changes. Token text is a list of strings
rendered with `fillText` on a canvas, never as markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import traitlets as t

from lmscope import coloring
from lmscope.errors import check_choices, check_count, check_index
from lmscope.options import keyword_options
from lmscope.trace import VIEW_STREAMS
from lmscope.widgets.base import (
    STREAM_TITLES,
    LmscopeWidget,
    index_check,
    reports_errors,
    static_bundle,
)
from lmscope.widgets.traits import WireArray

if TYPE_CHECKING:
    from lmscope.trace import Trace


class TokenColors(LmscopeWidget):
    """Spectral token colors of one trace, layer by layer (see the module docstring)."""

    _esm = static_bundle("token_colors")

    texts = t.List(t.Unicode()).tag(sync=True)  # exact text pieces, reflowed by the view
    tokens = t.List(t.Unicode()).tag(sync=True)  # display strings (spaces/newlines visible)
    streams = t.List(t.Unicode()).tag(sync=True)
    titles = t.List(t.Unicode()).tag(sync=True)
    n_layers = t.Int(1).tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    colors = WireArray(kind="unit").tag(sync=True)  # [n_streams, n_layers, seq, 3]
    n_neighbors = t.Int(5).tag(sync=True)
    neighbors = WireArray(kind="index").tag(sync=True)  # [n_streams, seq, n_neighbors], -1 = none
    neighbors_layer = t.Int(-1).tag(sync=True)  # the layer `neighbors` belongs to
    token = t.Int(-1).tag(sync=True)
    play_interval = t.Int(600).tag(sync=True)  # ms per layer while playing

    @keyword_options
    def __init__(
        self,
        trace: Trace,
        *,
        layer: int | None = None,
        streams: tuple[str, ...] = VIEW_STREAMS,
        n_neighbors: int = 5,
        seed: int = 0,
        token: int = -1,
    ) -> None:
        streams = check_choices("streams", streams, VIEW_STREAMS)
        n_neighbors = check_count("n_neighbors", n_neighbors, high=32)
        layer = (
            trace.n_layers // 2 if layer is None else check_index("layer", layer, trace.n_layers)
        )
        self.trace = trace
        self.seed = seed
        rgb = torch.stack([coloring.token_colors(trace, stream=s, seed=seed) for s in streams])
        super().__init__(
            texts=list(trace.token_texts),
            tokens=list(trace.tokens),
            streams=list(streams),
            titles=[STREAM_TITLES[s] for s in streams],
            n_layers=trace.n_layers,
            layer=layer,
            colors=rgb,
            n_neighbors=n_neighbors,
            token=token,
        )
        self._update_neighbors()
        self.observe(self._on_layer, names=["layer"])

    def neighbor_table(self, layer: int) -> np.ndarray:
        """int32 [n_streams, seq, n_neighbors]: each token's nearest tokens at `layer`, one row
        per stream."""
        layer = check_index("layer", layer, self.trace.n_layers)
        tables = [
            coloring.token_neighbors(
                self.trace, stream=s, layer=layer, n_neighbors=self.n_neighbors
            )
            for s in self.streams
        ]
        return torch.stack(tables).to(torch.int32).numpy()

    def _update_neighbors(self) -> None:
        table = self.neighbor_table(self.layer)
        with self.hold_sync():
            self.neighbors = table
            self.neighbors_layer = self.layer

    _valid_layer = index_check("layer", size="n_layers")
    _valid_token = index_check("token", size="texts", optional=True)

    @reports_errors
    def _on_layer(self, _change: dict) -> None:
        self._update_neighbors()
