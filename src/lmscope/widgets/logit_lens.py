"""LogitLens: what every layer would predict at every position, as a linked table and two plots.

A composite (an `ipywidgets.VBox`): the anywidget table on top, two bqplot figures under it.

- the table (`LogitLensTable`): layers × positions, each cell the top-1 token shaded by its
  probability, top-k on hover, "post" / "mid" / both stages interleaved, a target-token row on
  top; clicking a cell focuses its position (`selected_token`) and layer (`selected_layer`).
- a line of each target's probability (or rank) across layers at the focused position.
- a scatter of the softmaxed logits (top 100, by rank) at the focused layer for the focused
  position, the last position and any `compare_positions`.

Only small arrays travel: top-k ids as int32 indices into a string table of the ids that occur,
their probabilities as float16, target probabilities/ranks per layer and position. The
`[layers, seq, vocab]` logits never leave the lens (see `lmscope.lens`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bqplot as bq
import ipywidgets as ipw
import numpy as np
import torch
import traitlets as t

from lmscope import lens
from lmscope._wire import encode
from lmscope.errors import InputError, check_index
from lmscope.widgets.base import LmscopeWidget, static_bundle

if TYPE_CHECKING:
    from lmscope.trace import Trace

SCATTER_TOP = 100
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


class LogitLensTable(LmscopeWidget):
    """The table view alone (also what `LogitLens.save_html` exports)."""

    _esm = static_bundle("logit_lens")

    n_layers = t.Int(1).tag(sync=True)
    k = t.Int(5).tag(sync=True)
    tokens = t.List(t.Unicode()).tag(sync=True)  # the input, one label per column
    stages = t.List(t.Unicode()).tag(sync=True)  # computed stages, subset of ("post", "mid")
    view = t.Enum(("post", "mid", "both"), "post").tag(sync=True)
    strings = t.List(t.Unicode()).tag(sync=True)  # display string of each table entry
    string_ids = t.Dict().tag(sync=True)  # int32 [n_strings] vocabulary id of each entry
    top = t.Dict().tag(sync=True)  # stage -> int32 [L, P, k] indices into `strings`
    probs = t.Dict().tag(sync=True)  # stage -> float16 [L, P, k]
    targets = t.List(t.Unicode()).tag(sync=True)  # display strings of the targets
    target_probs = t.Dict().tag(sync=True)  # stage -> float16 [L, P, T]
    target_ranks = t.Dict().tag(sync=True)  # stage -> int32 [L, P, T]
    target = t.Int(0).tag(sync=True)  # which target the target row shows
    selected_token = t.Int(-1).tag(sync=True)
    selected_layer = t.Int(-1).tag(sync=True)


class LogitLens(ipw.VBox):
    """Logit lens of one trace: table + target line + softmax scatter, linked by selection."""

    selected_token = t.Int(-1)
    selected_layer = t.Int(-1)
    compare_positions = t.List(t.Int())
    metric = t.Enum(("prob", "rank"), "prob")

    def __init__(
        self,
        trace: Trace,
        k: int = 5,
        *,
        targets: int | str | list[int | str] | None = None,
        view: str = "post",
        stages: tuple[str, ...] = lens.STAGES,
        tokenizer=None,
        selected_token: int = -1,
        compare_positions: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        if view not in ("post", "mid", "both"):
            raise InputError(f"view must be 'post', 'mid' or 'both', got {view!r}")
        stages = tuple(stages)
        if not stages or any(s not in lens.STAGES for s in stages):
            raise InputError(f"stages must be some of {lens.STAGES}, got {stages!r}")
        needed = {"both": ("post", "mid")}.get(view, (view,))
        if any(s not in stages for s in needed):
            raise InputError(f"view {view!r} needs stages {needed}; got stages={stages}")
        self.trace = trace
        self._tokenizer = tokenizer if tokenizer is not None else getattr(trace, "tokenizer", None)
        self.results = {
            s: lens.logit_lens(trace, k, s, targets=targets, tokenizer=self._tokenizer)
            for s in stages
        }
        first = self.results[stages[0]]
        self.table = LogitLensTable(n_layers=trace.n_layers, k=first.k, view=view)
        self._fill_table()
        self.line_fig, self._lines = self._line_figure()
        self.scatter_fig, self._scatter = self._scatter_figure()
        plots = ipw.HBox([self.line_fig, self.scatter_fig])
        super().__init__([self.table, plots], **kwargs)
        t.link((self, "selected_token"), (self.table, "selected_token"))
        t.link((self, "selected_layer"), (self.table, "selected_layer"))
        self.observe(self._replot, names=["selected_token", "selected_layer", "compare_positions"])
        self.observe(self._replot, names=["metric"])
        self.table.observe(self._replot, names=["view", "target"])
        self.selected_layer = trace.n_layers - 1
        self.compare_positions = [
            check_index("position", p, trace.seq_len) for p in (compare_positions or [])
        ]
        self.selected_token = check_index("position", selected_token, trace.seq_len)

    # -- data for the table -------------------------------------------------------------
    def _fill_table(self) -> None:
        results = self.results
        ids = torch.cat(
            [r.token_ids.flatten() for r in results.values()]
            + [torch.tensor(next(iter(results.values())).targets, dtype=torch.long)]
        )
        unique, inverse = torch.unique(ids, return_inverse=True)
        strings = lens.token_strings(self._tokenizer, unique.tolist())
        top, probs, t_probs, t_ranks = {}, {}, {}, {}
        start = 0
        for stage, r in results.items():
            n = r.token_ids.numel()
            top[stage] = encode(inverse[start : start + n].view(r.token_ids.shape).int().numpy())
            start += n
            probs[stage] = encode(r.probs.numpy().astype(np.float16))
            if r.targets:
                t_probs[stage] = encode(r.target_probs.numpy().astype(np.float16))
                t_ranks[stage] = encode(r.target_ranks.int().numpy())
        first = next(iter(results.values()))
        with self.table.hold_sync():
            self.table.tokens = list(self.trace.tokens)
            self.table.stages = list(results)
            self.table.strings = strings
            self.table.string_ids = encode(unique.int().numpy())
            self.table.top, self.table.probs = top, probs
            self.table.targets = first.target_tokens if first.targets else []
            self.table.target_probs, self.table.target_ranks = t_probs, t_ranks

    # -- plots ----------------------------------------------------------------------------
    def _line_figure(self):
        x = bq.LinearScale(min=0, max=max(1, self.trace.n_layers - 1))
        y = bq.LinearScale(min=0, max=1)
        lines = bq.Lines(
            x=np.arange(self.trace.n_layers),
            y=np.zeros((1, self.trace.n_layers)),
            scales={"x": x, "y": y},
            colors=_COLORS,
            marker="circle",
            marker_size=12,
            labels=[""],
            display_legend=True,
        )
        axes = [
            bq.Axis(scale=x, label="layer", tick_format="d"),
            bq.Axis(scale=y, orientation="vertical", label="probability", tick_format=".2f"),
        ]
        fig = bq.Figure(
            marks=[lines],
            axes=axes,
            title="target",
            layout=ipw.Layout(width="50%", height="300px"),
            fig_margin={"top": 40, "bottom": 40, "left": 55, "right": 10},
            legend_location="top-left",
        )
        return fig, lines

    def _scatter_figure(self):
        x = bq.LinearScale(min=0, max=SCATTER_TOP)
        y = bq.LogScale(min=1e-5, max=1)
        marks = [
            bq.Scatter(
                x=np.zeros(1),
                y=np.ones(1),
                scales={"x": x, "y": y},
                colors=[color],
                default_size=24,
                names_unique=False,  # distinct byte-level ids can share a display string ('�')
                display_legend=True,
                labels=[""],
                tooltip=bq.Tooltip(
                    fields=["name", "y"], formats=["", ".4f"], labels=["token", "p"]
                ),
                visible=False,
            )
            for color in _COLORS[:4]
        ]
        axes = [
            bq.Axis(scale=x, label="rank"),
            bq.Axis(
                scale=y,
                orientation="vertical",
                label="probability",
                tick_format=".0e",
                tick_values=np.logspace(-5, 0, 6),  # decades: bqplot's own log ticks crowd
            ),
        ]
        fig = bq.Figure(
            marks=marks,
            axes=axes,
            title="softmax",
            layout=ipw.Layout(width="50%", height="300px"),
            fig_margin={"top": 40, "bottom": 40, "left": 60, "right": 10},
            legend_location="top-right",
        )
        return fig, marks

    def _stage(self) -> str:
        view = self.table.view
        return "post" if view == "both" and "post" in self.results else view

    def scatter_positions(self) -> list[int]:
        """Focused position, the last position and the chosen ones, without repeats (at most 4)."""
        out: list[int] = []
        for p in [self.selected_token, self.trace.seq_len - 1, *self.compare_positions]:
            if p >= 0 and p not in out:
                out.append(p)
        return out[: len(self._scatter)]

    def _replot(self, change: dict | None = None) -> None:
        with self.table.reporting_errors():
            stage = self._stage()
            pos = self.selected_token
            layer = self.selected_layer if self.selected_layer >= 0 else self.trace.n_layers - 1
            tokens = self.trace.tokens
            result = self.results[stage]
            if result.targets and pos >= 0:
                ys, labels = [], []
                for s, r in self.results.items():
                    if self.metric == "prob":
                        ys.append(r.target_probs[:, pos].T.numpy())
                    else:
                        ys.append(r.target_ranks[:, pos].T.numpy().astype(float))
                    labels += [f"{name} ({s})" for name in r.target_tokens]
                y = np.concatenate(ys)
                scale = self._lines.scales["y"]
                if self.metric == "prob":
                    scale.min, scale.max = 0.0, 1.0
                else:
                    scale.min, scale.max = 0.0, float(max(1.0, y.max()))
                self.line_fig.axes[1].label = "probability" if self.metric == "prob" else "rank"
                self.line_fig.axes[1].tick_format = ".2f" if self.metric == "prob" else "d"
                with self._lines.hold_sync():
                    self._lines.y = y
                    self._lines.labels = labels
                    n_t = len(result.targets)
                    self._lines.line_style = "solid"
                    self._lines.colors = [_COLORS[i % len(_COLORS)] for i in range(n_t)] * len(
                        self.results
                    )
                self.line_fig.title = f"targets at position {pos} ({tokens[pos]!s})"
            for mark in self._scatter:  # a hidden mark would still leave a blank legend row
                mark.visible = mark.display_legend = False
            for mark, p in zip(self._scatter, self.scatter_positions(), strict=False):
                probs = lens.distribution(self.trace, layer, p, stage)
                values, ids = probs.topk(SCATTER_TOP)
                with mark.hold_sync():
                    mark.x = np.arange(SCATTER_TOP)
                    mark.y = values.clamp_min(1e-12).numpy()
                    mark.names = lens.token_strings(self._tokenizer, ids.tolist())
                    mark.display_names = False
                    mark.labels = [f"{p}: {tokens[p]}"]
                    mark.visible = mark.display_legend = True
            self.scatter_fig.title = f"softmax at layer {layer} ({stage})"

    # -- export ---------------------------------------------------------------------------
    def save_html(self, path: str, title: str | None = None):
        """The table as one self-contained HTML file that renders with no network; the bqplot
        plots need the kernel, and the page says so where they stood."""
        from lmscope.export import save_html

        return save_html(self, path, title=title or "lmscope: logit lens")
