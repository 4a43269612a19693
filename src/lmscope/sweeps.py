"""Activation-patching sweeps: patch clean activations into a corrupted run, one cell at a time,
and measure how much of the clean behaviour each cell restores.

The metric is logit(answer) - logit(foil) at the last position (logit(answer) without a foil);
the effect is normalised so the clean run scores 1 and the corrupted run 0.

The patched runs are batched: many patched copies of the corrupted prompt go through the model
in one forward, each row with its own patch. A copy patched at layer L joins the batch at block
L from the corrupted run's own block input (blocks before L would recompute exactly that). With
causal attention a patch at position p changes nothing before p, so a copy runs only positions
p.., attending to the corrupted run's cached keys and values for the earlier ones
(`lmscope.suffix`; where that would not be exact the sweep runs whole prompts and
`PatchingResult.route_note` says why). A cell whose patch writes exactly the values the
corrupted run already has there is the corrupted run itself, and is not rerun.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from lmscope import capture, edits, memory, suffix
from lmscope.errors import InputError, OutOfRangeError, check_index
from lmscope.options import keyword_options

if TYPE_CHECKING:
    from lmscope.inspector import Inspector
    from lmscope.trace import Trace

SWEEP_SITES = ("resid_pre", "attn_out", "mlp_out", "head")
#: copies per forward at most: past this the CPU gains nothing and a GPU little
MAX_BATCH = 64


@dataclass
class PatchingResult:
    """One sweep. `effect` and `metric` are [layers, columns] (columns: positions of the
    corrupted prompt, or heads for site "head"); NaN where a position has no clean counterpart."""

    site: str
    effect: torch.Tensor
    metric: torch.Tensor
    clean_metric: float
    corrupted_metric: float
    layers: list[int]
    columns: list[int]
    clean: Trace
    corrupted: Trace
    answer: int
    foil: int | None
    align: tuple[int | None, ...]
    inspector: Inspector | None = field(default=None, repr=False)
    #: how the patched runs were computed: "prefix cache" (only the positions from each
    #: patch on, the corrupted run's keys and values for those before) or "whole prompt"
    route: str = "whole prompt"
    #: why the whole prompt, where it was (e.g. a sliding window shorter than the prompt)
    route_note: str = ""
    #: cells whose patch writes exactly the corrupted run's own values: their metric is the
    #: corrupted run's, with no forward
    n_unchanged: int = 0

    @property
    def axis(self) -> str:
        """What the columns are: "position" or "head"."""
        return "head" if self.site == "head" else "position"

    @property
    def tokens(self) -> list[str]:
        """The corrupted prompt's tokens (the position columns' labels)."""
        return self.corrupted.tokens

    def patch(self, layer: int, column: int) -> edits.Patch:
        """The single patch behind one cell: `ins.run(result.corrupted.input_ids,
        edits=[*result.corrupted.edits, result.patch(layer, column)])` reruns it."""
        if self.axis == "head":
            head = check_index("head", column, self.clean.n_heads)
            pairs = [(p, q) for p, q in enumerate(self.align) if q is not None]
            return edits.Patch(
                source=self.clean,
                site="head",
                layer=layer,
                head=head,
                position=[p for p, _ in pairs],
                source_position=[q for _, q in pairs],
            )
        position = check_index("position", column, self.corrupted.seq_len)
        if self.align[position] is None:
            raise InputError(f"position {position} has no clean counterpart in the alignment")
        return edits.Patch(
            source=self.clean,
            site=self.site,
            layer=layer,
            position=position,
            source_position=self.align[position],
        )

    def rerun(self, layer: int, column: int) -> Trace:
        """The corrupted prompt run again with one cell's patch (and the corrupted run's edits)."""
        if self.inspector is None:
            raise InputError("this result has no inspector to rerun with")
        patch = self.patch(layer, column)
        return self.inspector.run(self.corrupted.input_ids, edits=[*self.corrupted.edits, patch])

    def top(self, k: int = 5) -> list[tuple[int, int, float]]:
        """The k cells with the largest |effect|, as (layer, column, effect)."""
        flat = self.effect.nan_to_num(0.0).abs().flatten()
        order = flat.argsort(descending=True)[:k].tolist()
        width = len(self.columns)
        return [
            (self.layers[i // width], self.columns[i % width], float(self.effect.flatten()[i]))
            for i in order
        ]

    def __repr__(self) -> str:
        return (
            f"PatchingResult({self.site}: {len(self.layers)} layers x {len(self.columns)} "
            f"{self.axis}s, clean metric {self.clean_metric:.3f}, corrupted "
            f"{self.corrupted_metric:.3f})"
        )


def token_id(ins: Inspector, token: int | str, name: str) -> int:
    """A vocabulary id from an id or a text that is exactly one token (e.g. " Paris")."""
    if isinstance(token, str):
        if ins.tokenizer is None:
            raise InputError(f"{name} is text but this Inspector has no tokenizer; pass an id")
        ids = ins.tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            pieces = [ins.tokenizer.decode([i]) for i in ids]
            raise InputError(
                f"{name} {token!r} is {len(ids)} tokens {pieces}, not one; pick a text that is "
                "a single token (often with a leading space) or pass its id"
            )
        return ids[0]
    return check_index(name, token, ins.vocab_size)


def metric_of(logits: torch.Tensor, answer: int, foil: int | None) -> torch.Tensor:
    """logit(answer) - logit(foil) of [..., vocab] logits (logit(answer) without a foil)."""
    value = logits[..., answer].float()
    return value - logits[..., foil].float() if foil is not None else value


def _alignment(clean: Trace, corrupted: Trace, align) -> tuple[int | None, ...]:
    if align is None:
        if clean.seq_len != corrupted.seq_len:
            raise InputError(
                f"the clean prompt has {clean.seq_len} tokens and the corrupted one "
                f"{corrupted.seq_len}: patching matches positions one to one. Reword them to "
                "the same length (e.g. swap names that are one token each), or pass align=: "
                "for each corrupted position, the clean position to patch from (None: none)"
            )
        return tuple(range(corrupted.seq_len))
    align = tuple(align)
    if len(align) != corrupted.seq_len:
        raise InputError(
            f"align has {len(align)} entries but the corrupted prompt has {corrupted.seq_len} "
            "tokens: give one clean position (or None) per corrupted position"
        )
    return tuple(None if q is None else check_index("align", q, clean.seq_len) for q in align)


def _as_trace(ins: Inspector, prompt) -> Trace:
    from lmscope.trace import Trace

    return prompt if isinstance(prompt, Trace) else ins.run(prompt)


@keyword_options
def patching(
    ins: Inspector,
    clean,
    corrupted,
    *,
    answer: int | str,
    foil: int | str | None = None,
    site: str = "resid_pre",
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    align: Sequence[int | None] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> PatchingResult:
    """Patch each layer x position (sites resid_pre, attn_out, mlp_out) or layer x head (site
    "head", all positions at once) of the clean run into the corrupted run.

    `clean` / `corrupted`: texts, token ids or traces (a corrupted trace's edits are kept in
    every patched run). Prompts must have the same length unless `align` gives, for each
    corrupted position, the clean position to patch from. `batch_size` defaults to what the
    memory budget allows (at most 64 copies per forward).
    """
    if site not in SWEEP_SITES:
        raise InputError(f"unknown sweep site {site!r}; choose one of {', '.join(SWEEP_SITES)}")
    answer_id = token_id(ins, answer, "answer")
    foil_id = None if foil is None else token_id(ins, foil, "foil")
    clean_trace = _as_trace(ins, clean)
    corrupted_ids = corrupted.input_ids if hasattr(corrupted, "input_ids") else corrupted
    corrupted_edits = getattr(corrupted, "edits", ())
    corrupted_trace = ins.run(corrupted_ids, edits=corrupted_edits)
    pairs = _alignment(clean_trace, corrupted_trace, align)

    clean_metric = float(metric_of(clean_trace.logits[-1], answer_id, foil_id))
    corrupted_metric = float(metric_of(corrupted_trace.logits[-1], answer_id, foil_id))
    span = clean_metric - corrupted_metric
    if abs(span) <= 1e-6 * max(1.0, abs(clean_metric)):
        raise InputError(
            f"the clean and corrupted runs give the same metric ({clean_metric:.4f}): there is "
            "no difference for patching to restore; check answer=/foil= and the prompts"
        )

    layers = _pick("layer", layers, ins.n_layers)
    if site == "head":
        columns = list(range(ins.n_heads))
    else:
        columns = _pick("position", positions, corrupted_trace.seq_len)
    cells = [(layer, col) for layer in layers for col in columns]
    if site != "head":
        cells = [(layer, p) for layer, p in cells if pairs[p] is not None]
    if site == "head" and all(q is None for q in pairs):
        raise InputError("align= gives no position a clean counterpart")

    sources = {layer: edits.site_values(clean_trace, site, layer) for layer in layers}
    size = batch_size or _batch_size(ins, corrupted_trace.seq_len)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    run = _run_cells(
        ins, corrupted_trace, site, cells, sources, pairs, size, progress, answer_id, foil_id
    )
    metric = torch.full((len(layers), len(columns)), float("nan"))
    row, col = {layer: i for i, layer in enumerate(layers)}, {c: j for j, c in enumerate(columns)}
    for (layer, column), value in zip(cells, run.values, strict=True):
        metric[row[layer], col[column]] = value
    return PatchingResult(
        site=site,
        effect=(metric - corrupted_metric) / span,
        metric=metric,
        clean_metric=clean_metric,
        corrupted_metric=corrupted_metric,
        layers=layers,
        columns=columns,
        clean=clean_trace,
        corrupted=corrupted_trace,
        answer=answer_id,
        foil=foil_id,
        align=pairs,
        inspector=ins,
        route=run.route,
        route_note=run.route_note,
        n_unchanged=run.n_unchanged,
    )


def _pick(name: str, given: Sequence[int] | None, size: int) -> list[int]:
    if given is None:
        return list(range(size))
    picked = [check_index(name, i, size) for i in given]
    if not picked:
        raise OutOfRangeError(f"{name}s is empty; give at least one {name} or None for all")
    return picked


def _batch_size(ins: Inspector, n_tokens: int) -> int:
    per_copy = memory.estimate_patched_copy_bytes(
        n_tokens=n_tokens,
        d_model=ins.config.hidden_size,
        d_mlp=ins.d_mlp,
        n_heads=ins.n_heads,
        vocab=ins.vocab_size,
        element_size=next(ins.model.parameters()).element_size(),
    )
    # every copy passes through every device that holds a block: the tightest one decides
    budget = min(ins.budget(d) for d in dict.fromkeys([ins.device, *ins.layer_devices]))
    memory.check(
        per_copy,
        budget,
        f"one patched copy of {n_tokens} tokens",
        "Use shorter prompts, or a larger budget if the device really has the room.",
    )
    return max(1, min(MAX_BATCH, budget // per_copy))


@dataclass
class _Cells:
    """What running a sweep's cells found: each cell's metric and how they were run."""

    values: list[float]
    route: str
    route_note: str
    n_unchanged: int


def _first_changes(corrupted, site, cells, sources, pairs, aligned) -> list[int | None]:
    """For each cell, the first corrupted position its patch changes; None where it writes
    exactly the values already there (the patched run is then the corrupted run itself).
    Only decided on values stored as computed: a trace stored in a lower dtype says nothing."""
    if corrupted.dtype != corrupted.stream_dtype:
        first = aligned[0][0]
        return [first if site == "head" else column for _, column in cells]
    layers = sorted({layer for layer, _ in cells})
    here = {layer: edits.site_values(corrupted, site, layer) for layer in layers}
    ps, qs = [p for p, _ in aligned], [q for _, q in aligned]
    out: list[int | None] = []
    if site == "head":
        changed = {}
        for layer in layers:
            n_heads, head_dim = edits.site_shape(corrupted.parts, "head", layer)
            clean = sources[layer].view(-1, n_heads, head_dim)[qs]
            own = here[layer].view(-1, n_heads, head_dim)[ps].to(clean.device, clean.dtype)
            changed[layer] = ~(clean == own).all(-1)  # [n_aligned, n_heads]
        for layer, head in cells:
            where = changed[layer][:, head].nonzero()
            out.append(ps[int(where[0])] if len(where) else None)
        return out
    for layer, column in cells:
        clean = sources[layer][pairs[column]]
        same = torch.equal(clean, here[layer][column].to(clean.device, clean.dtype))
        out.append(None if same else column)
    return out


@torch.no_grad()
def _run_cells(ins, corrupted, site, cells, sources, pairs, size, progress, answer, foil) -> _Cells:
    """The metric of every cell's patched run, `size` copies per forward, each copy joining the
    batch at its own layer and run on the positions from the first one its patch changes (the
    corrupted run's keys and values standing in for the positions before), or on the whole
    prompt where a key/value cache would not be exact (`suffix.SuffixRunner.prepare` says why,
    and so does the first batch's unedited copy if it does not give back the corrupted run).
    A cell whose patch writes exactly the corrupted run's own values is that run: not rerun."""
    from tqdm.auto import tqdm

    aligned = [(p, q) for p, q in enumerate(pairs) if q is not None]
    starts = _first_changes(corrupted, site, cells, sources, pairs, aligned)
    unchanged = float(metric_of(corrupted.logits[-1], answer, foil))
    values = [unchanged] * len(cells)
    todo = [(s, layer, i) for i, ((layer, _), s) in enumerate(zip(cells, starts, strict=True))]
    todo = sorted(cell for cell in todo if cell[0] is not None)
    sweep = _Sweep(ins, corrupted, site, cells, sources, pairs, aligned, answer, foil, values)
    with (
        ins._eval_mode(),
        capture.model_lock(ins.parts.blocks[0]),
        tqdm(total=len(cells), desc=f"patching {site}", disable=not progress) as bar,
    ):
        bar.update(len(cells) - len(todo))
        runner, note = None, ""
        if todo:
            with edits.applied(ins.parts, corrupted.edits):
                prepared = suffix.SuffixRunner.prepare(ins, corrupted)
            runner, note = (None, prepared) if isinstance(prepared, str) else (prepared, "")
        if runner is not None:
            bar.set_description(f"patching {site} (prefix cache)")
            note = sweep.run(runner, _chunks(todo, size, ins.n_layers, corrupted.seq_len), bar)
            runner = None if note else runner
        if runner is None and todo:  # whole prompts: any cells batch together
            bar.set_description(f"patching {site} (whole prompt)")
            whole = sorted((0, layer, i) for _, layer, i in todo)
            sweep.run(None, _chunks(whole, size, ins.n_layers, corrupted.seq_len), bar)
    route = "prefix cache" if runner is not None else "whole prompt"
    return _Cells(values, route, note, len(cells) - len(todo))


@dataclass
class _Sweep:
    """The cells of one sweep and where their metrics go."""

    ins: Inspector
    corrupted: Trace
    site: str
    cells: list
    sources: dict
    pairs: tuple
    aligned: list
    answer: int
    foil: int | None
    values: list[float]

    def run(self, runner: suffix.SuffixRunner | None, chunks, bar) -> str:
        """Every chunk's metrics into `values`, from the prefix cache of `runner` or (None) on
        whole prompts. With a runner, the first batch carries an unedited copy too: if it does
        not give back the corrupted run, nothing is kept and the reason is returned."""
        check = runner is not None
        for start, chunk in chunks:
            try:
                logits = self._batch(runner, start, chunk, check)
            except suffix.REPLAY_ERRORS as err:
                if not check:
                    raise
                return suffix.SuffixRunner.failed(start, err)
            if check:
                problem = runner.mismatch(logits[0], start)
                if problem:
                    return problem
                logits, check = logits[1:], False
            metrics = metric_of(logits, self.answer, self.foil).tolist()
            for (_, _, i), value in zip(chunk, metrics, strict=True):
                self.values[i] = value
            bar.update(len(chunk))
        return ""

    def _batch(self, runner, start: int, chunk, control: bool) -> torch.Tensor:
        parts, corrupted = self.ins.parts, self.corrupted
        first = 1 if control else 0  # row 0: the unedited copy, from block 0
        by_layer: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for row, (_, layer, i) in enumerate(chunk, start=first):
            by_layer[layer].append((row, self.cells[i][1]))
        joins = [0] * first + [layer for _, layer, _ in chunk]
        own = corrupted.edits if runner is None else _from_position(corrupted.edits, start)
        if runner is not None:
            runner.calls(start)  # recorded (once per position) before any hook of ours is in
        with edits.applied(parts, own):
            handles = []
            try:
                for layer, rows in by_layer.items():
                    write = _cell_writer(
                        parts,
                        self.site,
                        layer,
                        rows,
                        self.sources[layer],
                        self.pairs,
                        self.aligned,
                        start,
                    )
                    handles.append(edits.hook_site(parts, self.site, layer, write))
                if runner is None:
                    return suffix.run_copies(self.ins, corrupted, joins)
                return runner.run(start, joins)
            finally:
                for handle in handles:
                    handle.remove()


#: extra positions a batch may compute for cells whose patch starts later than its own first
#: position, as a share of what its cells need: fewer, larger batches mean fewer block calls
MERGE_WASTE = 0.25


def _chunks(todo, size: int, n_layers: int, seq_len: int):
    """Batches of at most `size` cells (sorted by first changed position), each run from its
    first cell's position and listed in layer order (a copy joins the batch at its own layer).
    Cells of later positions join a batch while what it computes for nothing stays within
    MERGE_WASTE of what its cells need."""
    out: list[tuple[int, list]] = []
    chunk: list = []
    need = waste = 0
    for cell in todo:
        start, layer, _ = cell
        blocks = n_layers - layer
        if chunk:
            extra = blocks * (start - chunk[0][0])
            grown = blocks * (seq_len - start)
            if len(chunk) < size and waste + extra <= MERGE_WASTE * (need + grown):
                chunk.append(cell)
                need, waste = need + grown, waste + extra
                continue
            out.append((chunk[0][0], sorted(chunk, key=lambda c: c[1])))
        chunk, need, waste = [cell], blocks * (seq_len - start), 0
    if chunk:
        out.append((chunk[0][0], sorted(chunk, key=lambda c: c[1])))
    return out


def _from_position(planned, start: int) -> tuple[edits.Edit, ...]:
    moved = (edit.from_position(start) for edit in planned)
    return tuple(edit for edit in moved if edit is not None)


def _cell_writer(parts, site, layer, rows, source, pairs, aligned, start):
    """A rewrite for one layer's hook: each row of the batch gets its own cell's clean values,
    at positions counted from `start` (the first position the batch runs)."""
    row_idx = torch.tensor([r for r, _ in rows])
    if site == "head":
        n_heads, head_dim = edits.site_shape(parts, "head", layer)
        heads = torch.tensor([c for _, c in rows])
        kept = [(p, q) for p, q in aligned if p >= start]
        pos = torch.tensor([p - start for p, _ in kept])
        src = source.view(-1, n_heads, head_dim)[[q for _, q in kept]]  # [n_pos, heads, d]
        values = src[:, heads].transpose(0, 1)  # [n_rows, n_pos, d]

        def write_heads(x: torch.Tensor) -> torch.Tensor:
            out = x.clone(memory_format=torch.contiguous_format)
            view = out.view(*out.shape[:-1], n_heads, head_dim)
            r, p, h = (t.to(x.device) for t in (row_idx, pos, heads))
            view[r[:, None], p[None, :], h[:, None]] = values.to(x.device, x.dtype)
            return out

        return write_heads
    pos = torch.tensor([c - start for _, c in rows])
    values = source[[pairs[c] for _, c in rows]]  # [n_rows, width]

    def write_positions(x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        out[row_idx.to(x.device), pos.to(x.device)] = values.to(x.device, x.dtype)
        return out

    return write_positions
