"""Attention analyses that turn a Trace into the small matrices and line lists the views show.

Everything here is plain torch on the trace's device; results come back as float32 on the CPU,
sized for the screen ([seq, seq] at most, or pooled cells). Nothing here imports a widget.

Two kinds of values flow through: ``"prob"`` (softmax probabilities, rows sum to 1) and
``"score"`` (pre-softmax scores, masked = -inf). Each operation keeps its meaning for both:
muting the first token renormalises probabilities and sets the score to -inf (the same thing
before a softmax); fusing words sums probabilities over a word's keys and log-sum-exps scores
(the score whose softmax is that sum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from lmscope.errors import (
    InputError,
    OutOfRangeError,
    check_choice,
    check_count,
    check_fraction,
    check_index,
)
from lmscope.options import keyword_options

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from lmscope.trace import Trace

Values = Literal["prob", "score"]
HeadChoice = int | Literal["mean", "max"]
AGGREGATES = ("mean", "max")
VALUES = ("prob", "score")
GRID_BY = ("layer", "head")
#: bytes of probabilities (with their scores and mask rows) one block of query rows may hold
#: while a long prompt's grid is pooled block by block
BLOCK_BYTES = 256 * 2**20


def _check_values(values: str) -> None:
    check_choice("values", values, VALUES)


def check_head(head: HeadChoice, n_heads: int) -> HeadChoice:
    """A head index, or "mean" / "max" over every head."""
    if isinstance(head, str):
        if head not in AGGREGATES:
            raise InputError(f"head must be an index or one of {AGGREGATES}, got {head!r}")
        return head
    return check_index("head", head, n_heads)


def layer_span(trace: Trace, layer: int, layer_end: int | None = None) -> range:
    """Blocks layer..layer_end inclusive (a single block when layer_end is None)."""
    first = check_index("layer", layer, trace.n_layers)
    last = first if layer_end is None else check_index("layer", layer_end, trace.n_layers)
    if last < first:
        raise OutOfRangeError(
            f"layer range {first}..{last} is empty: the end must be >= the start "
            f"(valid: 0..{trace.n_layers - 1})"
        )
    return range(first, last + 1)


def unshown_layers(trace: Trace, layers: Sequence[int]) -> dict[int, str]:
    """Of `layers`, those with no pattern to show, each with why in words (no attention in a
    hybrid's layer, or a pattern the load-time proof could not reproduce)."""
    parts = trace.parts
    out = {}
    for layer in layers:
        if parts.attentions[layer] is None:
            out[layer] = parts.missing.get(("attention", layer), f"layer {layer} has no attention")
        elif layer in parts.attention_refused:
            out[layer] = parts.attention_refused[layer]
    return out


def notes(trace: Trace, layers: Sequence[int]) -> str:
    """What a reader of these layers' patterns must know, in words: why rows do not sum to one
    (gpt-oss's attention sinks) and why a layer is not shown. '' when there is nothing."""
    said: dict[str, list[int]] = {}
    for layer in layers:
        note = trace.parts.attention_notes.get(layer)
        if note:
            said.setdefault(note, []).append(layer)
    lines = [f"{_layers_text(which)}: {note}" for note, which in said.items()]
    lines += [f"not shown: {why}" for why in dict.fromkeys(unshown_layers(trace, layers).values())]
    return "\n".join(lines)


def _layers_text(layers: list[int]) -> str:
    return ("layer " if len(layers) == 1 else "layers ") + ", ".join(map(str, layers))


def aggregate_heads(patterns: torch.Tensor, how: str) -> torch.Tensor:
    """[heads, q, k] -> [q, k] by mean or max over heads."""
    if how == "mean":
        return patterns.mean(dim=0)
    if how == "max":
        return patterns.amax(dim=0)
    raise InputError(f"aggregate must be one of {AGGREGATES}, got {how!r}")


@keyword_options
def pattern(
    trace: Trace,
    *,
    layer: int,
    head: HeadChoice = 0,
    layer_end: int | None = None,
    values: Values = "prob",
) -> torch.Tensor:
    """[seq, seq] float32 CPU: one head, or the mean/max over heads, averaged over blocks
    layer..layer_end. Layers are fetched one at a time so a range never holds every layer."""
    _check_values(values)
    head = check_head(head, trace.n_heads)
    total: torch.Tensor | None = None
    span = layer_span(trace, layer, layer_end)
    for block in span:
        if isinstance(head, str):
            heads = trace.attention(block) if values == "prob" else trace.attention_scores(block)
            one = aggregate_heads(heads, head)
        else:
            one = trace.head(block, head) if values == "prob" else trace.head_scores(block, head)
        one = one.float()
        total = one.clone() if total is None else total.add_(one)
    assert total is not None
    return (total / len(span)).cpu()


def without_sink(matrix: torch.Tensor, *, values: Values = "prob") -> torch.Tensor:
    """Hide the first token's attention sink: drop key 0 and renormalise each row over the
    rest (row 0, which can only see token 0, becomes all zero). For scores key 0 becomes -inf,
    whose softmax is the same renormalised row."""
    _check_values(values)
    out = matrix.clone()
    if values == "score":
        out[..., 0] = -math.inf
        return out
    out[..., 0] = 0.0
    rest = out.sum(dim=-1, keepdim=True)
    return torch.where(rest > 0, out / rest.clamp_min(1e-30), out)


def _word_index(groups: Sequence[Sequence[int]], seq: int) -> torch.Tensor:
    owner = torch.full((seq,), -1, dtype=torch.long)
    for w, group in enumerate(groups):
        for t in group:
            if not 0 <= t < seq or owner[t] >= 0:
                raise InputError(
                    f"word groups must split tokens 0..{seq - 1} into disjoint groups; "
                    f"token {t} is out of range or in two groups"
                )
            owner[t] = w
    if (owner < 0).any():
        missing = int((owner < 0).nonzero()[0])
        raise InputError(f"word groups must cover every token; token {missing} is in none")
    return owner


def fuse_words(
    matrix: torch.Tensor, groups: Sequence[Sequence[int]], values: Values = "prob"
) -> torch.Tensor:
    """[seq, seq] -> [words, words]: sum over a word's key tokens, mean over its query tokens,
    so probability rows still sum to 1. Scores: log-sum-exp over keys (softmax of the fused
    score = the summed probability), mean over the query tokens that see the word at all."""
    _check_values(values)
    seq = matrix.shape[-1]
    owner = _word_index(groups, seq)
    n_words = len(groups)
    counts = torch.bincount(owner, minlength=n_words).to(matrix.dtype)
    if values == "prob":
        by_key = torch.zeros(seq, n_words, dtype=matrix.dtype).index_add_(1, owner, matrix)
        by_both = torch.zeros(n_words, n_words, dtype=matrix.dtype).index_add_(0, owner, by_key)
        return by_both / counts[:, None]
    # scores: logsumexp per key word, computed stably per group of columns
    by_key = torch.full((seq, n_words), -math.inf, dtype=matrix.dtype)
    for w, group in enumerate(groups):
        by_key[:, w] = torch.logsumexp(matrix[:, list(group)], dim=1)
    finite = torch.isfinite(by_key)
    summed = torch.zeros(n_words, n_words, dtype=matrix.dtype).index_add_(
        0, owner, torch.where(finite, by_key, torch.zeros_like(by_key))
    )
    seen = torch.zeros(n_words, n_words, dtype=matrix.dtype).index_add_(
        0, owner, finite.to(matrix.dtype)
    )
    return torch.where(seen > 0, summed / seen.clamp_min(1), torch.full_like(summed, -math.inf))


def word_labels(tokens: Sequence[str], groups: Sequence[Sequence[int]]) -> list[str]:
    return ["".join(tokens[t] for t in group) for group in groups]


def strength(matrix: torch.Tensor, values: Values = "prob") -> torch.Tensor:
    """How strongly to draw each weight, in [0, 1]. Probabilities are their own strength;
    scores are scaled per query row from its lowest to its highest visible score (masked = 0),
    because raw scores have no common scale across rows."""
    _check_values(values)
    if values == "prob":
        return matrix.clamp(0.0, 1.0)
    finite = torch.isfinite(matrix)
    lo = torch.where(finite, matrix, torch.full_like(matrix, math.inf)).amin(-1, keepdim=True)
    hi = torch.where(finite, matrix, torch.full_like(matrix, -math.inf)).amax(-1, keepdim=True)
    span = hi - lo
    scaled = torch.where(span > 0, (matrix - lo) / span.clamp_min(1e-30), torch.ones_like(matrix))
    return torch.where(finite, scaled, torch.zeros_like(matrix))


@dataclass(frozen=True)
class Lines:
    """A sparse line list: query index, key index, raw value and drawing strength in [0, 1].
    Sorted by query, then by key."""

    query: np.ndarray  # int32
    key: np.ndarray  # int32
    value: np.ndarray  # float32, the probability or score itself
    strength: np.ndarray  # float32 in [0, 1]

    def __len__(self) -> int:
        return len(self.query)


def prune(
    matrix: torch.Tensor,
    *,
    threshold: float = 0.0,
    top_k: int | None = None,
    values: Values = "prob",
) -> Lines:
    """Keep the weights whose strength is >= threshold (and > 0) and, per query row, among the
    top_k strongest. Masked positions never make a line."""
    _check_values(values)
    threshold = check_fraction("threshold", threshold)
    s = strength(matrix, values)
    keep = (s >= threshold) & (s > 0)
    if values == "score":
        keep &= torch.isfinite(matrix)
    if top_k is not None:
        top_k = check_count("top_k", top_k)
        # rank by index (not by value) so ties never let more than k lines through
        ranked = torch.zeros_like(keep)
        ranked.scatter_(1, torch.topk(s, min(top_k, s.shape[-1]), dim=-1).indices, True)
        keep &= ranked
    q, k_idx = keep.nonzero(as_tuple=True)
    return Lines(
        query=q.to(torch.int32).numpy(),
        key=k_idx.to(torch.int32).numpy(),
        value=matrix[q, k_idx].float().numpy(),
        strength=s[q, k_idx].float().numpy(),
    )


def pool(matrix: torch.Tensor, size: int) -> torch.Tensor:
    """[..., q, k] -> [..., min(q, size), min(k, size)] by max over blocks, so a sharp weight
    stays visible in a thumbnail. Signed inputs keep the value of largest magnitude."""
    q, k = matrix.shape[-2:]
    out = (min(q, size), min(k, size))
    if out == (q, k):
        return matrix
    x = matrix.reshape(-1, 1, q, k).float()
    hi = F.adaptive_max_pool2d(x, out)
    if (x >= 0).all():
        pooled = hi
    else:
        lo = -F.adaptive_max_pool2d(-x, out)
        pooled = torch.where(hi.abs() >= lo.abs(), hi, lo)
    return pooled.reshape(*matrix.shape[:-2], *out)


def grid_cells(
    trace: Trace, by: str, layer: int, head: int
) -> tuple[list[tuple[int, int]], list[str]]:
    """The (layer, head) of each heatmap of a grid, and its label."""
    if by not in GRID_BY:
        raise InputError(f"by must be one of {GRID_BY}, got {by!r}")
    layer = check_index("layer", layer, trace.n_layers)
    head = check_index("head", head, trace.n_heads)
    if by == "layer":
        where = [(layer, h) for h in range(trace.n_heads)]
    else:  # every layer that has a pattern (a hybrid's other layers are named in `notes`)
        unshown = unshown_layers(trace, range(trace.n_layers))
        where = [(ly, head) for ly in range(trace.n_layers) if ly not in unshown]
        if not where:
            trace.parts.check_attention(next(iter(unshown)))  # says why in words
    return where, [f"L{ly} H{h}" for ly, h in where]


@keyword_options
def grid_difference(
    a: Trace,
    b: Trace,
    *,
    by: str = "layer",
    layer: int = 0,
    head: int = 0,
    size: int = 128,
    mute_sink: bool = False,
) -> torch.Tensor:
    """[cells, r, r] pattern of `a` minus pattern of `b`, cell by cell as in `grid`, pooled
    keeping the signed value of largest magnitude. On a long prompt each layer's heads are
    taken block by block of query rows (`pooled_heads` with `minus=b`): the pooled full
    difference, without either [seq, seq] pattern existing whole."""
    check_same_length(a, b)
    size = check_count("size", size)
    where, _ = grid_cells(a, by, layer, head)
    return grid_heatmaps(a, where, size, mute_sink=mute_sink, minus=b)


def check_same_length(a: Trace, b: Trace) -> None:
    """A difference of patterns needs two runs of the same model over as many tokens."""
    if a.seq_len != b.seq_len:
        raise InputError(
            f"a difference needs prompts of the same length: {a.seq_len} vs {b.seq_len} tokens; "
            "compare them side by side instead"
        )
    if (a.n_layers, a.n_heads) != (b.n_layers, b.n_heads):
        raise InputError("a difference needs two traces of the same model")


def by_layer(where: Sequence[tuple[int, int]]) -> dict[int, list[int]]:
    """The (layer, head) cells grouped by layer, in order: {layer: [heads]}."""
    groups: dict[int, list[int]] = {}
    for layer, head in where:
        groups.setdefault(layer, []).append(head)
    return groups


def pooled_cell(
    trace: Trace,
    layer: int,
    head: int,
    size: int,
    *,
    mute_sink: bool = False,
    minus: Trace | None = None,
) -> torch.Tensor:
    """[r, r] one head's heatmap (minus `minus`'s same head) pooled from its whole pattern:
    the route of a short prompt, or of a pattern that is already cached."""
    m = trace.head(layer, head).float()
    m = without_sink(m) if mute_sink else m
    if minus is not None:
        other = minus.head(layer, head).float()
        m = m - (without_sink(other) if mute_sink else other)
    return pool(m.cpu(), size)


def grid_heatmaps(
    trace: Trace,
    where: Sequence[tuple[int, int]],
    size: int,
    *,
    mute_sink: bool = False,
    minus: Trace | None = None,
    first_pass: bool = False,
    long: dict[int, list[int]] | None = None,
) -> torch.Tensor:
    """[cells, r, r] the heatmap of each (layer, head) in `where` (`trace`'s probabilities, or
    their difference from `minus`'s). The layers of `long` (by default `long_layers`) are
    pooled block by block of query rows, or are their `first_pass_pool` when `first_pass`; the
    others come from their whole pattern."""
    long = long_layers(trace, where, size, minus=minus) if long is None else long
    r = min(trace.seq_len, size)
    cells = torch.empty(len(where), r, r)
    index = {cell: i for i, cell in enumerate(where)}
    for layer, heads in by_layer(where).items():
        if layer in long:
            how = first_pass_pool if first_pass else pooled_heads
            pooled = how(trace, layer, heads, size, mute_sink=mute_sink, minus=minus)
        else:
            pooled = [
                pooled_cell(trace, layer, h, size, mute_sink=mute_sink, minus=minus) for h in heads
            ]
        for h, cell in zip(heads, pooled, strict=True):
            cells[index[layer, h]] = cell
    return cells


def long_layers(
    trace: Trace, where: Sequence[tuple[int, int]], size: int, *, minus: Trace | None = None
) -> dict[int, list[int]]:
    """The layers of `where` (each with its heads) that a grid pools block by block."""
    return {
        layer: heads
        for layer, heads in by_layer(where).items()
        if pools_by_blocks(trace, layer, heads, size, minus=minus)
    }


def _bins(n: int, out: int) -> tuple[list[int], list[int]]:
    """Start and end of each of `out` adaptive-pooling bins over `n` (torch's own rule)."""
    return [i * n // out for i in range(out)], [-(-(i + 1) * n // out) for i in range(out)]


def pooled_heads(
    trace: Trace,
    layer: int,
    heads: Sequence[int],
    size: int,
    *,
    mute_sink: bool = False,
    minus: Trace | None = None,
) -> torch.Tensor:
    """[len(heads), r, r] float32 CPU: `pool` of each head's probabilities (after
    `without_sink` when muted; minus `minus`'s, pooled keeping the signed value of largest
    magnitude, when given), computed from blocks of query rows that line up with the pooled
    rows, so a head's [seq, seq] pattern never exists whole (256 MB at 8,192 tokens; its layer
    2.3 GB). Each block's rows come from the family's eager attention like every pattern
    (`capture.probe` with `rows`); a max (and a min) over a bin is the max (min) over its rows'
    key bins, so the result is the pooled full pattern."""
    out = torch.empty(len(heads), min(trace.seq_len, size), min(trace.seq_len, size))
    for _ in pool_blocks(trace, layer, heads, size, out, mute_sink=mute_sink, minus=minus):
        pass
    return out


def first_pass_pool(
    trace: Trace,
    layer: int,
    heads: Sequence[int],
    size: int,
    *,
    mute_sink: bool = False,
    minus: Trace | None = None,
) -> torch.Tensor:
    """A cheap stand-in for `pooled_heads`: each pooled row from the first query row of its
    bin only (one block of r rows instead of seq), so a weight (a difference's magnitude) is at
    most what the exact max-pooled picture shows there."""
    seq, r = trace.seq_len, min(trace.seq_len, size)
    starts, _ = _bins(seq, r)
    weights = next(_weight_rows(trace, layer, list(heads), [starts], mute_sink, minus))
    hi, lo = _key_pool(weights, r, signed=minus is not None)
    return _signed(hi, lo).cpu()


def _weight_rows(
    trace: Trace,
    layer: int,
    heads: list[int],
    blocks: list[list[int]],
    mute_sink: bool,
    minus: Trace | None,
) -> Iterator[torch.Tensor]:
    """[heads, rows, seq] of each block of query rows: `trace`'s probabilities (muted when
    asked), minus `minus`'s when given."""
    mine = _probe_rows(trace, layer, heads, blocks)
    theirs = _probe_rows(minus, layer, heads, blocks) if minus is not None else None
    for weights in mine:
        weights = without_sink(weights) if mute_sink else weights
        if theirs is not None:
            other = next(theirs)
            weights = weights - (without_sink(other) if mute_sink else other)
        yield weights


def _key_pool(
    weights: torch.Tensor, r: int, *, signed: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[heads, rows, seq] -> the max (and, for signed values, the min) over each of r key bins:
    [heads, rows, r] each."""
    heads, rows, seq = weights.shape
    flat = weights.reshape(-1, 1, seq)
    hi = F.adaptive_max_pool1d(flat, r).reshape(heads, rows, r)
    lo = -F.adaptive_max_pool1d(-flat, r).reshape(heads, rows, r) if signed else None
    return hi, lo


def _signed(hi: torch.Tensor, lo: torch.Tensor | None) -> torch.Tensor:
    """The value of largest magnitude from a bin's max and min (the max when they tie), as
    `pool` keeps it."""
    return hi if lo is None else torch.where(hi.abs() >= lo.abs(), hi, lo)


def pool_blocks(
    trace: Trace,
    layer: int,
    heads: Sequence[int],
    size: int,
    out: torch.Tensor,
    *,
    mute_sink: bool = False,
    minus: Trace | None = None,
) -> Iterator[float]:
    """Fill `out` ([heads, r, r]) as `pooled_heads` does, one block of rows per step; yields
    the fraction done after each."""
    seq, heads = trace.seq_len, list(heads)
    r = min(seq, size)
    starts, ends = _bins(seq, r)
    # a block holds probabilities, scores and mask rows; a difference holds both runs' and
    # the difference itself
    floats_per_row = len(heads) * seq * (3 if minus is None else 5)
    max_rows = max(1, BLOCK_BYTES // (floats_per_row * 4))
    blocks = []  # (first bin, bin after the last)
    i = 0
    while i < r:
        j = i + 1
        while j < r and ends[j] - starts[i] <= max_rows:
            j += 1
        blocks.append((i, j))
        i = j
    rows = [list(range(starts[i], ends[j - 1])) for i, j in blocks]
    probed = _weight_rows(trace, layer, heads, rows, mute_sink, minus)
    for (i, j), weights in zip(blocks, probed, strict=True):
        a = starts[i]
        hi, lo = _key_pool(weights, r, signed=minus is not None)
        for k in range(i, j):
            bin_rows = slice(starts[k] - a, ends[k] - a)
            top = hi[:, bin_rows].amax(1)
            out[:, k] = _signed(top, None if lo is None else lo[:, bin_rows].amin(1)).cpu()
        yield j / r


def _probe_rows(trace: Trace, layer: int, heads: list[int], blocks: list[list[int]]):
    """Probabilities [heads, len(rows), seq] float32 of each list of query rows in `blocks`."""
    from lmscope import capture  # lazy: the analyses stay importable without the hooks

    trace.parts.check_attention(layer)
    module, call = trace.parts.attentions[layer], trace.attention_call(layer)
    for rows in blocks:
        with torch.no_grad():
            yield capture.probe(module, call, heads, rows=rows)["weights"][0].float()


def head_lines(
    trace: Trace,
    layer: int,
    head: int,
    *,
    threshold: float = 0.0,
    top_k: int | None = None,
    mute_sink: bool = False,
) -> Lines:
    """`prune` of one head's probabilities (after `without_sink` when muted), block of query
    rows by block: each row keeps its own lines, so the result is the pruned full pattern
    without the [seq, seq] pattern existing whole."""
    blocks = head_line_blocks(
        trace, layer, head, threshold=threshold, top_k=top_k, mute_sink=mute_sink
    )
    return join_lines([lines for _, lines in blocks])


def join_lines(parts: Sequence[Lines]) -> Lines:
    """Line lists of consecutive query blocks as one (still sorted by query, then key)."""
    return Lines(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in Lines.__dataclass_fields__)
    )


def head_line_blocks(
    trace: Trace,
    layer: int,
    head: int,
    *,
    threshold: float = 0.0,
    top_k: int | None = None,
    mute_sink: bool = False,
    first_rows: int | None = None,
) -> Iterator[tuple[int, Lines]]:
    """The lines of `head_lines`, one block of query rows at a time (the first `first_rows`
    rows alone when given: a view shows its top rows first), each with the row it stops at."""
    step = max(1, BLOCK_BYTES // (trace.seq_len * 4 * 3))
    starts = [0, first_rows] if first_rows else [0]
    while starts[-1] + step < trace.seq_len:
        starts.append(starts[-1] + step)
    starts = [a for a in starts if a < trace.seq_len]
    stops = [*starts[1:], trace.seq_len]
    blocks = [list(range(a, b)) for a, b in zip(starts, stops, strict=True)]
    probed = _probe_rows(trace, layer, [head], blocks)
    for a, b, weights in zip(starts, stops, probed, strict=True):
        m = without_sink(weights[0]) if mute_sink else weights[0]
        found = prune(m, threshold=threshold, top_k=top_k)
        yield b, Lines(found.query + a, found.key, found.value, found.strength)


def long_enough_for_blocks(
    trace: Trace, layer: int, heads: list[int], *, minus: Trace | None = None
) -> bool:
    """Whether these heads' patterns (and `minus`'s, for a difference) are better taken block
    by block: together they would not fit one block, they are not all already computed, and the
    layer goes through the attention interface (whose probe can compute some query rows only)."""
    if trace.seq_len**2 * 4 * 3 * len(heads) <= BLOCK_BYTES:
        return False
    traces = [trace] if minus is None else [trace, minus]
    if all(tr.cached_head(layer, h) is not None for tr in traces for h in heads):
        return False
    return all(tr.parts.pattern_route.get(layer, "interface") == "interface" for tr in traces)


def pools_by_blocks(
    trace: Trace, layer: int, heads: list[int], size: int, *, minus: Trace | None = None
) -> bool:
    """Whether a grid pools these heads block by block (long enough, and pooled at all)."""
    return trace.seq_len > size and long_enough_for_blocks(trace, layer, heads, minus=minus)


@keyword_options
def grid(
    trace: Trace,
    *,
    by: str = "layer",
    layer: int = 0,
    head: int = 0,
    size: int = 128,
    mute_sink: bool = False,
) -> tuple[torch.Tensor, list[str], list[tuple[int, int]]]:
    """The heatmaps of a grid: every head of `layer` (by="layer") or `head` in every layer
    (by="head"), each max-pooled to at most size x size. Returns ([cells, r, r] probabilities,
    a label per cell, the (layer, head) of each cell). Layers are fetched one at a time; on a
    long prompt each layer's heads are pooled block by block (`pooled_heads`)."""
    size = check_count("size", size)
    where, labels = grid_cells(trace, by, layer, head)
    return grid_heatmaps(trace, where, size, mute_sink=mute_sink), labels, where
