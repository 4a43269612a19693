"""LogitLens: what every layer would predict at every position, as a linked table and two plots.

A composite (an `ipywidgets.VBox`): the anywidget table on top, two bqplot figures under it.

- the table (`LogitLensTable`): layers × positions, each cell the top-1 token shaded by its
  probability, top-k on hover, `stage` "post" / "mid" / "both" interleaved, a target-token row
  on top; clicking a cell selects its position (`token`) and layer (`layer`).
- a line of each target's probability (or rank) across layers at the focused position.
- a scatter of the softmaxed logits (top 100, by rank) at the focused layer for the focused
  position, the last position and any `compare_positions`.

Only what is on screen is decoded: the stage shown, and the columns around the focused position
(`WINDOW` of them; a prompt that short is decoded whole). The table asks for the columns it
scrolls to (the "columns" request, answered with that slice) and the other stage when the menu
asks for it; `fill_all()` decodes everything (what `save_html` then saves). At 8,192 tokens the
whole table is minutes of CPU, the first window a fraction of a second. Only small arrays
travel: for the synced columns, top-k ids as int32 indices into a string table of the ids that
occur, their probabilities as float16, target probabilities/ranks per layer and position. The
`[layers, seq, vocab]` logits never leave the lens (see `lmscope.lens`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bqplot as bq
import ipywidgets as ipw
import numpy as np
import torch
import traitlets as t

from lmscope import _wire, lens
from lmscope.errors import check_choice, check_index
from lmscope.options import keyword_options
from lmscope.widgets import plots
from lmscope.widgets.base import (
    LmscopeComposite,
    LmscopeWidget,
    choice_check,
    index_check,
    request_handler,
    static_bundle,
)
from lmscope.widgets.traits import WireArray, WireDict

if TYPE_CHECKING:
    from lmscope.trace import Trace

SCATTER_TOP = 100
#: columns decoded before the view is shown: around the focused position, a few screens wide
WINDOW = 32
#: the most columns one "columns" request may ask for
MAX_REQUEST = 256
# the two plots side by side under the table
_HALF = {"width": "50%", "height": "300px", "min_width": plots.HALF_MIN_WIDTH}
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
    #: stage -> the positions (columns) the arrays below hold, C of them; the view asks for
    #: the others with the "columns" request
    columns = WireDict(kind="index").tag(sync=True)
    top = WireDict(kind="index").tag(sync=True)  # stage -> [L, C, top_k] indices into `strings`
    probs = WireDict(kind="prob").tag(sync=True)  # stage -> [L, C, top_k]
    targets = t.List(t.Unicode()).tag(sync=True)  # display strings of the targets
    target_probs = WireDict(kind="prob").tag(sync=True)  # stage -> [L, C, T]
    target_ranks = WireDict(kind="index").tag(sync=True)  # stage -> [L, C, T]
    target = t.Int(0).tag(sync=True)  # which target the target row shows
    token = t.Int(-1).tag(sync=True)
    layer = t.Int(-1).tag(sync=True)

    _valid_stage = choice_check("stage", SHOWN)
    _valid_token = index_check("token", size="tokens", optional=True)
    _valid_layer = index_check("layer", size="n_layers", optional=True)

    @t.validate("target")
    def _valid_target(self, proposal: dict) -> int:
        return check_index("target", proposal["value"], max(1, len(self.targets)))

    #: set by the composite: decodes and returns the columns the view scrolled to
    _answer_columns = None

    @request_handler("columns")
    def _columns(self, stages: list[str], start: int, stop: int) -> tuple[dict, list]:
        if self._answer_columns is None:
            raise ValueError("this lens table has no trace to decode more columns from")
        return self._answer_columns(stages, start, stop)


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
        #: stages decoded so far ("post" and/or "mid"), each filled column by column
        self.columns: dict[str, lens.LensColumns] = {}
        #: the same as LensResults spanning every position (undecoded columns hold id -1)
        self.results: dict[str, lens.LensResult] = {}
        self._focus = check_index("token", token, trace.seq_len)
        self.table = LogitLensTable(n_layers=trace.n_layers, top_k=top_k, stage=stage)
        self.table._answer_columns = self._answer_columns
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
    def window(self, position: int | None = None) -> tuple[int, int]:
        """The columns [start, stop) decoded first: WINDOW of them around `position` (default:
        the focused one), the table's view of it with some to spare on each side."""
        seq = self.trace.seq_len
        if position is None:
            position = self.token if self.token >= 0 else self._focus
        start = max(0, min(position - WINDOW // 2, seq - WINDOW))
        return start, min(seq, start + WINDOW)

    def _decode(self, stages: tuple[str, ...]) -> None:
        """Decode the window of the stages not decoded yet, and send the table what it holds."""
        missing = [s for s in stages if s not in self.columns]
        for stage in missing:
            self.columns[stage] = lens.LensColumns(
                self.trace,
                stage=stage,
                top_k=self._top_k,
                targets=self._targets,
                tokenizer=self._tokenizer,
            )
            self.results[stage] = self.columns[stage].result
            self.columns[stage].fill(*self.window())
        if missing:
            self._fill_table()

    def ensure(self, position: int) -> None:
        """Decode column `position` in every decoded stage (what the plots read there)."""
        for columns in self.columns.values():
            columns.fill(position, position + 1)

    def fill_all(self) -> LogitLens:
        """Decode every column of the stages shown now and sync them all (minutes at 8k tokens
        on a CPU: 30 layers x seq rows through the unembedding)."""
        with self.reporting_errors():
            for columns in self.columns.values():
                columns.fill()
            self._fill_table(everything=True)
        return self

    def save_html(self, path, title=None):
        """A saved page holds what is decoded so far (the page has no kernel to ask for more):
        `fill_all()` first to save every column."""
        self._fill_table(everything=True)
        return super().save_html(path, title=title)

    def _on_stage(self, change: dict) -> None:
        with self.reporting_errors():
            self._decode(stages_of(self.stage))
            self._replot()

    def _string_table(self, ids: list[torch.Tensor]) -> tuple[list[str], torch.Tensor, list]:
        """The distinct ids among `ids` (and the targets), their strings, and each input as
        indices into them."""
        targets = torch.tensor(next(iter(self.columns.values())).targets, dtype=torch.long)
        unique, inverse = torch.unique(
            torch.cat([i.flatten() for i in ids] + [targets]), return_inverse=True
        )
        out, start = [], 0
        for i in ids:
            out.append(inverse[start : start + i.numel()].view(i.shape))
            start += i.numel()
        return lens.token_strings(self._tokenizer, unique.tolist()), unique, out

    def _slices(self, stage: str, index: torch.Tensor) -> dict[str, torch.Tensor]:
        r = self.columns[stage].result
        out = {"top": r.token_ids[:, index], "probs": r.probs[:, index]}
        if r.targets:
            out["target_probs"], out["target_ranks"] = (
                r.target_probs[:, index],
                r.target_ranks[:, index],
            )
        return out

    def _fill_table(self, everything: bool = False) -> None:
        """Sync the decoded columns of the window (of every decoded column: `everything`)."""
        start, stop = self.window()
        parts = {}
        for stage, columns in self.columns.items():
            done = columns.done.clone()
            if not everything:
                done[:start] = False
                done[stop:] = False
            index = done.nonzero().squeeze(1)
            parts[stage] = (index, self._slices(stage, index))
        strings, unique, tops = self._string_table([p["top"] for _, p in parts.values()])
        top, probs, t_probs, t_ranks, cols = {}, {}, {}, {}, {}
        for (stage, (index, p)), ids in zip(parts.items(), tops, strict=True):
            cols[stage], top[stage], probs[stage] = index, ids, p["probs"]
            if "target_probs" in p:
                t_probs[stage], t_ranks[stage] = p["target_probs"], p["target_ranks"]
        first = next(iter(self.columns.values())).result
        with self.table.hold_sync():
            self.table.tokens = list(self.trace.tokens)
            self.table.stages = list(self.columns)
            self.table.strings = strings
            self.table.string_ids = unique
            self.table.columns = cols
            self.table.top, self.table.probs = top, probs
            self.table.targets = first.target_tokens if first.targets else []
            self.table.target_probs, self.table.target_ranks = t_probs, t_ranks

    def _answer_columns(self, stages: list[str], start: int, stop: int) -> tuple[dict, list]:
        """The "columns" request: decode [start, stop) of `stages` and answer with that slice,
        shaped like the synced arrays (ids as indices into the answer's own string table)."""
        for stage in stages:
            check_choice("stage", stage, lens.STAGES)
        start = check_index("start", start, self.trace.seq_len)
        stop = max(start + 1, min(int(stop), self.trace.seq_len, start + MAX_REQUEST))
        for stage in stages:
            if stage not in self.columns:
                self._decode((stage,))
            self.columns[stage].fill(start, stop)
        index = torch.arange(start, stop)
        parts = {stage: self._slices(stage, index) for stage in stages}
        strings, _, tops = self._string_table([p["top"] for p in parts.values()])
        arrays, buffers = [], []
        kinds = {"top": "index", "probs": "prob", "target_probs": "prob", "target_ranks": "index"}
        for (stage, p), ids in zip(parts.items(), tops, strict=True):
            for name, value in {**p, "top": ids}.items():
                env = _wire.encode(value, kinds[name])
                arrays.append(
                    {"stage": stage, "name": name, "dtype": env["dtype"], "shape": env["shape"]}
                )
                buffers.append(env["data"])
        return {"start": start, "stop": stop, "strings": strings, "arrays": arrays}, buffers

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
            x,
            y,
            x_label="layer",
            y_label="probability",
            x_format="d",
            y_format=".2f",
            x_ticks=plots.layer_ticks(self.trace.n_layers),
        )
        margin = (40, 40, 55, 10)
        fig = plots.figure(
            [lines],
            frame,
            **_HALF,
            margin=margin,
            legend_location="top-left",
            title_style=plots.TITLE_STYLE,
        )
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
        # bottom left: under a distribution's top ranks (high on the left), and bqplot draws a
        # right-hand legend past the plot's left edge
        fig = plots.figure(
            marks,
            frame,
            **_HALF,
            margin=margin,
            legend_location="bottom-left",
            title_style=plots.TITLE_STYLE,
        )
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
            if pos >= 0:
                self.ensure(pos)
            result = self.results[stage]
            if result.targets and pos >= 0:
                ys, labels = [], []
                for s, r in self.results.items():
                    if self.metric == "prob":
                        ys.append(r.target_probs[:, pos].T.numpy())
                    else:
                        ys.append(r.target_ranks[:, pos].T.numpy().astype(float))
                    labels += [plots.legend_text(name, after=f" ({s})") for name in r.target_tokens]
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
                self.line_fig.title = plots.title_text(
                    f"targets at position {pos} (", str(tokens[pos]), ")"
                )
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
                    mark.labels = [plots.legend_text(str(tokens[p]), before=f"{p}: ")]
                    mark.visible = mark.display_legend = True
            self.scatter_fig.title = f"softmax at layer {layer} ({stage})"

    def _export_title(self) -> str:
        return "lmscope: logit lens"
