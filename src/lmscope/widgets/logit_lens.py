"""LogitLens: what every layer would predict at every position, as a linked table and two plots.

A composite (an `ipywidgets.VBox`): the anywidget table on top, two bqplot figures under it.

- the table (`LogitLensTable`): layers × positions, each cell the top-1 token shaded by its
  probability, top-k on hover, `stage` "post" / "mid" / "both" interleaved, a target-token row
  on top; clicking a cell selects its position (`token`) and layer (`layer`).
- a line of each target's probability (or rank) across layers at the focused position.
- a scatter of the softmaxed logits (top 100, by rank) at the focused layer for the focused
  position, the last position and any `compare_positions`.

Only the stage shown is decoded; the other is decoded when a person (or Python) asks for it.
Only small arrays travel: top-k ids as int32 indices into a string table of the ids that occur,
their probabilities as float16, target probabilities/ranks per layer and position. The
`[layers, seq, vocab]` logits never leave the lens (see `lmscope.lens`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bqplot as bq
import ipywidgets as ipw
import numpy as np
import torch
import traitlets as t

from lmscope import lens
from lmscope.errors import check_choice, check_index
from lmscope.options import keyword_options
from lmscope.widgets import plots
from lmscope.widgets.base import (
    LmscopeComposite,
    LmscopeWidget,
    choice_check,
    index_check,
    static_bundle,
)
from lmscope.widgets.traits import WireArray, WireDict

if TYPE_CHECKING:
    from lmscope.trace import Trace

SCATTER_TOP = 100
_HALF = {"width": "50%", "height": "300px"}  # the two plots side by side under the table
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
#: what the table can show: one lens stage, or both interleaved
SHOWN = (*lens.STAGES, "both")


def stages_of(stage: str) -> tuple[str, ...]:
    """The lens stages a shown `stage` needs decoded."""
    return lens.STAGES if stage == "both" else (stage,)


class LogitLensTable(LmscopeWidget):
    """The table view alone (the composite's first child)."""

    _esm = static_bundle("logit_lens")

    n_layers = t.Int(1).tag(sync=True)
    top_k = t.Int(5).tag(sync=True)
    tokens = t.List(t.Unicode()).tag(sync=True)  # the input, one label per column
    stages = t.List(t.Unicode()).tag(sync=True)  # decoded stages, subset of ("post", "mid")
    stage = t.Unicode("post").tag(sync=True)
    strings = t.List(t.Unicode()).tag(sync=True)  # display string of each table entry
    string_ids = WireArray(kind="index").tag(sync=True)  # vocabulary id of each entry
    top = WireDict(kind="index").tag(sync=True)  # stage -> [L, P, top_k] indices into `strings`
    probs = WireDict(kind="prob").tag(sync=True)  # stage -> [L, P, top_k]
    targets = t.List(t.Unicode()).tag(sync=True)  # display strings of the targets
    target_probs = WireDict(kind="prob").tag(sync=True)  # stage -> [L, P, T]
    target_ranks = WireDict(kind="index").tag(sync=True)  # stage -> [L, P, T]
    target = t.Int(0).tag(sync=True)  # which target the target row shows
    token = t.Int(-1).tag(sync=True)
    layer = t.Int(-1).tag(sync=True)

    _valid_stage = choice_check("stage", SHOWN)
    _valid_token = index_check("token", size="tokens", optional=True)
    _valid_layer = index_check("layer", size="n_layers", optional=True)

    @t.validate("target")
    def _valid_target(self, proposal: dict) -> int:
        return check_index("target", proposal["value"], max(1, len(self.targets)))


class LogitLens(LmscopeComposite):
    """Logit lens of one trace: table + target line + softmax scatter, linked by selection."""

    token = t.Int(-1)
    layer = t.Int(-1)
    stage = t.Unicode("post")
    compare_positions = t.List(t.Int())
    metric = t.Enum(("prob", "rank"), "prob")

    _valid_stage = choice_check("stage", SHOWN)

    @keyword_options
    def __init__(
        self,
        trace: Trace,
        *,
        top_k: int = 5,
        stage: str = "post",
        targets: int | str | list[int | str] | None = None,
        tokenizer=None,
        token: int = -1,
        compare_positions: list[int] | None = None,
    ) -> None:
        check_choice("stage", stage, SHOWN)
        self.trace = trace
        self._tokenizer = tokenizer if tokenizer is not None else getattr(trace, "tokenizer", None)
        self._targets = targets
        self._top_k = top_k
        #: decoded stages so far: "post" and/or "mid" -> LensResult
        self.results: dict[str, lens.LensResult] = {}
        self.table = LogitLensTable(n_layers=trace.n_layers, top_k=top_k, stage=stage)
        self._decode(stages_of(stage))
        self.line_fig, self._lines = self._line_figure()
        self.scatter_fig, self._scatter = self._scatter_figure()
        plots = ipw.HBox([self.line_fig, self.scatter_fig])
        super().__init__([self.table, plots])
        for name in ("token", "layer", "stage"):
            t.link((self, name), (self.table, name))
        self.stage = stage
        self.observe(self._on_stage, names=["stage"])
        self.observe(self._replot, names=["token", "layer", "compare_positions", "metric"])
        self.table.observe(self._replot, names=["target"])
        self.layer = trace.n_layers - 1
        self.compare_positions = [
            check_index("position", p, trace.seq_len) for p in (compare_positions or [])
        ]
        self.token = check_index("token", token, trace.seq_len)

    # -- data for the table -------------------------------------------------------------
    def _decode(self, stages: tuple[str, ...]) -> None:
        """Decode the stages not decoded yet, and send the table what it now holds."""
        missing = [s for s in stages if s not in self.results]
        for stage in missing:
            self.results[stage] = lens.logit_lens(
                self.trace,
                top_k=self._top_k,
                stage=stage,
                targets=self._targets,
                tokenizer=self._tokenizer,
            )
        if missing:
            self._fill_table()

    def _on_stage(self, change: dict) -> None:
        with self.reporting_errors():
            self._decode(stages_of(self.stage))
            self._replot()

    def _fill_table(self) -> None:
        results = self.results
        first = next(iter(results.values()))
        ids = torch.cat(
            [r.token_ids.flatten() for r in results.values()]
            + [torch.tensor(first.targets, dtype=torch.long)]
        )
        unique, inverse = torch.unique(ids, return_inverse=True)
        strings = lens.token_strings(self._tokenizer, unique.tolist())
        top, probs, t_probs, t_ranks = {}, {}, {}, {}
        start = 0
        for stage, r in results.items():
            n = r.token_ids.numel()
            top[stage] = inverse[start : start + n].view(r.token_ids.shape)
            start += n
            probs[stage] = r.probs
            if r.targets:
                t_probs[stage], t_ranks[stage] = r.target_probs, r.target_ranks
        with self.table.hold_sync():
            self.table.tokens = list(self.trace.tokens)
            self.table.stages = list(results)
            self.table.strings = strings
            self.table.string_ids = unique
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
        frame = plots.axes(
            x, y, x_label="layer", y_label="probability", x_format="d", y_format=".2f"
        )
        margin = (40, 40, 55, 10)
        fig = plots.figure([lines], frame, **_HALF, margin=margin, legend_location="top-left")
        fig.title = "target"
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
        frame = plots.axes(
            x,
            y,
            x_label="rank",
            y_label="probability",
            y_format=".0e",
            y_ticks=np.logspace(-5, 0, 6),  # decades: bqplot's own log ticks crowd
        )
        margin = (40, 40, 60, 10)
        fig = plots.figure(marks, frame, **_HALF, margin=margin, legend_location="top-right")
        fig.title = "softmax"
        return fig, marks

    def _stage(self) -> str:
        return "post" if self.stage == "both" else self.stage

    def scatter_positions(self) -> list[int]:
        """Focused position, the last position and the chosen ones, without repeats (at most 4)."""
        out: list[int] = []
        for p in [self.token, self.trace.seq_len - 1, *self.compare_positions]:
            if p >= 0 and p not in out:
                out.append(p)
        return out[: len(self._scatter)]

    def _replot(self, change: dict | None = None) -> None:
        with self.reporting_errors():
            stage = self._stage()
            pos = self.token
            layer = self.layer if self.layer >= 0 else self.trace.n_layers - 1
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
                probs = lens.distribution(self.trace, layer=layer, position=p, stage=stage)
                values, ids = probs.topk(SCATTER_TOP)
                with mark.hold_sync():
                    mark.x = np.arange(SCATTER_TOP)
                    mark.y = values.clamp_min(1e-12).numpy()
                    mark.names = lens.token_strings(self._tokenizer, ids.tolist())
                    mark.display_names = False
                    mark.labels = [f"{p}: {tokens[p]}"]
                    mark.visible = mark.display_legend = True
            self.scatter_fig.title = f"softmax at layer {layer} ({stage})"

    def _export_title(self) -> str:
        return "lmscope: logit lens"
