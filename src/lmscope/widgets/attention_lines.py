"""AttentionLines: one head (or an aggregate of heads and layers) as lines between two token
columns. Python keeps the trace, prunes the pattern to a line list and syncs only that list:
query/key indices, a uint8 drawing strength and the float16 value for tooltips.

On a long prompt one head's lines come a block of query rows at a time: the first
`FIRST_ROWS` rows (the top of the view) at once, the rest while the kernel is idle (`status`
says how far, `exact` turns True; `fill_all()` without a loop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import traitlets as t

from lmscope import attention
from lmscope.errors import check_choice, check_count, check_fraction, check_index
from lmscope.options import keyword_options
from lmscope.widgets.base import LmscopeWidget, choice_check, index_check, static_bundle
from lmscope.widgets.traits import WireDict

if TYPE_CHECKING:
    from lmscope.trace import Trace

#: query rows of a long prompt's line diagram computed before it is first shown
FIRST_ROWS = 256

#: the controls a line list answers (the view compares `lines.of` with them)
CONTROLS = (
    "layer",
    "layer_end",
    "head",
    "values",
    "threshold",
    "top_k",
    "fuse_words",
    "mute_sink",
)


class AttentionLines(LmscopeWidget):
    """Queries on the left, keys on the right, a line per weight (opacity and width by weight).

    `head` is an index or "mean"/"max" over all heads; `layer_end` averages blocks
    layer..layer_end. Lines weaker than `threshold` (a probability, or for scores a fraction of
    the row's range) or beyond the `top_k` strongest per query are not sent; `mute_sink` hides
    the first token's attention sink.
    """

    _esm = static_bundle("attention_lines")

    n_layers = t.Int(1).tag(sync=True)
    n_heads = t.Int(1).tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    layer_end = t.Int(0).tag(sync=True)
    # the validators below check these, in lmscope's words
    head = t.Union([t.Int(), t.Unicode()], default_value=0).tag(sync=True)
    values = t.Unicode("prob").tag(sync=True)
    threshold = t.Float(0.01).tag(sync=True)
    top_k = t.Int(16).tag(sync=True)
    fuse_words = t.Bool(False).tag(sync=True)
    mute_sink = t.Bool(False).tag(sync=True)
    exact = t.Bool(True).tag(sync=True)  # False while a long prompt's lines are still coming
    status = t.Unicode("").tag(sync=True)  # how far they are, "" when all are in
    tokens = t.List(t.Unicode()).tag(sync=True)
    lines = WireDict(kinds={"strength": "unit", "value": "activation"}).tag(sync=True)

    @keyword_options
    def __init__(
        self,
        trace: Trace,
        *,
        layer: int = 0,
        head: int | str = 0,
        layer_end: int | None = None,
        values: str = "prob",
        threshold: float = 0.01,
        top_k: int = 16,
        fuse_words: bool = False,
        mute_sink: bool = False,
    ) -> None:
        span = attention.layer_span(trace, layer, layer_end)
        self._trace = trace
        super().__init__(n_layers=trace.n_layers, n_heads=trace.n_heads)
        with self.hold_trait_notifications():  # checked by the validators below, once
            self.layer, self.layer_end, self.head = span.start, span.stop - 1, head
            self.values, self.threshold, self.top_k = values, threshold, top_k
            self.fuse_words, self.mute_sink = fuse_words, mute_sink
        self._refresh()
        self.observe(self._on_control, names=list(CONTROLS))

    # -- what the browser may set: the same checks as the constructor's -----------------------
    _valid_layer = index_check("layer", "layer_end", size="n_layers", label="layer")

    @t.validate("head")
    def _valid_head(self, proposal: dict) -> int | str:
        head = proposal["value"]
        if isinstance(head, str):
            return check_choice("head", head, attention.AGGREGATES)
        return check_index("head", head, self.n_heads)

    _valid_values = choice_check("values", attention.VALUES)

    @t.validate("threshold")
    def _valid_threshold(self, proposal: dict) -> float:
        return check_fraction("threshold", proposal["value"])

    @t.validate("top_k")
    def _valid_top_k(self, proposal: dict) -> int:
        return check_count("top_k", proposal["value"])

    @property
    def trace(self) -> Trace:
        return self._trace

    def matrix(self):
        """The [rows, rows] matrix on screen before pruning (tokens, or words when fused)."""
        tr = self._trace
        m = attention.pattern(
            tr, layer=self.layer, head=self.head, layer_end=self.layer_end, values=self.values
        )
        if self.mute_sink:
            m = attention.without_sink(m, values=self.values)
        if self.fuse_words:
            m = attention.fuse_words(m, tr.word_groups, self.values)
        return m

    def show(self, layer: int, head: int) -> None:
        """Switch to one head of one block in a single update."""
        layer = check_index("layer", layer, self.n_layers)
        head = check_index("head", head, self.n_heads)
        with self.changing_together(self._refresh):
            self.layer, self.layer_end, self.head = layer, layer, head

    def _on_control(self, change: dict) -> None:
        if self._quiet:
            return
        with self.reporting_errors():
            if change["name"] == "layer" and self.layer_end < self.layer:
                self.layer_end = self.layer  # triggers its own refresh
                return
            self._refresh()

    def _by_blocks(self) -> bool:
        """One head's probabilities at one layer on a long prompt: pruned block by block."""
        one = self.layer == self.layer_end and isinstance(self.head, int)
        plain = one and self.values == "prob" and not self.fuse_words
        return plain and attention.long_enough_for_blocks(self._trace, self.layer, [self.head])

    def _refresh(self) -> None:
        tr = self._trace
        if self._by_blocks():
            blocks = attention.head_line_blocks(
                tr,
                self.layer,
                self.head,
                threshold=self.threshold,
                top_k=self.top_k,
                mute_sink=self.mute_sink,
                first_rows=FIRST_ROWS,
            )
            done, first = next(blocks)
            self._sync(first, tr.seq_len, done=done if done < tr.seq_len else None)
            self._start_steps(self._rest(blocks, [first]))
            return
        self._steps = None  # nothing of an earlier long selection is still to come
        m = self.matrix()
        found = attention.prune(m, threshold=self.threshold, top_k=self.top_k, values=self.values)
        self._sync(found, m.shape[0])

    def _rest(self, blocks, found: list):
        """A long prompt's remaining blocks of query rows, one a step."""
        for done, block in blocks:
            found.append(block)
            rows = self._trace.seq_len
            self._sync(attention.join_lines(found), rows, done=done if done < rows else None)
            yield

    def _sync(self, found: attention.Lines, rows: int, done: int | None = None) -> None:
        """Send `found`; `done`: a long prompt's lines so far cover the query rows below it."""
        tr = self._trace
        index = "uint16" if rows < 65536 else "int32"
        tokens = attention.word_labels(tr.tokens, tr.word_groups) if self.fuse_words else tr.tokens
        with self.hold_sync():
            self.tokens = list(tokens)
            self.lines = {
                "query": found.query.astype(index),
                "key": found.key.astype(index),
                "strength": found.strength,
                "value": found.value,
                # what these lines are of: the view compares it with its controls, so lines
                # still of an earlier selection never pass for the latest one
                "of": {name: getattr(self, name) for name in CONTROLS},
            }
            self.note = attention.notes(tr, attention.layer_span(tr, self.layer, self.layer_end))
            if done is None:
                self.exact, self.status = True, ""
            else:
                self.exact = False
                self.status = f"lines of query tokens 0-{min(done, rows) - 1} of {rows} so far"
            self.error = ""
