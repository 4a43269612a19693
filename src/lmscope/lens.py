"""Logit lens: what the model would predict if it stopped after each block (or each attention).

Every chosen residual-stream row goes through the model's own final norm, unembedding and final
soft-cap once (`Trace.unembed`), exactly as the model treats its last hidden state. Rows are
decoded in chunks: a chunk's logits are reduced to top-k, log-normalizer and target ranks before
the next chunk is built, so `[layers, positions, vocab]` never exists at once.

`resid_post(L-1)` is the last block's output before the final norm, so the last `post` row is the
model's own prediction (Hugging Face's last `hidden_states` entry is already normed; decoding it
through the norm again is the classic lens bug this module avoids by construction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import torch

from lmscope import tokens as _tokens
from lmscope.errors import (
    InputError,
    OutOfRangeError,
    check_choice,
    check_count,
    check_index,
)
from lmscope.options import keyword_options

if TYPE_CHECKING:
    from lmscope.trace import Trace

STAGES = ("post", "mid")

#: bytes of float32 logits one chunk may hold (a chunk also needs a few same-sized temporaries)
CHUNK_BYTES = 64 * 2**20


@dataclass
class LensResult:
    """Top-k decodings of one stage at every layer for the chosen positions (all on the CPU).

    `token_ids[l, p]` and `probs[l, p]` are the top_k most likely next tokens if the model stopped
    after block `l` (stage "post") or after block `l`'s attention (stage "mid"), read at position
    `positions[p]`. With targets, `target_ranks[l, p, t]` is how many tokens score strictly higher
    than target `t` (0 = top) and `target_probs[l, p, t]` its probability.
    """

    stage: str
    positions: list[int]
    token_ids: torch.Tensor  # [n_layers, n_positions, k] int64
    probs: torch.Tensor  # [n_layers, n_positions, k] float32
    targets: list[int] = field(default_factory=list)
    target_ranks: torch.Tensor | None = None  # [n_layers, n_positions, n_targets] int64
    target_probs: torch.Tensor | None = None  # [n_layers, n_positions, n_targets] float32
    tokenizer: object | None = field(default=None, repr=False, compare=False)

    @property
    def top_k(self) -> int:
        return self.token_ids.shape[-1]

    @property
    def n_layers(self) -> int:
        return self.token_ids.shape[0]

    @cached_property
    def token_strings(self) -> dict[int, str]:
        """Display string of every id that appears in the result (a small table, not the vocab)."""
        ids = torch.cat([self.token_ids.flatten(), torch.tensor(self.targets, dtype=torch.long)])
        unique = torch.unique(ids[ids >= 0]).tolist()  # -1: a column `LensColumns` has not filled
        return dict(zip(unique, token_strings(self.tokenizer, unique), strict=True))

    @property
    def tokens(self) -> list[list[list[str]]]:
        """`token_ids` as display strings, nested [layer][position][rank] ("" for a column a
        `LensColumns` has not decoded yet)."""
        table = self.token_strings
        return [
            [[table.get(i, "") for i in row] for row in layer] for layer in self.token_ids.tolist()
        ]

    @property
    def target_tokens(self) -> list[str]:
        return [self.token_strings[t] for t in self.targets]


def token_strings(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each id decoded on its own, whitespace made visible; '#id' when there is no tokenizer."""
    return _tokens.id_strings(tokenizer, ids)


def resolve_targets(targets, tokenizer, vocab_size: int) -> list[int]:
    """Token ids from ids or strings (a string stands for the first token it encodes to)."""
    if targets is None:
        return []
    if isinstance(targets, (str, int)) or (isinstance(targets, torch.Tensor) and targets.ndim == 0):
        targets = [targets]
    out = []
    for target in targets:
        if isinstance(target, str):
            if tokenizer is None:
                raise InputError(
                    f"target {target!r} is text but no tokenizer is available: pass a token id, "
                    "or tokenizer=inspector.tokenizer"
                )
            encoded = tokenizer(target, add_special_tokens=False)["input_ids"]
            if not encoded:
                raise InputError(f"target {target!r} encodes to no tokens")
            out.append(int(encoded[0]))
        else:
            index = check_index("target token id", target, vocab_size)
            if index != int(target):  # a negative id is a mistake, not "count from the end"
                raise OutOfRangeError(
                    f"target token id {target} is negative (valid: 0..{vocab_size - 1})"
                )
            out.append(index)
    return out


def _positions(positions, seq_len: int) -> list[int]:
    if positions is None:
        return list(range(seq_len))
    if isinstance(positions, int) or (isinstance(positions, torch.Tensor) and positions.ndim == 0):
        positions = [positions]
    out = [check_index("position", p, seq_len) for p in positions]
    if not out:
        raise OutOfRangeError(f"positions is empty; choose some of 0..{seq_len - 1}")
    return out


def _state(trace: Trace, stage: str, layer: int, index: torch.Tensor) -> torch.Tensor:
    # a dispatched model's layers (and so their stored streams) may sit on different devices
    if stage == "post":
        resid = trace.resid_post(layer)
        return resid[index.to(resid.device)]
    # resid_mid for the chosen rows only (the same sum Trace.resid_mid does, without the full seq)
    resid = trace.resid_pre(layer)
    rows = index.to(resid.device)
    return resid[rows] + trace.attn_out(layer)[rows]


def _chunk_logits(trace: Trace, stage: str, group, index: torch.Tensor) -> torch.Tensor:
    """Logits of one chunk's rows. The last block's output decoded through the final norm is by
    definition the model's own output, so those rows are read from `trace.logits`: bitwise the
    model's prediction (a matmul over a different number of rows can round differently).
    `_chunks` never mixes those rows with decoded ones, so no chunk of logits is concatenated."""
    if stage == "post" and group[0][0] == trace.n_layers - 1:
        return torch.cat([trace.logits[index[a:b]] for _, a, b in group])
    states = [_state(trace, stage, layer, index[a:b]) for layer, a, b in group]
    if len(states) == 1:
        return trace.unembed(states[0])
    return trace.unembed(torch.cat([state.to(states[0].device) for state in states]))


def _chunks(n_layers: int, n_pos: int, rows: int, split_before: int | None = None):
    """(layer, start, stop) position slices, grouped so each group holds at most `rows` rows;
    layer `split_before` starts a group of its own (its rows are read, not decoded)."""
    group: list[tuple[int, int, int]] = []
    size = 0
    for layer in range(n_layers):
        if layer == split_before and group:
            yield group
            group, size = [], 0
        start = 0
        while start < n_pos:
            stop = min(n_pos, start + rows - size)
            group.append((layer, start, stop))
            size += stop - start
            start = stop
            if size == rows:
                yield group
                group, size = [], 0
    if group:
        yield group


@keyword_options
def logit_lens(
    trace: Trace,
    *,
    top_k: int = 5,
    stage: str = "post",
    positions: int | Sequence[int] | None = None,
    targets: int | str | Sequence[int | str] | None = None,
    tokenizer=None,
    chunk_rows: int | None = None,
) -> LensResult:
    """Top-k next-token predictions decoded from every layer's residual stream.

    stage: "post" decodes the output of each block, "mid" the stream after each block's
    attention (before its MLP). positions: one index, a list, or None for every position.
    targets: token ids, or strings (each stands for its first token; needs `tokenizer` or a
    `trace.tokenizer`) whose rank and probability are reported at every layer and position.
    """
    check_choice("stage", stage, STAGES)
    tokenizer = tokenizer if tokenizer is not None else getattr(trace, "tokenizer", None)
    vocab = trace.logits.shape[-1]
    k = check_count("top_k", top_k, high=vocab)
    pos = _positions(positions, trace.seq_len)
    target_ids = resolve_targets(targets, tokenizer, vocab)
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_BYTES // (vocab * 4))
    chunk_rows = check_count("chunk_rows", chunk_rows)

    n_layers, n_pos = trace.n_layers, len(pos)
    device = trace.device
    index = torch.tensor(pos, device=device)
    top_ids = torch.empty(n_layers * n_pos, k, dtype=torch.long, device=device)
    top_p = torch.empty(n_layers * n_pos, k, dtype=torch.float32, device=device)
    n_t = len(target_ids)
    ranks = torch.empty(n_layers * n_pos, n_t, dtype=torch.long, device=device)
    t_p = torch.empty(n_layers * n_pos, n_t, dtype=torch.float32, device=device)
    t_index = torch.tensor(target_ids, dtype=torch.long, device=device)

    row = 0
    with torch.no_grad():
        split = n_layers - 1 if stage == "post" else None
        for group in _chunks(n_layers, n_pos, chunk_rows, split_before=split):
            logits = _chunk_logits(trace, stage, group, index).float()
            values, ids = logits.topk(k, dim=-1)
            end = row + logits.shape[0]
            top_ids[row:end] = ids
            if n_t:
                t_logits = logits.index_select(1, t_index)  # [rows, n_t]
                for t in range(n_t):
                    ranks[row:end, t] = (logits > t_logits[:, t : t + 1]).sum(-1)
            # softmax's own order of operations (shift by the max, exp, divide by the sum), in
            # place: exp(x - logsumexp) would lose ~1e-5 relative precision on logits near 30
            top = values[:, :1]
            total = logits.sub_(top).exp_().sum(-1, keepdim=True)
            top_p[row:end] = (values - top).exp_() / total
            if n_t:
                t_p[row:end] = (t_logits - top).exp_() / total
            row = end

    shape = (n_layers, n_pos)
    return LensResult(
        stage=stage,
        positions=pos,
        token_ids=top_ids.view(*shape, k).cpu(),
        probs=top_p.view(*shape, k).cpu(),
        targets=target_ids,
        target_ranks=ranks.view(*shape, n_t).cpu() if n_t else None,
        target_probs=t_p.view(*shape, n_t).cpu() if n_t else None,
        tokenizer=tokenizer,
    )


@keyword_options
def distribution(trace: Trace, *, layer: int, position: int, stage: str = "post") -> torch.Tensor:
    """[vocab] float32 probabilities decoded from one layer at one position (on the CPU)."""
    check_choice("stage", stage, STAGES)
    layer = check_index("layer", layer, trace.n_layers)
    position = check_index("position", position, trace.seq_len)
    index = torch.tensor([position], device=trace.device)
    with torch.no_grad():
        logits = trace.unembed(_state(trace, stage, layer, index))[0].float()
    return torch.softmax(logits, dim=-1).cpu()


class LensColumns:
    """One stage of the lens over every position of a trace, decoded a column range at a time.

    `result` is a `LensResult` whose arrays span every position (`positions` is 0..seq-1);
    `done[p]` says whether column `p` is decoded (an undecoded column holds id -1 and
    probability 0). `fill(start, stop)` decodes the missing columns of that range with
    `logit_lens(positions=...)` and writes them in place, so a filled column holds exactly what
    `logit_lens` gives for it. At 8,192 tokens every column at once is minutes of CPU (30 layers
    x 8,192 rows through a 49,152-word unembedding); the columns on screen are a fraction of a
    second.
    """

    def __init__(
        self,
        trace: Trace,
        *,
        stage: str = "post",
        top_k: int = 5,
        targets: int | str | Sequence[int | str] | None = None,
        tokenizer=None,
    ) -> None:
        check_choice("stage", stage, STAGES)
        tokenizer = tokenizer if tokenizer is not None else getattr(trace, "tokenizer", None)
        vocab = trace.logits.shape[-1]
        self.trace, self.stage = trace, stage
        self.top_k = check_count("top_k", top_k, high=vocab)
        self.targets = resolve_targets(targets, tokenizer, vocab)
        n_layers, seq, k, n_t = trace.n_layers, trace.seq_len, self.top_k, len(self.targets)
        self.done = torch.zeros(seq, dtype=torch.bool)
        self.result = LensResult(
            stage=stage,
            positions=list(range(seq)),
            token_ids=torch.full((n_layers, seq, k), -1, dtype=torch.long),
            probs=torch.zeros(n_layers, seq, k),
            targets=self.targets,
            target_ranks=torch.full((n_layers, seq, n_t), -1, dtype=torch.long) if n_t else None,
            target_probs=torch.zeros(n_layers, seq, n_t) if n_t else None,
            tokenizer=tokenizer,
        )

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def missing(self, start: int, stop: int) -> list[tuple[int, int]]:
        """The runs [a, b) of undecoded columns within [start, stop)."""
        seq = self.trace.seq_len
        start, stop = max(0, start), min(seq, stop)
        todo = (~self.done[start:stop]).nonzero().squeeze(1) + start
        runs: list[tuple[int, int]] = []
        for p in todo.tolist():
            if runs and runs[-1][1] == p:
                runs[-1] = (runs[-1][0], p + 1)
            else:
                runs.append((p, p + 1))
        return runs

    def fill(self, start: int = 0, stop: int | None = None) -> int:
        """Decode the undecoded columns of [start, stop) (default: all); returns how many."""
        stop = self.trace.seq_len if stop is None else stop
        runs = self.missing(start, stop)
        positions = [p for a, b in runs for p in range(a, b)]
        if not positions:
            return 0
        part = logit_lens(
            self.trace,
            top_k=self.top_k,
            stage=self.stage,
            positions=positions,
            targets=self.targets,
            tokenizer=self.result.tokenizer,
        )
        index = torch.tensor(positions)
        r = self.result
        r.token_ids[:, index] = part.token_ids
        r.probs[:, index] = part.probs
        if self.targets:
            r.target_ranks[:, index] = part.target_ranks
            r.target_probs[:, index] = part.target_probs
        self.done[index] = True
        r.__dict__.pop("token_strings", None)  # the cached string table grows with the columns
        return len(positions)
