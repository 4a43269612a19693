"""NormStrips: NormPlot's strips as an lmscope view, every token's log norm at every layer on
one canvas (js/views/norm_strips.js). bqplot drew one SVG element per point, 2.4 s to paint
8,000 of them; 30 layers x 8,192 tokens is 245,000 points."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from lmscope.widgets.base import LmscopeWidget, index_check, static_bundle
from lmscope.widgets.traits import WireArray

#: how far a point may stand from its layer, in layers (the jitter travels as uint8 over it)
JITTER = 0.3


class NormStrips(LmscopeWidget):
    """Log norms `[n_layers, seq]`, drawn at `positions`, each point jittered around its layer
    and coloured by it. `token` is the selection (-1: none): a click sets it, and its points
    are ringed and joined in every layer. Hovering names the token (its text as text)."""

    _esm = static_bundle("norm_strips")

    #: `[n_layers, seq]` log norms of the stream shown (NaN where a norm is 0)
    norms = WireArray(kind="table").tag(sync=True)
    #: the positions drawn (every token but the muted first, or a subsample)
    positions = WireArray(kind="index").tag(sync=True)
    #: `[n_layers, seq]` horizontal offsets, in [-JITTER, JITTER] layers, as levels of 0..1
    jitter = WireArray(kind="unit").tag(sync=True)
    tokens = t.List(t.Unicode()).tag(sync=True)
    #: one colour per layer, "#rrggbb"
    colors = t.List(t.Unicode()).tag(sync=True)
    token = t.Int(-1).tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    y_label = t.Unicode("log norm").tag(sync=True)

    _valid_token = index_check("token", size="tokens", optional=True)

    def __init__(self, *, tokens: list[str], jitter: np.ndarray, colors: list[str], **kw: Any):
        offsets = (np.clip(jitter, -JITTER, JITTER) + JITTER) / (2 * JITTER)
        super().__init__(tokens=list(tokens), jitter=offsets, colors=list(colors), **kw)

    def jitter_offsets(self) -> np.ndarray:
        """The offsets as the browser reads them, in layers (what the uint8 levels hold)."""
        levels = WireArray.to_numpy(self.jitter).astype(float)
        return levels / 255 * 2 * JITTER - JITTER

    def point_x(self) -> np.ndarray:
        """`[n_layers, len(positions)]`: where each drawn point stands, in layers."""
        pos = WireArray.to_numpy(self.positions)
        layers = np.arange(len(self.colors))[:, None]
        return layers + self.jitter_offsets()[:, pos]
