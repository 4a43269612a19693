"""TokenColors: the text redrawn with each token on its spectral color, three rows per layer.

Rows: attention output, MLP output and residual stream at the selected layer (colors from
`lmscope.coloring.token_colors`, aligned across layers). A slider and a play button step
through the layers; hovering a token outlines its nearest neighbours at that layer; clicking
selects it (`selected_token`, which a Dashboard links to the other views' selection).

What travels: the colors of every layer as one uint8 array `[3, n_layers, seq, 3]` (3 bytes per
token per layer per row: 270 KB for 30 layers at 1024 tokens), so playing through layers and a
saved HTML page need no kernel; and, for the current layer only, an int32 `[3, seq, k]`
neighbour table recomputed in Python when the layer changes. Token text is a list of strings
rendered with `fillText` on a canvas, never as markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import traitlets as t

from lmscope import coloring
from lmscope._wire import encode
from lmscope.errors import InputError, check_index
from lmscope.widgets.base import LmscopeWidget, static_bundle

if TYPE_CHECKING:
    from lmscope.trace import Trace

ROW_TITLES = {
    "attn_out": "attention output",
    "mlp_out": "MLP output",
    "resid_post": "residual stream",
}


class TokenColors(LmscopeWidget):
    """Spectral token colors of one trace, layer by layer (see the module docstring)."""

    _esm = static_bundle("token_colors")

    texts = t.List(t.Unicode()).tag(sync=True)  # exact text pieces, reflowed by the view
    tokens = t.List(t.Unicode()).tag(sync=True)  # display strings (spaces/newlines visible)
    streams = t.List(t.Unicode()).tag(sync=True)
    titles = t.List(t.Unicode()).tag(sync=True)
    n_layers = t.Int(1).tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    colors = t.Dict().tag(sync=True)  # uint8 [n_streams, n_layers, seq, 3]
    k = t.Int(5).tag(sync=True)
    neighbors = t.Dict().tag(sync=True)  # int32 [n_streams, seq, k], -1 = none
    neighbors_layer = t.Int(-1).tag(sync=True)  # the layer `neighbors` belongs to
    selected_token = t.Int(-1).tag(sync=True)
    play_interval = t.Int(600).tag(sync=True)  # ms per layer while playing

    def __init__(
        self,
        trace: Trace,
        layer: int | None = None,
        *,
        streams: tuple[str, ...] = coloring.COLOR_STREAMS,
        k: int = 5,
        seed: int = 0,
        selected_token: int = -1,
        **kwargs: Any,
    ) -> None:
        streams = tuple(streams)
        if not streams or any(s not in coloring.COLOR_STREAMS for s in streams):
            raise InputError(f"streams must be some of {coloring.COLOR_STREAMS}, got {streams!r}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 32:
            raise InputError(f"k must be an integer in 1..32, got {k!r}")
        layer = (
            trace.n_layers // 2 if layer is None else check_index("layer", layer, trace.n_layers)
        )
        self.trace = trace
        self.seed = seed
        rgb = torch.stack([coloring.token_colors(trace, s, seed=seed) for s in streams])
        super().__init__(
            texts=list(trace.token_texts),
            tokens=list(trace.tokens),
            streams=list(streams),
            titles=[ROW_TITLES[s] for s in streams],
            n_layers=trace.n_layers,
            layer=layer,
            colors=encode((rgb * 255).round().to(torch.uint8).numpy()),
            k=k,
            selected_token=selected_token,
            **kwargs,
        )
        self._update_neighbors()
        self.observe(self._on_layer, names=["layer"])

    def neighbor_table(self, layer: int) -> np.ndarray:
        """int32 [n_streams, seq, k]: each token's nearest tokens at `layer`, one row per stream."""
        layer = check_index("layer", layer, self.trace.n_layers)
        tables = [coloring.token_neighbors(self.trace, s, layer, self.k) for s in self.streams]
        return torch.stack(tables).to(torch.int32).numpy()

    def _update_neighbors(self) -> None:
        table = self.neighbor_table(self.layer)
        with self.hold_sync():
            self.neighbors = encode(table)
            self.neighbors_layer = self.layer

    @t.validate("layer")
    def _valid_layer(self, proposal: dict) -> int:
        return check_index("layer", proposal["value"], self.n_layers)

    @t.validate("selected_token")
    def _valid_selection(self, proposal: dict) -> int:
        value = proposal["value"]
        return -1 if value == -1 else check_index("position", value, len(self.texts))

    def _on_layer(self, change: dict) -> None:
        with self.reporting_errors():
            self._update_neighbors()
            self.error = ""
