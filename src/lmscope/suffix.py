"""Run a prompt's blocks on its last positions only, the earlier ones read from a cached run.

Attention is causal: a change at position p leaves every earlier position as it was, at every
layer. A patched copy of a run therefore needs only positions p.. recomputed, attending to the
unpatched run's own keys and values for the positions before p. `SuffixRunner.prepare` takes
those keys and values from one forward with the model's own cache, and records the calls the
model makes to its blocks for a suffix by letting the model build them itself (mask, position
embeddings, position ids) for a cache of p positions: nothing about a family is assumed here.

Where that would not be exact, `prepare` returns the reason in words instead, and the caller
runs whole prompts: a block without an attention module lmscope found (a recurrent layer keeps
a state, not keys and values), a model whose forward takes no cache, a cache that keeps fewer
positions than the prompt (a sliding window shorter than it), or a replay that does not give
back the run's own last-position logits.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from lmscope import capture, placement

if TYPE_CHECKING:
    from lmscope.capture import BlockCall
    from lmscope.inspector import Inspector
    from lmscope.trace import Trace

#: how far the replayed last-position logits may be from the run's own (x their largest value)
CHECK_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}
LOW_PRECISION_TOLERANCE = 3e-2
#: what a replay that does not fit the model raises (out of memory is re-raised, not a reason)
REPLAY_ERRORS = (RuntimeError, TypeError, ValueError, AttributeError, IndexError, KeyError)


class _CallRecorded(Exception):
    """Raised in block 0 once its call is recorded, when every block is called alike."""


def cache_argument(model: torch.nn.Module) -> str | None:
    """The name under which the model's forward takes a key/value cache, or None."""
    params = inspect.signature(model.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)


class SuffixRunner:
    """Blocks `first`.. of copies of `trace`'s run, on positions `start`.. only (see module)."""

    def __init__(self, ins: Inspector, trace: Trace, argument: str, keys, values) -> None:
        self.ins = ins
        self.trace = trace
        self.argument = argument
        self.keys = keys  # per layer [1, kv_heads, seq, head_dim], the run's own
        self.values = values
        self._calls: dict[int, list[BlockCall]] = {}
        self._shared = calls_shared(trace)

    @classmethod
    @torch.no_grad()
    def prepare(cls, ins: Inspector, trace: Trace) -> SuffixRunner | str:
        """A runner for `trace` (whose edits must be installed by the caller), or the reason
        there is none, in words."""
        parts = ins.parts
        missing = [layer for layer, a in enumerate(parts.attentions) if a is None]
        if missing:
            return (
                f"block {missing[0]} has no attention module lmscope found (a recurrent or "
                "state-space layer keeps a state, not per-position keys and values)"
            )
        argument = cache_argument(ins.model)
        if argument is None:
            return "the model's forward takes no key/value cache"
        ids = trace.input_ids[None].to(ins.device)
        try:
            cache = DynamicCache(config=ins.model.config)
            ins.model(input_ids=ids, use_cache=True, **{argument: cache})
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, TypeError, ValueError, AttributeError, KeyError) as err:
            return f"the model did not run with a key/value cache ({type(err).__name__}: {err})"
        layers = getattr(cache, "layers", [])
        if len(layers) != ins.n_layers:
            return f"the model's cache has {len(layers)} layers, not one per block"
        keys, values = [], []
        for layer, entry in enumerate(layers):
            k, v = getattr(entry, "keys", None), getattr(entry, "values", None)
            kept = k.shape[-2] if isinstance(k, torch.Tensor) and k.dim() == 4 else 0
            if kept != trace.seq_len or not isinstance(v, torch.Tensor):
                return (
                    f"layer {layer}'s key/value cache keeps {kept} of the prompt's "
                    f"{trace.seq_len} positions (a sliding window shorter than the prompt)"
                )
            keys.append(k)
            values.append(v)
        return cls(ins, trace, argument, keys, values)

    def calls(self, start: int) -> list[BlockCall]:
        """Each block's call for positions start.. after a cache of `start` positions, as the
        model itself makes it. Recorded by a forward of the suffix: ask before installing
        hooks that edit a batch (they would see a batch of one)."""
        if start not in self._calls:
            self._calls[start] = self._record_calls(start)
        return self._calls[start]

    def _record_calls(self, start: int) -> list[BlockCall]:
        ins = self.ins
        cache = self._cache(start, [1] * ins.n_layers)
        ids = self.trace.input_ids[start:][None].to(ins.device)
        return record_calls(ins.model, ins.parts, self.argument, ids, cache, shared=self._shared)

    def _cache(self, start: int, copies: Sequence[int]) -> DynamicCache:
        """A cache of the run's first `start` positions, `copies[layer]` rows at each layer."""
        data = [
            (
                k[..., :start, :].expand(n, -1, -1, -1),
                v[..., :start, :].expand(n, -1, -1, -1),
            )
            for k, v, n in zip(self.keys, self.values, copies, strict=True)
        ]
        return DynamicCache(ddp_cache_data=data, config=self.ins.model.config)

    def run(self, start: int, joins: Sequence[int]) -> torch.Tensor:
        """`run_copies` of the run on positions start.. (see there)."""
        cache = self._cache(start, [max(1, n) for n in _rows_per_layer(joins, self.ins.n_layers)])
        calls = [with_cache(call, cache) for call in self.calls(start)]
        return run_copies(self.ins, self.trace, joins, start=start, calls=calls)

    def check(self, start: int) -> str | None:
        """None if an unedited copy from block 0 on positions start.. gives back the run's own
        last-position logits (to float rounding), else what went wrong, in words."""
        try:
            replayed = self.run(start, [0])[0]
        except REPLAY_ERRORS as err:
            return self.failed(start, err)
        return self.mismatch(replayed, start)

    def mismatch(self, replayed: torch.Tensor, start: int) -> str | None:
        """None if `replayed` (an unedited copy's last-position logits, from block 0 on
        positions start..) is the run's own to float rounding, else how far off, in words."""
        replayed = replayed.float()
        own = self.trace.logits[-1].float().to(replayed.device)
        dtype = self.trace.stream_dtype
        tolerance = CHECK_TOLERANCE.get(dtype, LOW_PRECISION_TOLERANCE) * own.abs().max()
        worst = float((replayed - own).abs().max())
        if not worst <= tolerance:
            return (
                f"replaying the blocks from position {start} with the cached keys and values "
                f"gives last-position logits {worst:.3g} away from the run's own"
            )
        return None

    @staticmethod
    def failed(start: int, err: Exception) -> str:
        if isinstance(err, torch.OutOfMemoryError):
            raise err
        return f"replaying the blocks from position {start} failed ({type(err).__name__}: {err})"


@torch.no_grad()
def run_copies(
    ins: Inspector,
    trace: Trace,
    joins: Sequence[int],
    *,
    start: int = 0,
    calls: Sequence[BlockCall] | None = None,
) -> torch.Tensor:
    """[len(joins), vocab] last-position logits of copies of `trace`'s run, row i joining at
    block `joins[i]` (ascending) from the run's own input of that block (blocks before it would
    recompute exactly that), on positions start.. with `calls` (default: the run's own block
    calls, whole prompt). Hooks the caller installed edit the copies: at block L the batch holds
    the rows that joined at L or before, in order."""
    parts = ins.parts
    calls = calls if calls is not None else [trace.block_call(i) for i in range(ins.n_layers)]
    rows = _rows_per_layer(joins, ins.n_layers)
    hidden = None
    for layer in range(joins[0], ins.n_layers):
        hidden = _join(parts, trace, layer, start, hidden, rows[layer])
        args, kwargs = calls[layer].with_hidden(hidden)
        with capture.entered(parts, layer):  # RWKV's block 0: the stream is past its pre_ln
            out = parts.blocks[layer](*args, **kwargs)
        hidden = out[0] if isinstance(out, tuple | list) else out
    return trace.unembed(hidden[:, -1])


def calls_shared(trace: Trace) -> bool:
    """Whether the run called every block with the very same arguments (one mask for all):
    then block 0's call stands for every block's."""
    first = trace.block_call(0)
    return all(_same_call(trace.block_call(layer), first) for layer in range(1, trace.n_layers))


@torch.no_grad()
def record_calls(
    model: torch.nn.Module, parts, argument: str, ids: torch.Tensor, cache, *, shared: bool
) -> list[BlockCall]:
    """Each block's call when `model` runs `ids` ([1, n]) after `cache` (passed as `argument`),
    as the model itself makes it: stopped at block 0 when the calls are `shared`. The cache
    object in them is a marker, for `with_cache` to fill in."""
    layers = [0] if shared else None

    def stop(*_):
        raise _CallRecorded

    with capture.recording(parts, internals=False, layers=layers) as rec:
        handle = parts.blocks[0].register_forward_pre_hook(stop) if shared else None
        try:
            model(input_ids=ids, use_cache=True, **{argument: cache})
        except _CallRecorded:
            pass
        finally:
            if handle is not None:
                handle.remove()
    calls = [rec.block_call[0]] * len(parts.blocks) if shared else list(rec.block_call)
    return [_without_cache(call, cache) for call in calls]


def _rows_per_layer(joins: Sequence[int], n_layers: int) -> list[int]:
    return [sum(1 for j in joins if j <= layer) for layer in range(n_layers)]


def _join(parts, trace: Trace, layer: int, start: int, hidden, n_rows: int) -> torch.Tensor:
    """The batch entering block `layer`: the rows so far, then new copies of the run's own
    input of that block (positions start..) up to `n_rows`."""
    device = placement.execution_device(parts.blocks[layer])
    so_far = 0 if hidden is None else hidden.shape[0]
    if hidden is not None:
        hidden = hidden.to(device)
    if n_rows == so_far:
        return hidden
    own = trace.resid_pre(layer)[start:].to(device=device, dtype=trace.stream_dtype)
    new = own[None].expand(n_rows - so_far, -1, -1)
    return new.contiguous() if hidden is None else torch.cat([hidden, new])


def _same_call(a: BlockCall, b: BlockCall) -> bool:
    if a.hidden_in_args != b.hidden_in_args or len(a.args) != len(b.args):
        return False
    if a.kwargs.keys() != b.kwargs.keys():
        return False
    pairs = [*zip(a.args, b.args, strict=True), *((a.kwargs[k], b.kwargs[k]) for k in a.kwargs)]
    return all(x is y or (_plain(x) and x == y) for x, y in pairs)


def _plain(value) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _without_cache(call: BlockCall, cache) -> BlockCall:
    """The call with the recording's cache object replaced by a marker, filled in per batch."""
    from lmscope.capture import BlockCall

    args = tuple(_CACHE if a is cache else a for a in call.args)
    kwargs = {k: _CACHE if v is cache else v for k, v in call.kwargs.items()}
    return BlockCall(args, kwargs, call.hidden_in_args)


def with_cache(call: BlockCall, cache) -> BlockCall:
    """The call with `cache` where `record_calls` left its marker."""
    from lmscope.capture import BlockCall

    args = tuple(cache if a is _CACHE else a for a in call.args)
    kwargs = {k: cache if v is _CACHE else v for k, v in call.kwargs.items()}
    return BlockCall(args, kwargs, call.hidden_in_args)


_CACHE = object()  # where a recorded block call had the cache
