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

A long prompt (more than `EAGER_TOKENS`) would take minutes before anything showed (90
normalized cuts at 8,192 tokens, and every attention and MLP output recomputed). It starts from
a cheap first pass instead: the shown layer's colors from `coloring.first_pass_colors`
(principal components; `ready_layers` lists the layers that have colors, `exact` is False),
another layer's when the slider reaches it. The spectral colors and the neighbour table are
then computed a step at a time while the kernel is idle (`status` says how far), and replace
the first pass when done: the same colors a short prompt gets. Without a running event loop
(a script) `fill_all()` computes them.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    loop_running,
    reports_errors,
    static_bundle,
)
from lmscope.widgets.traits import WireArray

if TYPE_CHECKING:
    from lmscope.trace import Trace

#: prompts up to this long get their spectral colors at once; longer ones start from a first pass
EAGER_TOKENS = 1024


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
    ready_layers = t.List(t.Int()).tag(sync=True)  # layers `colors` holds colors of
    exact = t.Bool(True).tag(sync=True)  # False while they are the first pass
    status = t.Unicode("").tag(sync=True)  # progress of the spectral colors, "" when done

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
        long = trace.seq_len > EAGER_TOKENS
        if long:
            self._rgb = torch.zeros(len(streams), trace.n_layers, trace.seq_len, 3)
            ready = []
        else:
            self._rgb = self._spectral(streams)
            ready = list(range(trace.n_layers))
        super().__init__(
            texts=list(trace.token_texts),
            tokens=list(trace.tokens),
            streams=list(streams),
            titles=[STREAM_TITLES[s] for s in streams],
            n_layers=trace.n_layers,
            layer=layer,
            n_neighbors=n_neighbors,
            token=token,
            exact=not long,
        )
        self.ready_layers = ready
        if long:
            self._first_pass(layer)
            self.status = "first-pass colors (principal components); spectral colors to come"
            self._start_steps(self._spectral_steps())
        else:
            self.colors = self._rgb
            self._update_neighbors()
        self.observe(self._on_layer, names=["layer"])

    def _spectral(self, streams: list[str] | tuple[str, ...]) -> torch.Tensor:
        return torch.stack(
            [coloring.token_colors(self.trace, stream=s, seed=self.seed) for s in streams]
        )

    def _first_pass(self, layer: int) -> None:
        """The first-pass colors of `layer` (a long prompt, before the spectral ones are in)."""
        for i, stream in enumerate(self.streams):
            self._rgb[i, layer] = coloring.first_pass_colors(self.trace, stream=stream, layer=layer)
        with self.hold_sync():
            self.colors = self._rgb
            self.ready_layers = sorted({*self.ready_layers, layer})

    def _spectral_steps(self) -> Iterator[None]:
        """The rest of a long prompt's work, one normalized cut (or neighbour table) a step:
        the shown layer's neighbours first, then every layer's embedding, then the colors."""
        yield from self._neighbor_steps()
        todo = [(s, layer) for s in self.streams for layer in range(self.n_layers)]
        for done, (stream, layer) in enumerate(todo):
            self.status = (
                f"first-pass colors (principal components); spectral colors: {done}/{len(todo)}"
            )
            coloring.spectral_embedding(self.trace, stream, [layer], self.seed)  # cached
            yield
        self._rgb = self._spectral(self.streams)
        with self.hold_sync():
            self.colors = self._rgb
            self.ready_layers = list(range(self.n_layers))
            self.exact = True
            self.status = ""

    def _neighbor_steps(self) -> Iterator[None]:
        layer = self.layer
        tables = []
        for stream in self.streams:
            tables.append(self._neighbors_of(stream, layer))
            yield
        if layer == self.layer:
            with self.hold_sync():
                self.neighbors = torch.stack(tables).to(torch.int32).numpy()
                self.neighbors_layer = layer

    def _neighbors_of(self, stream: str, layer: int) -> torch.Tensor:
        return coloring.token_neighbors(
            self.trace, stream=stream, layer=layer, n_neighbors=self.n_neighbors
        )

    def neighbor_table(self, layer: int) -> np.ndarray:
        """int32 [n_streams, seq, n_neighbors]: each token's nearest tokens at `layer`, one row
        per stream."""
        layer = check_index("layer", layer, self.trace.n_layers)
        tables = [self._neighbors_of(s, layer) for s in self.streams]
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
        if self.layer not in self.ready_layers:
            self._first_pass(self.layer)
        if self._steps is not None and loop_running():
            # a long prompt with work queued: this layer's neighbours go first
            self._start_steps(_chain(self._neighbor_steps(), self._steps))
            return
        self._update_neighbors()


def _chain(*steps: Iterator[None]) -> Iterator[None]:
    for it in steps:
        yield from it
