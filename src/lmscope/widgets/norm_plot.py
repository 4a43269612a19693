"""NormPlot: how big each layer's updates are, and whether a token's update size follows its
predecessors'.

A composite (`ipywidgets.VBox`) of the strips (an lmscope canvas view), two bqplot figures and a
control row:

- strips (`NormStrips`): every token's log norm at every layer, jittered around the layer,
  coloured by layer. The selected token is ringed in every layer and joined by a line; clicking
  a point selects its token (`token`, link it to other views), hovering shows the token's text.
- histograms of the log norms per layer, on one set of bins, coloured the same way.
- the regression `y[t] = b0 + b1*y[t-1] + ... ` per layer (`lmscope.stats.norm_regression`):
  betas by layer, one line per lag, filled markers where p < 0.05.

The first token (usually an attention sink, orders of magnitude off) is left out of the strips
and the histograms while `mute_sink` is set (the default); the fit always leaves it out.

The strips draw every point on a canvas (30 layers × 8,192 tokens is 245k points; bqplot drew
one SVG element each). With `max_points` they show a seeded random subset of tokens instead,
the same tokens in every layer, and say so; the selected token is always drawn, and the
histograms and the fit use every token. The histograms and the betas keep bqplot: their marks
do not grow with the prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bqplot as bq
import ipywidgets as ipw
import numpy as np
import torch
import traitlets as t

from lmscope import stats
from lmscope.errors import check_choice, check_count, check_optional_index
from lmscope.options import keyword_options
from lmscope.trace import VIEW_STREAMS
from lmscope.widgets import plots
from lmscope.widgets.base import STREAM_TITLES, LmscopeComposite
from lmscope.widgets.norm_strips import NormStrips

if TYPE_CHECKING:
    from lmscope.trace import Trace

#: matplotlib's plasma at 0, 1/8 .. 1, stopped short of its pale yellow end (unreadable on white)
_PLASMA = ["#0d0887", "#4c02a1", "#7e03a8", "#a92395", "#cc4778", "#e56b5d", "#f89540", "#fdc328"]
_LAG_COLORS = ["#c0392b", "#2c6fbb", "#27ae60", "#8e44ad", "#d68910", "#16a085"]
_LAG_MARKERS = ["square", "circle", "diamond", "triangle-up", "cross", "triangle-down"]
MAX_LAGS = 6
_TITLE = {"font-size": "14px"}


def layer_colors(n_layers: int) -> list[str]:
    """One plasma colour per layer, dark (first) to orange-yellow (last)."""
    anchors = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in _PLASMA], float)
    where = np.linspace(0, len(_PLASMA) - 1, max(n_layers, 1))
    rgb = np.stack([np.interp(where, np.arange(len(_PLASMA)), anchors[:, k]) for k in range(3)], 1)
    return ["#{:02x}{:02x}{:02x}".format(*map(int, row.round())) for row in rgb]


def emptiest_corner(values: np.ndarray, y_min: float, y_max: float) -> str:
    """The corner of a `[n_x, n_lines]` line plot (x = row index) holding the fewest points, for
    the legend: a fixed corner hid the last layers' betas behind it."""
    n = len(values)
    xs = np.repeat(np.arange(n), values.shape[1]) / max(n - 1, 1)
    ys = (values.ravel() - y_min) / ((y_max - y_min) or 1.0)
    ok = np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    # a legend of up to three entries covers about a quarter of the width, a third of the height
    counts = {
        "top-right": np.sum((xs > 0.72) & (ys > 0.62)),
        "top-left": np.sum((xs < 0.28) & (ys > 0.62)),
        "bottom-right": np.sum((xs > 0.72) & (ys < 0.38)),
        "bottom-left": np.sum((xs < 0.28) & (ys < 0.38)),
    }
    return min(counts, key=lambda corner: counts[corner])  # ties keep the first: top-right


class NormPlot(LmscopeComposite):
    """Per-layer log norms of a stream (strips + histograms) and the lag regression's betas."""

    token = t.Int(-1)
    stream = t.Enum(VIEW_STREAMS, "attn_out")
    lags = t.Int(2)
    mute_sink = t.Bool(True)

    @keyword_options
    def __init__(
        self,
        trace: Trace,
        *,
        stream: str = "attn_out",
        lags: int = 2,
        token: int = -1,
        mute_sink: bool = True,
        max_points: int | None = None,
        seed: int = 0,
    ) -> None:
        check_choice("stream", stream, VIEW_STREAMS)
        if max_points is not None:
            max_points = check_count("max_points", max_points)
        self.trace = trace
        lags = self._check_lags(lags)
        self.max_points = max_points
        self._rng = np.random.default_rng(seed)
        self._norms: dict[str, np.ndarray] = {}
        self._fits: dict[tuple[str, int], stats.NormRegression] = {}
        self.regression: stats.NormRegression | None = None
        L = trace.n_layers
        self.colors = layer_colors(L)
        self.jitter = np.clip(self._rng.normal(0, 0.09, (L, trace.seq_len)), -0.3, 0.3)

        self._build_controls(stream, lags)
        self.strips = self._strip_view()
        self.hist_fig = self._hist_figure()
        self.beta_fig = self._beta_figure()
        self.status = ipw.Label(layout=ipw.Layout(margin="0 0 0 8px"))
        plots = ipw.HBox([self.strips, self.hist_fig], layout=ipw.Layout(width="100%"))
        super().__init__([self.controls, plots, self.beta_fig, self.status])

        for name in ("stream", "lags", "mute_sink"):
            t.link((self, name), (self._widgets[name], "value"))
        self.mute_sink = mute_sink
        self.stream = stream
        self.lags = lags
        self.token = trace.seq_len - 1 if token == -1 else token
        t.link((self, "token"), (self.strips, "token"))
        self.observe(self._redraw, names=["stream", "lags", "mute_sink"])
        self.observe(self._draw_selection, names="token")
        self._redraw()

    # -- what the controls (and Python) may set -----------------------------------------------
    @t.validate("token")
    def _valid_token(self, proposal: dict) -> int:
        return check_optional_index("token", proposal["value"], self.trace.seq_len)

    @t.validate("lags")
    def _valid_lags(self, proposal: dict) -> int:
        return self._check_lags(proposal["value"])

    # -- checks and data ----------------------------------------------------------------------
    def _max_lags(self) -> int:
        return max(1, min(MAX_LAGS, (self.trace.seq_len - stats.SKIP_FIRST - 2) // 2))

    def _check_lags(self, lags: int) -> int:
        context = f" for this {self.trace.seq_len}-token trace"
        return check_count("lags", lags, high=self._max_lags(), context=context)

    def log_norms(self, stream: str | None = None) -> np.ndarray:
        """`[n_layers, seq]` log norms of `stream` (the shown one by default), cached."""
        stream = stream or self.stream
        if stream not in self._norms:
            self._norms[stream] = stats.log_norms(self.trace, stream=stream).numpy()
        return self._norms[stream]

    def fit(self) -> stats.NormRegression:
        key = (self.stream, self.lags)
        if key not in self._fits:
            # from the norms the strips show: taking them again would rerun every block of a
            # trace that recomputes its internals (at 8,192 tokens, minutes)
            norms = torch.from_numpy(self.log_norms())
            self._fits[key] = stats.norm_regression(
                self.trace, stream=self.stream, lags=self.lags, norms=norms
            )
        return self._fits[key]

    def shown_positions(self) -> np.ndarray:
        """Token positions drawn in the strips: all of them, or up to `max_points` points."""
        first = stats.SKIP_FIRST if self.mute_sink else 0
        positions = np.arange(first, self.trace.seq_len)
        if self.max_points is None:
            return positions
        per_layer = max(1, self.max_points // self.trace.n_layers)
        if len(positions) > per_layer:
            pick = np.random.default_rng(0).choice(len(positions), per_layer, replace=False)
            positions = positions[np.sort(pick)]
        return positions

    # -- building ---------------------------------------------------------------------------
    def _build_controls(self, stream: str, lags: int) -> None:
        self._widgets = {
            "stream": ipw.ToggleButtons(
                options=[(STREAM_TITLES[s], s) for s in VIEW_STREAMS],
                value=stream,
                style={"button_width": "130px"},
            ),
            "lags": ipw.Dropdown(
                options=list(range(1, self._max_lags() + 1)),
                value=lags,
                description="lags",
                layout=ipw.Layout(width="120px"),
                style={"description_width": "36px"},
            ),
            "mute_sink": ipw.Checkbox(value=True, description="mute first token", indent=False),
        }
        self.controls = ipw.HBox(
            list(self._widgets.values()),
            layout=ipw.Layout(align_items="center", gap="12px", flex_flow="row wrap"),
        )

    def _strip_view(self) -> NormStrips:
        strips = NormStrips(
            tokens=list(self.trace.tokens),
            jitter=self.jitter,
            colors=self.colors,
            layout=ipw.Layout(width="62%", min_width="420px"),
        )
        return strips

    def _hist_figure(self) -> bq.Figure:
        x, y = bq.LinearScale(), bq.LinearScale(min=0)
        self._hist = bq.Lines(
            x=np.zeros(2),
            y=np.zeros((1, 2)),
            scales={"x": x, "y": y},
            colors=self.colors,
            stroke_width=1.3,
            opacities=[0.85],
        )  # lines without a marker per bin: 30 layers x 60 bins were 1,800 SVG elements
        frame = plots.axes(x, y, x_label="log norm", y_label="tokens", x_format=".1f", y_format="d")
        return plots.figure(
            [self._hist],
            frame,
            width="38%",
            height="360px",
            min_width="300px",
            margin=(40, 45, 50, 10),
            title="distribution per layer",
            title_style=_TITLE,
        )

    def _beta_figure(self) -> bq.Figure:
        L = self.trace.n_layers
        x, y = bq.LinearScale(min=-0.5, max=L - 0.5), bq.LinearScale()
        self._zero = bq.Lines(
            x=np.array([-0.5, L - 0.5]),
            y=np.zeros(2),
            scales={"x": x, "y": y},
            colors=["#999"],
            stroke_width=1,
        )
        self._beta_lines, self._beta_sig, self._beta_ns = [], [], []
        tip = bq.Tooltip(fields=["name"], labels=[""], show_labels=False)
        for j in range(MAX_LAGS):
            c = _LAG_COLORS[j]
            self._beta_lines.append(
                bq.Lines(
                    x=np.arange(L),
                    y=np.zeros(L),
                    scales={"x": x, "y": y},
                    colors=[c],
                    stroke_width=1.2,
                    labels=[f"t-{j + 1}"],
                    display_legend=True,
                    visible=False,
                )
            )
            # each lag's betas: filled markers where p < 0.05, hollow ones elsewhere
            common = dict(
                x=np.zeros(1),
                y=np.zeros(1),
                scales={"x": x, "y": y},
                colors=[c],
                marker=_LAG_MARKERS[j],
                names_unique=False,
                display_names=False,
                tooltip=tip,
                visible=False,
            )
            self._beta_sig.append(bq.Scatter(**common, default_size=90))
            self._beta_ns.append(
                bq.Scatter(**common, default_size=40, fill=False, stroke=c, stroke_width=1.2)
            )
        frame = plots.axes(
            x,
            y,
            x_label="layer",
            y_label="beta",
            x_format="d",
            y_format=".2f",
            x_ticks=plots.layer_ticks(L),
            grid_x="none",
            grid_y="dashed",
        )
        marks = [self._zero, *self._beta_lines, *self._beta_sig, *self._beta_ns]
        return plots.figure(
            marks,
            frame,
            width="100%",
            height="280px",
            legend_location="top-right",
            title_style=_TITLE,
        )

    # -- drawing ----------------------------------------------------------------------------
    def _redraw(self, change: dict | None = None) -> None:
        with self.reporting_errors():
            self._draw_strips()
            self._draw_hist()
            self._draw_betas()
            self._draw_selection()

    def _draw_strips(self) -> None:
        y = self.log_norms()
        pos = self.shown_positions()
        with self.strips.hold_sync():
            self.strips.norms = np.where(np.isfinite(y), y, np.nan).astype(np.float32)
            self.strips.positions = pos
            self.strips.y_label = f"log ‖{self.stream}‖"
            n_all = self.trace.seq_len - (stats.SKIP_FIRST if self.mute_sink else 0)
            drawn = (
                "" if len(pos) == n_all else f" · {len(pos)} of {n_all} tokens drawn (subsample)"
            )
            self.strips.title = f"{STREAM_TITLES[self.stream]} norms by layer{drawn}"

    def _draw_hist(self) -> None:
        first = stats.SKIP_FIRST if self.mute_sink else 0
        y = self.log_norms()[:, first:]
        finite = y[np.isfinite(y)]
        # one set of bins for every layer, as wide as Freedman-Diaconis gives for one layer's
        # sample (pooled, the bins would be far too narrow for each layer's curve)
        widths = [np.diff(np.histogram_bin_edges(row[np.isfinite(row)], "fd")[:2]) for row in y]
        width = float(np.median(np.concatenate(widths))) if widths else 1.0
        lo, hi = float(finite.min()), float(finite.max())
        n_bins = int(np.clip(np.ceil((hi - lo) / width) if width > 0 else 1, 1, 60))
        edges = np.linspace(lo, hi if hi > lo else lo + 1, n_bins + 1)
        counts = np.stack([np.histogram(row[np.isfinite(row)], edges)[0] for row in y])
        with self._hist.hold_sync():
            self._hist.x = (edges[:-1] + edges[1:]) / 2
            self._hist.y = counts.astype(float)
            self._hist.labels = [f"layer {i}" for i in range(len(counts))]
        ticks = plots.count_ticks(counts.max(initial=0))
        self._hist.scales["y"].max = float(ticks[-1])
        self.hist_fig.axes[1].tick_values = ticks
        self.hist_fig.axes[0].label = f"log ‖{self.stream}‖"

    def _draw_betas(self) -> None:
        res = self.fit()
        self.regression = res
        L = self.trace.n_layers
        betas, pvals = res.betas.numpy(), res.pvalues.numpy()
        for j in range(MAX_LAGS):
            on = j < res.lags
            for mark in (self._beta_lines[j], self._beta_sig[j], self._beta_ns[j]):
                mark.visible = on
            self._beta_lines[j].display_legend = on
            if not on:  # keep no stray points in hidden marks
                for mark in (self._beta_sig[j], self._beta_ns[j]):
                    with mark.hold_sync():
                        mark.x, mark.y, mark.names = np.zeros(0), np.zeros(0), np.array([], str)
                continue
            b, p = betas[:, j], pvals[:, j]
            names = np.array(
                [f"layer {i}, t-{j + 1}: beta {b[i]:.3f}, p = {p[i]:.2g}" for i in range(L)]
            )
            self._beta_lines[j].y = b
            for mark, keep in ((self._beta_sig[j], p < 0.05), (self._beta_ns[j], ~(p < 0.05))):
                with mark.hold_sync():
                    idx = np.flatnonzero(keep)
                    mark.x, mark.y, mark.names = idx.astype(float), b[idx], names[idx]
        # the figure holds the shown lags' marks only: bqplot builds a view for every mark it
        # holds, hidden or not (19 of them for 6 lags; a saved page's last figure to draw)
        lags = range(res.lags)
        marks = [self._zero, *(self._beta_lines[j] for j in lags)]
        marks += [self._beta_sig[j] for j in lags] + [self._beta_ns[j] for j in lags]
        if self.beta_fig.marks != marks:
            self.beta_fig.marks = marks
        shown = betas[np.isfinite(betas)]
        lo, hi = (min(0.0, shown.min()), max(0.0, shown.max())) if shown.size else (-1.0, 1.0)
        pad = 0.08 * (hi - lo or 1.0)
        self._zero.scales["y"].min, self._zero.scales["y"].max = lo - pad, hi + pad
        self.beta_fig.legend_location = emptiest_corner(betas[:, : res.lags], lo - pad, hi + pad)
        n_sig = int(res.significant().any(1).sum())
        self.beta_fig.title = (
            f"log ‖{self.stream}‖[t] ~ b0 + "
            + " + ".join(f"b{j + 1}·[t-{j + 1}]" for j in range(res.lags))
            + f"  (t ≥ {res.lags + 1}, {res.n_obs} tokens; filled: p < 0.05, {n_sig} of {L} layers)"
        )

    def _draw_selection(self, change: dict | None = None) -> None:
        pos = self.token
        y = self.log_norms()
        if pos < 0 or pos >= self.trace.seq_len:
            self.status.value = "click a point to select its token"
            return
        self.status.value = (
            f"token {pos}: {self.trace.tokens[pos]}  ·  log norm from {np.nanmin(y[:, pos]):.2f}"
            f" to {np.nanmax(y[:, pos]):.2f} across layers"
            + (
                "  (the first token is left out of the histograms and the fit)"
                if pos == 0 and self.mute_sink
                else ""
            )
        )

    def _export_title(self) -> str:
        return f"lmscope NormPlot: {self.trace.seq_len} tokens"
