"""TokenColors: the text redrawn with each token on its spectral color, three rows per layer.

Rows: attention output, MLP output and residual stream at the selected layer (colors from
`lmscope.coloring.token_colors`, aligned across layers). A slider and a play button step
through the layers; hovering a token outlines its `n_neighbors` nearest neighbours at that
layer; clicking selects it (`token`, which a Dashboard links to the other views' selection).

What travels: only colors that were computed, as one uint8 array `[n_slices, seq, 3]`
(`colors`) whose slices are the (row, layer) pairs listed in `color_slices`, 3 bytes per token
per slice. Once the spectral colors are in, every row of every layer is there (270 KB for 30
layers at 1024 tokens), so playing through layers and a saved HTML page need no kernel. For the
current layer only, an int32 `[3, seq, n_neighbors]` neighbour table recomputed in Python when
the layer changes. Token text is a list of strings rendered with `fillText` on a canvas, never
as markup.

A long prompt (more than `EAGER_TOKENS`) would take minutes before anything showed (90
normalized cuts at 8,192 tokens, and every attention and MLP output recomputed). It starts from
a cheap first pass instead (`exact` is False): the shown layer's colors from
`coloring.first_pass_colors` (principal components), another layer's when the slider reaches
it. Only rows whose activations the trace holds are in the first state: when it recomputes its
internals (long prompts), the attention and MLP rows need their block rerun, which runs as the
first of the steps done while the kernel is idle, after the residual stream's row is on screen.
Then the neighbour table (a block of query rows a step; a later layer's too), then the
spectral colors a normalized cut (or a block rerun) a step (`status` says what is pending and
how far); they replace the first pass when done: the same colors a short prompt gets. Without
a running event loop (a script) `fill_all()` computes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
import traitlets as t

from lmscope import coloring
from lmscope.errors import check_choice, check_choices, check_count, check_index
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
    colors = WireArray(kind="unit").tag(sync=True)  # [n_slices, seq, 3], see color_slices
    color_slices = t.List(t.List(t.Int())).tag(sync=True)  # [row, layer] of each slice
    n_neighbors = t.Int(5).tag(sync=True)
    neighbors = WireArray(kind="index").tag(sync=True)  # [n_streams, seq, n_neighbors], -1 = none
    neighbors_layer = t.Int(-1).tag(sync=True)  # the layer `neighbors` belongs to
    token = t.Int(-1).tag(sync=True)
    play_interval = t.Int(600).tag(sync=True)  # ms per layer while playing
    exact = t.Bool(True).tag(sync=True)  # False while the colors are the first pass
    status = t.Unicode("").tag(sync=True)  # what is still being computed, "" when done

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
        rgb = None if long else self._spectral(streams)
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
        #: first-pass colors by (row, layer), float [seq, 3]; empty once the spectral ones are in
        self._first: dict[tuple[int, int], torch.Tensor] = {}
        self._spectral_done = 0
        if long:
            with self.hold_sync():
                self._first_pass(layer, rerun=False)  # what needs no block rerun
                self._show_progress()
            self._start_steps(_chain(self._pending_steps(layer), self._long_steps()))
        else:
            self._send_spectral(rgb)
            self._update_neighbors()
        self.observe(self._on_layer, names=["layer"])

    def colors_at(self, stream: str, layer: int) -> np.ndarray | None:
        """uint8 [seq, 3]: the colors sent for `stream` at `layer`, None while not computed."""
        row = self.streams.index(check_choice("stream", stream, tuple(self.streams)))
        layer = check_index("layer", layer, self.n_layers)
        if [row, layer] not in self.color_slices:
            return None
        return WireArray.to_numpy(self.colors)[self.color_slices.index([row, layer])]

    def _spectral(self, streams: list[str] | tuple[str, ...]) -> torch.Tensor:
        return torch.stack(
            [coloring.token_colors(self.trace, stream=s, seed=self.seed) for s in streams]
        )

    def _send_spectral(self, rgb: torch.Tensor) -> None:
        """Every row of every layer: the spectral colors, [n_streams, n_layers, seq, 3]."""
        rows, layers = rgb.shape[:2]
        with self.hold_sync():
            self.colors = rgb.reshape(rows * layers, *rgb.shape[2:])
            self.color_slices = [[r, layer] for r in range(rows) for layer in range(layers)]

    def _pending(self, layer: int) -> list[int]:
        """The rows without first-pass colors at `layer` (before the spectral ones are in)."""
        return [r for r in range(len(self.streams)) if (r, layer) not in self._first]

    def _first_pass(self, layer: int, *, rerun: bool) -> None:
        """First-pass colors of `layer`'s rows not yet sent: those whose activations the trace
        holds, and with `rerun` the others too (a sub-layer output recomputed by its block)."""
        rows = [
            r
            for r in self._pending(layer)
            if rerun or self.trace.stream_stored(self.streams[r], layer)
        ]
        for r in rows:
            self._first[r, layer] = coloring.first_pass_colors(
                self.trace, stream=self.streams[r], layer=layer
            )
        if rows:
            keys = sorted(self._first)
            with self.hold_sync():
                self.colors = torch.stack([self._first[k] for k in keys])
                self.color_slices = [list(k) for k in keys]

    def _show_progress(self) -> None:
        todo = len(self.streams) * self.n_layers
        spectral = (
            f"spectral colors: {self._spectral_done}/{todo}"
            if self._spectral_done
            else "spectral colors to come"
        )
        pending = [self.titles[r] for r in self._pending(self.layer)]
        rerun = f"; {', '.join(pending)}: recomputing block {self.layer}…" if pending else ""
        self.status = f"first-pass colors (principal components){rerun}; {spectral}"

    def _pending_steps(self, layer: int) -> Iterator[None]:
        """The first pass of `layer`'s rows that need their block rerun (one step)."""
        if self._pending(layer):
            self._first_pass(layer, rerun=True)
            self._show_progress()
            yield

    def _long_steps(self) -> Iterator[None]:
        """The rest of a long prompt's work, one normalized cut (or block rerun, or block of a
        neighbour table) a step: the shown layer's neighbours first, then every layer's
        embedding, then the colors."""
        yield from self._neighbor_steps()
        # layer by layer: a recomputed block serves its attention and MLP rows in turn; its
        # rerun is a step of its own (5 s at 8,192 tokens, as long as a normalized cut)
        for layer in range(self.n_layers):
            if not all(self.trace.stream_stored(s, layer) for s in self.streams):
                for stream in self.streams:
                    self.trace.stream(stream, layer)
                yield
            for stream in self.streams:
                coloring.spectral_embedding(self.trace, stream, [layer], self.seed)  # cached
                self._spectral_done += 1
                self._show_progress()
                yield
        rgb = self._spectral(self.streams)
        with self.hold_sync():
            self._send_spectral(rgb)
            self._first = {}
            self.exact = True
            self.status = ""

    def _neighbor_steps(self) -> Iterator[None]:
        layer = self.layer
        tables = []
        for i, stream in enumerate(self.streams):
            if i:
                yield
            steps = coloring.neighbor_steps(
                self.trace, stream=stream, layer=layer, n_neighbors=self.n_neighbors
            )
            tables.append((yield from steps))  # a block of query rows a step
        if layer == self.layer:  # sent with the last table's step, not one step later
            with self.hold_sync():
                self.neighbors = torch.stack(tables).to(torch.int32).numpy()
                self.neighbors_layer = layer
        yield

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
        if not self.exact:
            # a long prompt with work queued: this layer's rows that need a block rerun, then
            # its neighbours, go first; without a loop to run them later, all of it now
            queued = self._steps is not None and loop_running()
            with self.hold_sync():
                self._first_pass(self.layer, rerun=not queued)
                self._show_progress()
            if queued:
                layer = self.layer
                steps = _chain(self._pending_steps(layer), self._neighbor_steps(), self._steps)
                self._start_steps(steps)
                return
        elif self.trace.seq_len > EAGER_TOKENS and loop_running():
            # three tables of a long prompt take seconds: a block of rows per idle step
            self._start_steps(self._neighbor_steps())
            return
        self._update_neighbors()


def _chain(*steps: Iterator[None]) -> Iterator[None]:
    for it in steps:
        yield from it
