"""One position of a run's blocks, each against its own layer's keys and values.

A trace that does not keep its blocks' internals gets them back by rerunning a block over the
whole prompt: at 8,192 tokens, attention over every position pair, ~1/30 of a forward per layer.
Attribution needs them at one position only, and attention is causal: block L's output at
position p depends on the other positions only through layer L's keys and values of positions
before p. Given those (the attention probe of that layer computes every position's anyway), the
block runs on position p alone against a key/value cache of them, as the model runs when it
generates: its attention reads the cache, its MLP sees one token. That costs O(seq) per layer.
The call the model makes to its blocks for that one position (mask, position embeddings, ids) is
recorded from the model itself, on a one-token forward after a cache of p positions
(`suffix.record_calls`): nothing about a family is assumed.

Every block run is checked: its output at p must be the stream the run stored there. Where it is
not (an MoE block whose routing depends on the other tokens, a layer reading another's cache),
or where the route does not apply (the model takes no cache, the run edited that layer, a block
without an attention module keeps a state rather than keys and values), the answer for that
layer is the reason in words, and the caller reruns the whole block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from lmscope import capture, placement, suffix

if TYPE_CHECKING:
    from lmscope.trace import Trace

#: a layer's keys and values, [1, kv_heads, seq, head_dim] each, as its attention computes them
KeysValues = tuple[torch.Tensor, torch.Tensor]


def tolerance(dtype: torch.dtype) -> float:
    """How far a recomputed row may be from the stored one in `dtype` (attribution's checks too)."""
    return 1e-4 if torch.finfo(dtype).bits >= 32 else 5e-2


class PositionRun:
    """Blocks of `trace`'s run on `position` alone, one layer at a time (see module)."""

    def __init__(self, trace: Trace, position: int) -> None:
        self.trace = trace
        self.position = position
        self.shared = suffix.calls_shared(trace)
        self.reason = _not_applicable(trace)
        self._calls: list[capture.BlockCall] | None = None

    @torch.no_grad()
    def sublayer_rows(
        self, keys_values: dict[int, KeysValues]
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor] | str]:
        """For each layer of `keys_values` (its keys and values of the whole prompt, as its
        attention computes them), (attention output, MLP output) at the position ([d_model]
        each, in the dtype the trace stores) from the block run there alone; or why not, in
        words (then the caller reruns the block). Blocks not called alike (per-layer masks)
        need every layer's keys and values in the first call, to record their calls with. Call
        under the model's lock: the blocks carry recording hooks while they run."""
        trace, position = self.trace, self.position
        reason = self.reason or (None if keys_values else "no layer's keys and values were given")
        if reason is None and self._calls is None:
            reason = self._record_calls(keys_values)
        if reason is not None:
            return dict.fromkeys(keys_values, reason)
        model = trace._model
        rows: dict[int, tuple[torch.Tensor, torch.Tensor] | str] = {}
        for layer, kv in keys_values.items():
            if edited(trace, layer):
                rows[layer] = edited(trace, layer)
                continue
            cache = _cache(model, position, {layer: kv}, trace.n_layers)
            call = suffix.with_cache(self._calls[layer], cache)
            try:
                rows[layer] = _run_block(trace, layer, position, call)
            except suffix.REPLAY_ERRORS as err:
                rows[layer] = (
                    f"block {layer} did not run on one position ({type(err).__name__}: {err})"
                )
        return rows

    def _record_calls(self, keys_values: dict[int, KeysValues]) -> str | None:
        trace, model = self.trace, self.trace._model
        if not self.shared and len(keys_values) < trace.n_layers:
            return (
                "the blocks are not called alike, so recording one position's calls needs "
                "every layer's keys and values"
            )
        ids = trace.input_ids[self.position : self.position + 1][None]
        ids = ids.to(placement.execution_device(model.get_input_embeddings()))
        cache = _cache(model, self.position, keys_values, trace.n_layers)
        try:
            self._calls = suffix.record_calls(
                model,
                trace.parts,
                suffix.cache_argument(model),
                ids,
                cache,
                shared=self.shared,
            )
        except suffix.REPLAY_ERRORS as err:
            self.reason = f"the model did not run one position after a key/value cache ({err})"
            return self.reason
        return None


def edited(trace: Trace, layer: int) -> str | None:
    """Why block `layer` is not run on one position when the run edited it (its edits would
    have to be applied to a batch of one position), else None."""
    labels = [e.label for e in trace.edits if e.layer == layer and e.site != "resid_pre"]
    return f"this run edited layer {layer} ({'; '.join(labels)})" if labels else None


def _not_applicable(trace: Trace) -> str | None:
    if trace._model is None:
        return "the trace has no model to record a one-position call with"
    if suffix.cache_argument(trace._model) is None:
        return "the model's forward takes no key/value cache"
    missing = [layer for layer, a in enumerate(trace.parts.attentions) if a is None]
    if missing:
        return (
            f"block {missing[0]} has no attention module lmscope found (a recurrent or "
            "state-space layer keeps a state, not per-position keys and values)"
        )
    return None


def _cache(
    model: torch.nn.Module, position: int, keys_values: dict[int, KeysValues], n_layers: int
):
    """A cache of positions 0..position-1: the layers of `keys_values` with their own keys and
    values, the others with a width-1 stand-in (only their length matters to the call a model
    makes, and to a block of another layer)."""
    given = next(iter(keys_values.values()))
    stand_in = given[0][:, :1, :position, :1]
    data = [
        (kv[0][..., :position, :], kv[1][..., :position, :]) if kv is not None else (stand_in,) * 2
        for kv in (keys_values.get(layer) for layer in range(n_layers))
    ]
    return DynamicCache(ddp_cache_data=data, config=model.config)


def _run_block(
    trace: Trace, layer: int, position: int, call: capture.BlockCall
) -> tuple[torch.Tensor, torch.Tensor] | str:
    parts = trace.parts
    block = parts.blocks[layer]
    device = placement.execution_device(block)
    hidden = trace.resid_pre(layer)[position : position + 1]
    hidden = hidden.to(device=device, dtype=trace.stream_dtype)[None]
    args, kwargs = call.with_hidden(hidden)
    rec = capture.Recording(trace.n_layers)
    with capture.entered(parts, layer), capture.recording(parts, layers=[layer], rec=rec):
        out = block(*args, **kwargs)
    out = out[0] if isinstance(out, tuple | list) else out
    got = out.reshape(-1).float()
    want = trace.resid_post(layer)[position].float().to(got.device)
    off = float((got - want).norm() / want.norm().clamp_min(1e-12))
    if not off <= tolerance(trace.dtype):
        return (
            f"block {layer} run on position {position} alone gives an output {off:.2g} "
            "(relative) away from the stream the run stored there"
        )
    sides = []
    for name, kind in (("attn_out", "mixer"), ("mlp_out", "mlp")):
        if (kind, layer) in parts.missing:
            sides.append(torch.zeros_like(want, dtype=trace.dtype))
            continue
        row = getattr(rec, name)[layer]
        if row is None:
            return f"block {layer}'s {name} was not seen when it ran on one position"
        sides.append(row.reshape(-1).to(trace.dtype))
    return sides[0], sides[1]
