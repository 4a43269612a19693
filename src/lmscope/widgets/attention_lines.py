"""AttentionLines: one head (or an aggregate of heads and layers) as lines between two token
columns. Python keeps the trace, prunes the pattern to a line list and syncs only that list:
query/key indices, a uint8 drawing strength and the float16 value for tooltips."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import traitlets as t

from lmscope import attention
from lmscope._wire import encode
from lmscope.errors import InputError, OutOfRangeError, check_index
from lmscope.widgets.base import LmscopeWidget, static_bundle

if TYPE_CHECKING:
    from lmscope.trace import Trace

_CONTROLS = (
    "layer",
    "layer_end",
    "head",
    "aggregate",
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
    the row's range) or beyond the `top_k` strongest per query are not sent.
    """

    _esm = static_bundle("attention_lines")

    n_layers = t.Int(1).tag(sync=True)
    n_heads = t.Int(1).tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    layer_end = t.Int(0).tag(sync=True)
    head = t.Int(0).tag(sync=True)
    aggregate = t.Enum(("head", "mean", "max"), "head").tag(sync=True)
    values = t.Enum(attention.VALUES, "prob").tag(sync=True)
    threshold = t.Float(0.01).tag(sync=True)
    top_k = t.Int(16).tag(sync=True)
    fuse_words = t.Bool(False).tag(sync=True)
    mute_sink = t.Bool(False).tag(sync=True)
    tokens = t.List(t.Unicode()).tag(sync=True)
    lines = t.Dict().tag(sync=True)

    def __init__(
        self,
        trace: Trace,
        layer: int = 0,
        head: int | str = 0,
        *,
        layer_end: int | None = None,
        values: str = "prob",
        threshold: float = 0.01,
        top_k: int = 16,
        fuse_words: bool = False,
        mute_sink: bool = False,
        **kwargs: Any,
    ) -> None:
        span = attention.layer_span(trace, layer, layer_end)
        if isinstance(head, str):
            if head not in attention.AGGREGATES:
                raise InputError(f"head must be an index or one of {attention.AGGREGATES}")
            aggregate, head = head, 0
        else:
            aggregate, head = "head", check_index("head", head, trace.n_heads)
        self._check(values=values, threshold=threshold, top_k=top_k)
        self._trace = trace
        super().__init__(
            n_layers=trace.n_layers,
            n_heads=trace.n_heads,
            layer=span.start,
            layer_end=span.stop - 1,
            head=head,
            aggregate=aggregate,
            values=values,
            threshold=threshold,
            top_k=top_k,
            fuse_words=fuse_words,
            mute_sink=mute_sink,
            **kwargs,
        )
        self._refresh()
        self.observe(self._on_control, names=list(_CONTROLS))

    @staticmethod
    def _check(*, values: str, threshold: float, top_k: int) -> None:
        if values not in attention.VALUES:
            raise InputError(f"values must be one of {attention.VALUES}, got {values!r}")
        if not 0.0 <= threshold <= 1.0:
            raise OutOfRangeError(f"threshold {threshold} is out of range: valid 0..1")
        if top_k < 1:
            raise OutOfRangeError(f"top_k must be >= 1, got {top_k}")

    @property
    def trace(self) -> Trace:
        return self._trace

    def matrix(self):
        """The [rows, rows] matrix on screen before pruning (tokens, or words when fused)."""
        tr = self._trace
        head = self.aggregate if self.aggregate != "head" else self.head
        m = attention.pattern(tr, self.layer, head, layer_end=self.layer_end, values=self.values)
        if self.mute_sink:
            m = attention.mute_first_token(m, self.values)
        if self.fuse_words:
            m = attention.fuse_words(m, tr.word_groups, self.values)
        return m

    def show(self, layer: int, head: int) -> None:
        """Switch to one head of one block in a single update."""
        layer = check_index("layer", layer, self.n_layers)
        head = check_index("head", head, self.n_heads)
        self._quiet = True
        try:
            self.layer, self.layer_end, self.aggregate, self.head = layer, layer, "head", head
        finally:
            self._quiet = False
        with self.reporting_errors():
            self._refresh()

    _quiet = False

    def _on_control(self, change: dict) -> None:
        if self._quiet:
            return
        with self.reporting_errors():
            if change["name"] == "layer" and self.layer_end < self.layer:
                self.layer_end = self.layer  # triggers its own refresh
                return
            self._refresh()

    def _refresh(self) -> None:
        tr = self._trace
        self._check(values=self.values, threshold=self.threshold, top_k=self.top_k)
        m = self.matrix()
        found = attention.prune(m, threshold=self.threshold, top_k=self.top_k, values=self.values)
        index = "uint16" if m.shape[0] < 65536 else "int32"
        tokens = attention.word_labels(tr.tokens, tr.word_groups) if self.fuse_words else tr.tokens
        with self.hold_sync():
            self.tokens = list(tokens)
            self.lines = {
                "query": encode(found.query.astype(index)),
                "key": encode(found.key.astype(index)),
                "strength": encode((found.strength * 255).round().astype("uint8")),
                "value": encode(found.value.astype("float16")),
                # what these lines are of: the view compares it with its controls, so lines
                # still of an earlier selection never pass for the latest one
                "of": {name: getattr(self, name) for name in _CONTROLS},
            }
            self.error = ""
