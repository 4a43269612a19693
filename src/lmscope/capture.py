"""Record one forward pass with hooks that exist only for its duration.

What is kept are references to tensors the forward computes anyway (no copies), so capturing
costs little beyond the forward itself. Attention patterns are *not* kept: `pattern()` rebuilds
one layer's pattern on demand by re-running that layer's attention module through a probe.
"""

from __future__ import annotations

import copy
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface

from lmscope.architectures import ModelParts
from lmscope.errors import UnsupportedArchitectureError

PROBE_IMPLEMENTATION = "lmscope_probe"
_HOOK_DICTS = (
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
    if heads is not None:
        query, key, value, attention_mask = _select_heads(
            module, query, key, value, attention_mask, heads
        )
    if rows is not None:  # only these queries (attribution reads one position)
        query = query[:, :, rows]
        if attention_mask is not None and attention_mask.shape[-2] > 1:
            attention_mask = attention_mask[:, :, rows]
    output, weights = eager(module, query, key, value, attention_mask, **kwargs)
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


@dataclass
class Recording:
    """Per-layer tensors of one run, batch dimension dropped: each is [seq, width]."""

    n_layers: int
    resid_pre: list[torch.Tensor | None] = field(default_factory=list)
    attn_out: list[torch.Tensor | None] = field(default_factory=list)
    mlp_out: list[torch.Tensor | None] = field(default_factory=list)
    mlp_hidden: list[torch.Tensor | None] = field(default_factory=list)
    attn_call: list[tuple[tuple, dict] | None] = field(default_factory=list)
    final_resid: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("resid_pre", "attn_out", "mlp_out", "mlp_hidden", "attn_call"):
            setattr(self, name, [None] * self.n_layers)


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
def recording(parts: ModelParts) -> Iterator[Recording]:
    """Hooks on every block for the duration of the `with`; removed even if the forward raises.

    Holds the model's lock throughout, so two threads (two dashboards on one inspector) never
    record each other's activations.
    """
    rec = Recording(len(parts.blocks))
    handles = []

    def on_block_input(layer: int):
        def hook(_module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            rec.resid_pre[layer] = hidden[0]

        return hook

    def on_attention_call(layer: int):
        def hook(_module, args, kwargs):
            rec.attn_call[layer] = (args, dict(kwargs))

        return hook

    def on_output(store: list, layer: int):
        def hook(_module, _args, output):
            store[layer] = _first_tensor(output)[0]

        return hook

    def on_mlp_hidden(layer: int):
        def hook(_module, args):
            rec.mlp_hidden[layer] = args[0][0]

        return hook

    def on_last_block_output(_module, _args, output):
        rec.final_resid = _first_tensor(output)[0]

    lock = model_lock(parts.blocks[0])
    lock.acquire()
    try:
        for layer, block in enumerate(parts.blocks):
            handles.append(block.register_forward_pre_hook(on_block_input(layer), with_kwargs=True))
            handles.append(
                parts.attentions[layer].register_forward_pre_hook(
                    on_attention_call(layer), with_kwargs=True
                )
            )
            handles.append(
                parts.attn_outs[layer].register_forward_hook(on_output(rec.attn_out, layer))
            )
            handles.append(
                parts.mlp_outs[layer].register_forward_hook(on_output(rec.mlp_out, layer))
            )
            handles.append(parts.mlp_downs[layer].register_forward_pre_hook(on_mlp_hidden(layer)))
        handles.append(parts.blocks[-1].register_forward_hook(on_last_block_output))
        yield rec
    finally:
        for handle in handles:
            handle.remove()
        lock.release()


def _eager_mask(mask: torch.Tensor | None, module: nn.Module, query_len: int, dtype, device):
    """The additive [1, 1, q, k] mask eager attention expects, from what the model passed."""
    if mask is not None and mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(
            ~mask, torch.finfo(dtype).min
        )
    if mask is not None:
        return mask.to(dtype)
    # SDPA with a plain causal mask passes None and relies on is_causal
    rows = torch.arange(query_len, device=device)[:, None]
    cols = torch.arange(query_len, device=device)[None, :]
    blocked = cols > rows
    window = getattr(module, "sliding_window", None)
    if window:
        blocked |= rows - cols >= window
    return torch.zeros(1, 1, query_len, query_len, dtype=dtype, device=device).masked_fill(
        blocked, torch.finfo(dtype).min
    )


def _private_copy(module: nn.Module) -> nn.Module:
    """A copy sharing the weights but with its own config and no hooks, dispatching to the probe."""
    clone = copy.copy(module)
    for name in _HOOK_DICTS:
        if hasattr(clone, name):
            setattr(clone, name, OrderedDict())
    config = copy.copy(module.config)
    # set the raw field: the property setter would also rewrite shared sub-configs
    config._attn_implementation_internal = PROBE_IMPLEMENTATION
    clone.config = config
    clone._lmscope_sink = {}
    clone._lmscope_heads = None
    clone._lmscope_rows = None
    return clone


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
    and the additive `attention_mask` ([1, 1 or heads, seq, seq]). Only `heads` and `rows`
    are computed when given; the output projection then does not run.
    """
    if not hasattr(module, "config"):
        raise UnsupportedArchitectureError(
            f"{type(module).__name__} has no config; cannot recompute its attention pattern"
        )
    args, kwargs = call
    hidden = args[0] if args else kwargs["hidden_states"]
    seq = hidden.shape[-2]
    kwargs = dict(kwargs)
    kwargs["attention_mask"] = _eager_mask(
        kwargs.get("attention_mask"), module, seq, hidden.dtype, hidden.device
    )
    for cache_key in ("past_key_values", "past_key_value", "layer_past"):
        if cache_key in kwargs:
            kwargs[cache_key] = None
    kwargs["use_cache"] = False
    clone = _private_copy(module)
    clone._lmscope_heads = heads
    clone._lmscope_rows = rows
    with suppress(_ProbeDone):  # a subset stops before the output projection
        clone(*args, **kwargs)
    sink = clone._lmscope_sink
    if "weights" not in sink:
        raise UnsupportedArchitectureError(
            f"{type(module).__name__} did not dispatch through transformers' attention interface"
        )
    sink["attention_mask"] = kwargs["attention_mask"]
    return sink


@torch.no_grad()
def pattern(
    module: nn.Module, call: tuple[tuple, dict], heads: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, pre-softmax scores), each [heads, seq, seq], for one recorded call:
    every head, or only `heads` (a by-head view of 30 layers then costs 30 heads, not 270).

    Scores at masked positions are -inf. Probabilities are exactly what the family's eager
    attention computes (rotary, grouped-query, sliding windows and soft-capping included).
    """
    sink = probe(module, call, heads)
    probs = sink["weights"][0]
    query, key = sink["query"][0], sink["key"][0]
    if key.shape[0] != query.shape[0]:  # grouped-query attention shares each key head
        key = key.repeat_interleave(query.shape[0] // key.shape[0], dim=0)
    scaling = sink["scaling"] if sink["scaling"] is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if sink["softcap"]:
        scores = torch.tanh(scores / sink["softcap"]) * sink["softcap"]
    mask = sink["attention_mask"][0, :, :, : scores.shape[-1]]
    if heads is not None and mask.shape[0] > 1:
        mask = mask[heads]
    scores = scores.masked_fill(mask <= torch.finfo(mask.dtype).min / 2, float("-inf"))
    return probs, scores
