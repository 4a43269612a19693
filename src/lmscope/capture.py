"""Record one forward pass with hooks that exist only for its duration.

What is kept are references to tensors the forward computes anyway (no copies, unless the
trace asks for another device or dtype), so capturing costs little beyond the forward itself.
A recording keeps the residual stream entering each block and that block's call (the keyword
arguments rebuilding it exactly needs: position embeddings, mask); with `internals` it also
keeps each block's sub-layer outputs, MLP activations and attention call. Without them,
`rerun_block` recomputes one block's internals from its stored input. Attention patterns are
never kept: `pattern()` rebuilds one layer's pattern on demand by re-running that layer's
attention module through a probe (through accelerate's hooks when the model is dispatched).
"""

from __future__ import annotations

import copy
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface

from lmscope import placement
from lmscope.architectures import ModelParts
from lmscope.errors import UnsupportedArchitectureError

PROBE_IMPLEMENTATION = "lmscope_probe"
OWN_MASK_ROUTE = "module-own-mask"
# every dict of forward hooks a module keeps (the proof and the private copies read them all)
HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
)


class _ProbeDone(Exception):
    """Raised by the probe once it has what a head or query subset needs: the rest of the
    module (its output projection) expects every head and query and is not wanted anyway."""


def _select_heads(module, query, key, value, attention_mask, heads: list[int]):
    """The inputs of eager attention cut down to `heads`, each query head with its key head."""
    groups = query.shape[1] // key.shape[1]
    kv = [h // groups for h in heads]
    if hasattr(module, "num_key_value_groups"):  # keys are now one per query head
        module.num_key_value_groups = 1
    if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[1] > 1:
        attention_mask = attention_mask[:, heads]  # a per-head bias (ALiBi-style masks)
    return query[:, heads], key[:, kv], value[:, kv], attention_mask


def _probe_attention(module, query, key, value, attention_mask, **kwargs):
    """Run the module family's own eager attention and hand its inputs and weights to the caller.

    Registered once under its own name, it is reached only by the private module copies made in
    `pattern()`; every other model keeps dispatching to whatever it was configured with.
    """
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise UnsupportedArchitectureError(
            f"{type(module).__name__} has no eager_attention_forward to recompute patterns with"
        )
    heads, rows = module._lmscope_heads, module._lmscope_rows
    # gpt-oss's eager code reads a sink logit per head from the module: all heads, cut after
    cut_after = heads is not None and isinstance(getattr(module, "sinks", None), torch.Tensor)
    if heads is not None and not cut_after:
        query, key, value, attention_mask = _select_heads(
            module, query, key, value, attention_mask, heads
        )
    if rows is not None:  # only these queries (attribution reads one position)
        # the mask is cut to the rows already unless the module made its own (full) one
        if attention_mask is not None and attention_mask.shape[-2] == query.shape[-2] > 1:
            attention_mask = attention_mask[:, :, rows]
        query = query[:, :, rows]
    output, weights = eager(module, query, key, value, attention_mask, **kwargs)
    if cut_after:
        groups = query.shape[1] // key.shape[1]
        kv = [h // groups for h in heads]
        query, key, value = query[:, heads], key[:, kv], value[:, kv]
        weights, output = weights[:, heads], output[:, :, heads]
    module._lmscope_sink.update(
        query=query,
        key=key,
        value=value,
        weights=weights,
        output=output,  # [1, queries, heads, head_dim]: the output projection's input
        scaling=kwargs.get("scaling"),
        softcap=kwargs.get("softcap"),
    )
    if heads is not None or rows is not None:
        raise _ProbeDone
    return output, weights


AttentionInterface.register(PROBE_IMPLEMENTATION, _probe_attention)


def _first_tensor(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple | list) else value


#: what a recording keeps per layer besides the residual stream, when asked for internals
INTERNALS = ("attn_out", "mlp_out", "mlp_hidden", "attn_call")
#: sub-layer output -> the Recording field of its per-token norms
NORMS = {"attn_out": "attn_out_norm", "mlp_out": "mlp_out_norm"}


def token_norms(tensor: torch.Tensor) -> torch.Tensor:
    """float64 `[seq]` norm of each row of `tensor` ([seq, width]), where the tensor is."""
    return torch.linalg.vector_norm(tensor, dim=-1, dtype=torch.float64)


@dataclass
class BlockCall:
    """How a block was called, minus its hidden-state input (stored once, as `resid_pre`)."""

    args: tuple
    kwargs: dict
    hidden_in_args: bool

    def with_hidden(self, hidden: torch.Tensor) -> tuple[tuple, dict]:
        if self.hidden_in_args:
            return (hidden, *self.args), self.kwargs
        return self.args, {**self.kwargs, "hidden_states": hidden}


@dataclass
class Recording:
    """Per-layer tensors of one run, batch dimension dropped: each is [seq, width].

    An internal that was not kept is None (see `rerun_block`), and so is one the block does not
    have (no MLP, no attention, no single down projection: `ModelParts.missing` says which)."""

    n_layers: int
    resid_pre: list[torch.Tensor | None] = field(default_factory=list)
    attn_out: list[torch.Tensor | None] = field(default_factory=list)
    mlp_out: list[torch.Tensor | None] = field(default_factory=list)
    mlp_hidden: list[torch.Tensor | None] = field(default_factory=list)
    attn_call: list[tuple[tuple, dict] | None] = field(default_factory=list)
    block_call: list[BlockCall | None] = field(default_factory=list)
    router: list[Any] = field(default_factory=list)  # each MoE router's raw output
    #: float64 [seq] norms of each token's attention / MLP contribution as stored, taken as
    #: they pass by (`recording(norms=True)`): what a norm plot reads without a block rerun
    attn_out_norm: list[torch.Tensor | None] = field(default_factory=list)
    mlp_out_norm: list[torch.Tensor | None] = field(default_factory=list)
    final_resid: torch.Tensor | None = None
    #: the dtype the model computed the stream in (stored tensors may be in another)
    stream_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        for name in ("resid_pre", *INTERNALS, "block_call", "router", *NORMS.values()):
            setattr(self, name, [None] * self.n_layers)


Place = Callable[[int, torch.Tensor], torch.Tensor]


def _keep(_layer: int, tensor: torch.Tensor) -> torch.Tensor:
    return tensor


_model_locks: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """One lock per model: hooks see every forward of their module, so runs must not overlap."""
    with _locks_guard:
        lock = _model_locks.get(model)
        if lock is None:
            lock = _model_locks[model] = threading.RLock()
        return lock


@contextmanager
def recording(
    parts: ModelParts,
    *,
    internals: bool = True,
    norms: bool = False,
    place: Place | None = None,
    layers: list[int] | None = None,
    rec: Recording | None = None,
) -> Iterator[Recording]:
    """Hooks on `layers` (default every block) for the duration of the `with`; removed even if
    the forward raises.

    `internals=False` keeps only each block's input and call (and the last block's output).
    `norms=True` also records each sub-layer output's per-token norms (`token_norms` of the
    tensor as stored), with or without internals: small, and no rerun needed to plot them.
    `place(layer, tensor)` decides where and in which dtype a kept tensor is stored (default:
    the reference itself). Holds the model's lock throughout, so two threads (two dashboards on
    one inspector) never record each other's activations.
    """
    rec = rec if rec is not None else Recording(len(parts.blocks))
    place = place or _keep
    layers = list(range(len(parts.blocks))) if layers is None else layers
    handles = []

    def on_block_input(layer: int):
        def hook(_module, args, kwargs):
            hidden_in_args = bool(args)
            hidden = args[0] if hidden_in_args else kwargs["hidden_states"]
            rec.stream_dtype = hidden.dtype
            rec.resid_pre[layer] = place(layer, hidden[0])
            rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            rec.block_call[layer] = BlockCall(tuple(args[1:]), rest, hidden_in_args)

        return hook

    def on_stream_entry(_module, _args, output):
        # RWKV's block 0 normalises its input first: the stream starts at that norm's output
        rec.resid_pre[0] = place(0, _first_tensor(output)[0])

    def on_attention_call(layer: int):
        def hook(_module, args, kwargs):
            if place is _keep:
                rec.attn_call[layer] = (args, dict(kwargs))
            else:  # the attention's input is [1, seq, d_model]: store it like the stream
                args = tuple(place(layer, a[0])[None] if i == 0 else a for i, a in enumerate(args))
                kwargs = dict(kwargs)
                if "hidden_states" in kwargs:
                    kwargs["hidden_states"] = place(layer, kwargs["hidden_states"][0])[None]
                rec.attn_call[layer] = (args, kwargs)

        return hook

    scale = parts.residual_scale
    # a family that adds to a sub-layer's output in place (Falcon) would change a kept reference
    copy_first = parts.copy_contributions and place is _keep

    def on_output(
        store: list | None,
        norm_store: list | None,
        layer: int,
        pending: dict | None = None,
        count: int = 1,
    ):
        def hook(_module, _args, output):
            added = _first_tensor(output)
            # [1, seq, d]; some MoE blocks return their tokens flattened, [seq, d]
            added = added[0] if added.dim() == 3 else added
            if pending is not None:  # one of a pair whose outputs add up to the contribution
                pending.setdefault(layer, []).append(added)
                if len(pending[layer]) < count:
                    return
                first, second = pending.pop(layer)
                added = first + second
            if scale != 1.0:  # Granite scales what each sub-layer adds
                added = added * scale
            elif copy_first and store is not None:
                added = added.clone()
            stored = place(layer, added)
            if store is not None:
                store[layer] = stored
            if norm_store is not None:  # now: a family adding in place (Falcon) changes it later
                norm_store[layer] = token_norms(stored)

        return hook

    def on_router(layer: int):
        def hook(_module, _args, output):
            rec.router[layer] = output

        return hook

    def on_mlp_hidden(layer: int):
        def hook(_module, args):
            rec.mlp_hidden[layer] = place(layer, args[0][0])

        return hook

    def on_last_block_output(_module, _args, output):
        rec.final_resid = place(len(parts.blocks) - 1, _first_tensor(output)[0])

    lock = model_lock(parts.blocks[0])
    lock.acquire()
    try:
        for layer in layers:
            block = parts.blocks[layer]
            handles.append(block.register_forward_pre_hook(on_block_input(layer), with_kwargs=True))
            if layer == 0 and parts.stream_entry is not None:
                handles.append(parts.stream_entry.register_forward_hook(on_stream_entry))
            if internals or norms:
                for side, name in (
                    (parts.attn_outs[layer], "attn_out"),
                    (parts.mlp_outs[layer], "mlp_out"),
                ):
                    store = getattr(rec, name) if internals else None
                    norm_store = getattr(rec, NORMS[name]) if norms else None
                    if isinstance(side, tuple):
                        pending: dict = {}
                        hook = on_output(store, norm_store, layer, pending, len(side))
                        handles += [module.register_forward_hook(hook) for module in side]
                    elif side is not None:
                        handles.append(
                            side.register_forward_hook(on_output(store, norm_store, layer))
                        )
            if not internals:
                continue
            if parts.attentions[layer] is not None:
                handles.append(
                    parts.attentions[layer].register_forward_pre_hook(
                        on_attention_call(layer), with_kwargs=True
                    )
                )
            if parts.mlp_downs[layer] is not None:
                handles.append(
                    parts.mlp_downs[layer].register_forward_pre_hook(on_mlp_hidden(layer))
                )
            if parts.routers[layer] is not None:
                handles.append(parts.routers[layer].register_forward_hook(on_router(layer)))
        if len(parts.blocks) - 1 in layers:
            handles.append(parts.blocks[-1].register_forward_hook(on_last_block_output))
        yield rec
    finally:
        for handle in handles:
            handle.remove()
        lock.release()


@contextmanager
def entered(parts: ModelParts, layer: int) -> Iterator[None]:
    """Block `layer` is called on a stream lmscope recorded: for block 0 of a family whose
    stream starts at a module inside it (`parts.stream_entry`, RWKV's pre_ln) that module
    passes its input through, since the recorded stream is already its output. Runs before
    every other hook on it (an edit of resid_pre 0 rewrites what it passes on)."""
    entry = parts.stream_entry if layer == 0 else None
    if entry is None:
        yield
        return
    handle = entry.register_forward_hook(lambda _m, args, _out: args[0], prepend=True)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def rerun_block(
    parts: ModelParts,
    layer: int,
    hidden: torch.Tensor,
    call: BlockCall,
    *,
    place: Place | None = None,
    dtype: torch.dtype | None = None,
) -> Recording:
    """Run block `layer` alone on its recorded input `hidden` ([seq, d_model]) and call, with
    the recording hooks on that block only: its internals, exactly as the full run computed
    them from the same input. The block is called as the model calls it, so accelerate's hooks
    bring offloaded weights in and run it on its own device."""
    block = parts.blocks[layer]
    device = placement.execution_device(block)
    hidden = hidden.to(device=device, dtype=dtype or hidden.dtype)[None]
    args, kwargs = call.with_hidden(hidden)
    rec = Recording(len(parts.blocks))
    with entered(parts, layer), recording(parts, place=place, layers=[layer], rec=rec):
        block(*args, **kwargs)
    # the stream itself is the caller's; keep only what was recomputed
    rec.resid_pre[layer] = rec.block_call[layer] = rec.final_resid = None
    return rec


class _AttentionReached(Exception):
    """Raised at block `layer`'s attention to stop `block_attention_call` there."""


def stops_cleanly(parts: ModelParts, layer: int) -> bool:
    """Whether block `layer` can be stopped at its attention: no accelerate hook anywhere in it
    (stopping one mid-call would leave its offloaded weights loaded)."""
    return not any(hasattr(m, "_hf_hook") for m in parts.blocks[layer].modules())


@torch.no_grad()
def block_attention_call(
    parts: ModelParts,
    layer: int,
    hidden: torch.Tensor,
    call: BlockCall,
    *,
    place: Place | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[tuple, dict] | None:
    """The call block `layer` makes to its attention module on its recorded input, recorded by
    the same hook as `rerun_block`'s, with the block stopped right there: what runs is what
    comes before the attention (its input norm), not the attention and MLP (at 8,192 tokens
    the whole block is ~1/30 of a forward). Only for blocks that `stops_cleanly`."""
    block = parts.blocks[layer]
    device = placement.execution_device(block)
    hidden = hidden.to(device=device, dtype=dtype or hidden.dtype)[None]
    args, kwargs = call.with_hidden(hidden)
    rec = Recording(len(parts.blocks))

    def stop(_module, _args, _kwargs):
        raise _AttentionReached

    with recording(parts, place=place, layers=[layer], rec=rec):
        # registered after the recording's own pre-hook, so that one runs first
        handle = parts.attentions[layer].register_forward_pre_hook(stop, with_kwargs=True)
        try:
            block(*args, **kwargs)
        except _AttentionReached:
            pass
        finally:
            handle.remove()
    return rec.attn_call[layer]  # None: the block never reached it (the caller reruns it)


def _window(module: nn.Module) -> int | None:
    """The sliding window of this layer's attention, or None for full attention: some families
    keep the config's window on every layer and say per layer whether it applies."""
    window = getattr(module, "sliding_window", None)
    if getattr(module, "is_sliding", None) is False:
        return None
    config, index = getattr(module, "config", None), getattr(module, "layer_idx", None)
    types = getattr(config, "layer_types", None)
    if isinstance(types, list | tuple) and isinstance(index, int) and index < len(types):
        if "sliding" not in str(types[index]) and "local" not in str(types[index]):
            return None
        window = window or getattr(config, "sliding_window", None)
    return window


def _eager_mask(
    mask: torch.Tensor | None,
    module: nn.Module,
    query_len: int,
    dtype,
    device,
    rows: list[int] | None = None,
):
    """The additive [1, 1, q, k] mask eager attention expects, from what the model passed; only
    the query `rows` when given (one row of an 8k prompt's mask, not all 8k x 8k of it)."""
    if mask is not None and rows is not None and mask.dim() == 4 and mask.shape[-2] > 1:
        mask = mask[:, :, rows]
    if mask is not None and mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(
            ~mask, torch.finfo(dtype).min
        )
    if mask is not None:
        return mask.to(dtype)
    # SDPA with a plain causal mask passes None and relies on is_causal
    queries = torch.arange(query_len, device=device) if rows is None else torch.tensor(rows)
    queries = queries.to(device)[:, None]
    cols = torch.arange(query_len, device=device)[None, :]
    blocked = cols > queries
    window = _window(module)
    if window:
        blocked |= queries - cols >= window
    return torch.zeros(1, 1, len(queries), query_len, dtype=dtype, device=device).masked_fill(
        blocked, torch.finfo(dtype).min
    )


def _private_copy(module: nn.Module, implementation: str = PROBE_IMPLEMENTATION) -> nn.Module:
    """A copy sharing the weights but with its own config and no hooks, dispatching to the probe
    (or, for attention outside the interface, to its own eager code).

    accelerate replaces a dispatched module's `forward` by an instance attribute bound to the
    original (which would dispatch through the original's config): the copy drops it and is
    called through `_call_as_dispatched` instead."""
    clone = copy.copy(module)
    for name in HOOK_DICTS:
        if hasattr(clone, name):
            setattr(clone, name, OrderedDict())
    for name in ("forward", "_old_forward", "_hf_hook"):
        clone.__dict__.pop(name, None)
    if hasattr(module, "config"):  # Bloom's attention has none: it always returns its weights
        config = copy.copy(module.config)
        # set the raw field: the property setter would also rewrite shared sub-configs
        config._attn_implementation_internal = implementation
        clone.config = config
    clone._lmscope_sink = {}
    clone._lmscope_heads = None
    clone._lmscope_rows = None
    return clone


def _call_as_dispatched(module: nn.Module, clone: nn.Module, args: tuple, kwargs: dict) -> Any:
    """Call the copy the way accelerate calls `module`: its hook moves the inputs to the
    module's execution device and brings offloaded weights in (they live in dicts the copy
    shares), and puts them back afterwards even when the probe stops early. Returns the copy's
    output (None when a subset stopped early)."""
    hook = getattr(module, "_hf_hook", None)
    output = None
    if hook is None:
        with suppress(_ProbeDone):  # a subset stops before the output projection
            output = clone(*args, **kwargs)
        return output
    args, kwargs = hook.pre_forward(clone, *args, **kwargs)
    try:
        with suppress(_ProbeDone):
            output = clone(*args, **kwargs)
    finally:
        hook.post_forward(clone, output)
    return output


def on_module(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The call with its hidden states where and in the dtype the module computes (a trace may
    store them on another device or in a lower dtype)."""
    weights = next((p for p in module.parameters() if p.is_floating_point()), None)
    dtype = weights.dtype if weights is not None else None
    device = placement.execution_device(module)
    kwargs = dict(kwargs)
    if args:
        args = (args[0].to(device=device, dtype=dtype), *args[1:])
    else:
        kwargs["hidden_states"] = kwargs["hidden_states"].to(device=device, dtype=dtype)
    return args, kwargs


@torch.no_grad()
def probe(
    module: nn.Module,
    call: tuple[tuple, dict],
    heads: list[int] | None = None,
    rows: list[int] | None = None,
) -> dict[str, Any]:
    """Re-run one recorded call of an attention module through its family's eager attention
    and return what that saw: `query` (only `rows`, if given), `key`, `value`, `weights`
    ([1, heads, queries, seq]), `output` ([1, queries, heads, head_dim]), `scaling`, `softcap`
    and the additive `attention_mask` ([1, 1 or heads, seq or queries, seq]). Only `heads` and
    `rows` are computed when given; the output projection then does not run.
    """
    if not hasattr(module, "config"):
        raise UnsupportedArchitectureError(
            f"{type(module).__name__} has no config, so it does not dispatch through "
            "transformers' attention interface"
        )
    args, kwargs = _prepared_call(module, call, rows=rows)
    clone = _private_copy(module)
    clone._lmscope_heads = heads
    clone._lmscope_rows = rows
    module_output = _call_as_dispatched(module, clone, args, kwargs)
    sink = clone._lmscope_sink
    if "weights" not in sink:
        raise UnsupportedArchitectureError(
            f"{type(module).__name__} did not dispatch through transformers' attention interface"
        )
    mask = kwargs["attention_mask"]
    sink["attention_mask"] = mask["causal"] if isinstance(mask, dict) else mask
    sink["module_output"] = module_output
    return sink


def _prepared_call(
    module: nn.Module,
    call: tuple[tuple, dict],
    *,
    own_masks: bool = False,
    rows: list[int] | None = None,
) -> tuple[tuple, dict]:
    """The recorded call on the module's device and dtype, with lmscope's additive eager mask
    (of the query `rows` only, when fewer than all) and no cache. `own_masks` keeps a boolean
    mask the model passed as it is: a module outside the interface reads its own mask
    convention (MPT's True means "masked")."""
    args, kwargs = on_module(module, *call)
    hidden = args[0] if args else kwargs["hidden_states"]
    seq = hidden.shape[-2]
    rows = rows if rows is not None and len(rows) < seq else None
    mask = kwargs.get("attention_mask")
    if own_masks and isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
        pass
    elif isinstance(mask, dict):  # ZAYA passes {"causal": 4-D mask, "conv": padding mask}
        mask = dict(mask)
        mask["causal"] = _eager_mask(
            mask.get("causal"), module, seq, hidden.dtype, hidden.device, rows
        )
        kwargs["attention_mask"] = mask
    else:
        kwargs["attention_mask"] = _eager_mask(mask, module, seq, hidden.dtype, hidden.device, rows)
    for cache_key in ("cache", "past_key_values", "past_key_value", "layer_past"):
        if cache_key in kwargs:
            kwargs[cache_key] = None
    kwargs["use_cache"] = False
    return args, kwargs


def _via_module(
    module: nn.Module, call: tuple[tuple, dict], heads: list[int] | None, own_masks: bool = False
):
    """(probs, log-probs, module output) from the module's own eager code with
    output_attentions, for attention outside the interface (Bloom, Falcon, GPT-Neo, MPT...).
    Its pre-softmax scores are not returned by the module: the log-probabilities stand in for
    them (equal up to a per-row constant, which the softmax cancels)."""
    args, kwargs = _prepared_call(module, call, own_masks=own_masks)
    kwargs["output_attentions"] = True
    clone = _private_copy(module, "eager")
    output = _call_as_dispatched(module, clone, args, kwargs)
    weights = None
    if isinstance(output, tuple | list):
        weights = next(
            (t for t in output[1:] if isinstance(t, torch.Tensor) and t.dim() == 4), None
        )
    if weights is None:
        raise UnsupportedArchitectureError(
            f"{type(module).__name__} returns no attention weights from its eager code"
        )
    probs = weights[0] if heads is None else weights[0, heads]
    return probs, probs.log(), output


@torch.no_grad()
def recompute(
    module: nn.Module,
    call: tuple[tuple, dict],
    heads: list[int] | None = None,
    route: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, Any, str]:
    """(probs, scores, the copy's output, route): through the attention interface
    ("interface") or the module's own eager code ("module"; "module-own-mask" with the
    boolean mask the model passed, in the module's own convention); None tries the first
    two in that order."""
    if route == "module":
        return (*_via_module(module, call, heads), "module")
    if route == OWN_MASK_ROUTE:
        return (*_via_module(module, call, heads, own_masks=True), OWN_MASK_ROUTE)
    try:
        return (*_via_interface(module, call, heads), "interface")
    except UnsupportedArchitectureError as first:
        if route == "interface":
            raise
        try:
            return (*_via_module(module, call, heads), "module")
        except Exception:  # the first reason is the one worth reading
            raise first from None


@torch.no_grad()
def pattern(
    module: nn.Module,
    call: tuple[tuple, dict],
    heads: list[int] | None = None,
    *,
    route: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, pre-softmax scores), each [heads, seq, seq], for one recorded call:
    every head, or only `heads` (a by-head view of 30 layers then costs 30 heads, not 270).

    Scores at masked positions are -inf. Probabilities are exactly what the family's eager
    attention computes (rotary, grouped-query, sliding windows and soft-capping included).
    """
    probs, scores, _, _ = recompute(module, call, heads, route)
    return probs, scores


def _via_interface(module: nn.Module, call: tuple[tuple, dict], heads: list[int] | None):
    sink = probe(module, call, heads)
    probs = sink["weights"][0]
    query, key = sink["query"][0], sink["key"][0]
    if key.shape[0] != query.shape[0]:  # grouped-query attention shares each key head
        key = key.repeat_interleave(query.shape[0] // key.shape[0], dim=0)
    scaling = sink["scaling"] if sink["scaling"] is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if sink["softcap"]:
        scores = torch.tanh(scores / sink["softcap"]) * sink["softcap"]
    mask = sink["attention_mask"][0, :, :, : scores.shape[-1]].to(scores.device)
    if heads is not None and mask.shape[0] > 1:
        mask = mask[heads]
    scores = scores.masked_fill(mask <= torch.finfo(mask.dtype).min / 2, float("-inf"))
    return probs, scores, sink["module_output"]
