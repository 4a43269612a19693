"""One run's activations: tensors stay next to the model, slices are taken on demand.

A Trace knows nothing about widgets or the browser. It always stores the residual stream
entering each block (and each block's call); a block's internals (sub-layer outputs, MLP
activations, attention input) are either stored too or recomputed on demand by rerunning that
one block (`Inspector(trace_internals=...)` decides; a few recent blocks are cached).
Attention patterns are rebuilt per layer when asked for (and a few recent layers are cached),
so a trace never holds layers × heads × seq² unless a caller asks for every layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from lmscope import capture, memory, placement
from lmscope.errors import MemoryBudgetError, UnsupportedArchitectureError, check_index
from lmscope.tokens import id_strings

if TYPE_CHECKING:
    from lmscope.architectures import ModelParts
    from lmscope.capture import Place, Recording
    from lmscope.edits import Edit

STREAMS = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")
#: the streams the views offer (token colors, norms): each block's two updates and its output
VIEW_STREAMS = ("attn_out", "mlp_out", "resid_post")


class Trace:
    """Everything one forward pass computed that lmscope's views show."""

    #: how many layers' [heads, seq, seq] patterns are kept after being computed
    attention_cache_layers = 4
    #: recomputed blocks' internals kept, in bytes as a share of the stored stream's (at
    #: least one block: a view reading several internals of one layer reruns it once)
    recompute_cache_share = 0.25

    def __init__(
        self,
        *,
        parts: ModelParts,
        recording: Recording,
        input_ids: torch.Tensor,
        logits: torch.Tensor,
        tokens: list[str],
        token_texts: list[str],
        word_groups: list[list[int]],
        prompt_length: int | None = None,
        generated_text: str = "",
        model_name: str = "",
        memory_budget: int | dict[torch.device, int] | None = None,
        tokenizer: Any = None,
        place: Place | None = None,
        edits: tuple[Edit, ...] = (),
        model: torch.nn.Module | None = None,
    ) -> None:
        self._parts = parts
        #: the model that ran (for calls only it makes: one position's, `position_run`)
        self._model = model
        self._rec = recording
        self.input_ids = input_ids.detach().cpu()
        self.logits = logits
        self.tokens = tokens
        self.token_texts = token_texts
        self.word_groups = word_groups
        self.prompt_length = len(tokens) if prompt_length is None else prompt_length
        self.generated_text = generated_text
        self.model_name = model_name
        self.memory_budget = memory_budget
        self.tokenizer = tokenizer
        #: the edits this run was made with (`lmscope.edits`); recomputations apply them too
        self.edits = tuple(edits)
        self.n_layers = len(parts.blocks)
        self.n_heads = parts.n_heads
        self._place = place
        # layer -> its internals rerun on demand (when the run did not keep them)
        self._recomputed: OrderedDict[int, Recording] = OrderedDict()
        # (layer, None) for every head of a layer, (layer, head) for one head
        self._patterns: OrderedDict[tuple[int, int | None], tuple[torch.Tensor, torch.Tensor]] = (
            OrderedDict()
        )

    # -- shape facts -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def seq_len(self) -> int:
        return len(self.tokens)

    @property
    def device(self) -> torch.device:
        return self.logits.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the trace stores (and returns) the stream in."""
        return self._rec.resid_pre[0].dtype

    @property
    def internals_kept(self) -> bool:
        """True when the run stored every block's internals, False when they are recomputed."""
        rec = self._rec
        return any(store[0] is not None for store in (rec.attn_out, rec.mlp_out, rec.attn_call))

    @property
    def d_model(self) -> int:
        return self._rec.resid_pre[0].shape[-1]

    @property
    def parts(self) -> ModelParts:
        """The model's resolved modules (final norm, unembedding), for analyses like the lens."""
        return self._parts

    def __repr__(self) -> str:
        edited = f"; {self.edits_text}" if self.edits else ""
        return (
            f"Trace({self.model_name or 'model'}: {self.seq_len} tokens, {self.n_layers} layers, "
            f"{self.n_heads} heads, d_model={self.d_model}, on {self.device}{edited})"
        )

    @property
    def edits_text(self) -> str:
        """The edits in one line for a view's header ('edited: Ablate(5, head=1)'), or ''."""
        return "edited: " + "; ".join(e.label for e in self.edits) if self.edits else ""

    def _layer(self, layer: int) -> int:
        return check_index("layer", layer, self.n_layers)

    # -- residual stream and sub-layer outputs ----------------------------------------
    @property
    def embeddings(self) -> torch.Tensor:
        """[seq, d_model] the input of block 0 (token + position embeddings, as the model adds
        them); for RWKV, whose block 0 normalises its input first, that norm's output."""
        return self._rec.resid_pre[0]

    def resid_pre(self, layer: int) -> torch.Tensor:
        return self._rec.resid_pre[self._layer(layer)]

    def attn_out(self, layer: int) -> torch.Tensor:
        """What block `layer`'s attention adds to the residual stream (in a block without
        attention, what its token mixer adds: a Mamba mixer, a short convolution...; zeros in
        a block without one, such as Nemotron-H's MLP-only blocks)."""
        self._parts.check_view("decomposition")
        if ("mixer", self._layer(layer)) in self._parts.missing:
            return torch.zeros_like(self._rec.resid_pre[layer])
        return self._internal("attn_out", layer)

    def resid_mid(self, layer: int) -> torch.Tensor:
        """resid_pre + attn_out. In a block with a parallel residual (GPT-NeoX, GPT-J, Falcon,
        Phi-1/2, Cohere: `parts.parallel_residual`) the MLP reads resid_pre, not this: there it
        is the stream with only the attention's contribution added, which no module reads."""
        layer = self._layer(layer)
        return self._rec.resid_pre[layer] + self.attn_out(layer)

    def mlp_out(self, layer: int) -> torch.Tensor:
        """What block `layer`'s MLP adds to the residual stream (zeros in a block without an
        MLP, such as Mamba's: it adds nothing)."""
        self._parts.check_view("decomposition")
        layer = self._layer(layer)
        if ("mlp", layer) in self._parts.missing:
            return torch.zeros_like(self._rec.resid_pre[layer])
        return self._internal("mlp_out", layer)

    def resid_post(self, layer: int) -> torch.Tensor:
        """The block's output (equal to resid_mid + mlp_out up to float rounding)."""
        layer = self._layer(layer)
        if layer + 1 < self.n_layers:
            return self._rec.resid_pre[layer + 1]
        return self._rec.final_resid

    def mlp_activations(self, layer: int) -> torch.Tensor:
        """[seq, d_mlp] the MLP hidden activations after the nonlinearity (input of its down projection)."""
        layer = self._layer(layer)
        for kind in ("mlp", "mlp_down"):
            if (kind, layer) in self._parts.missing:
                raise UnsupportedArchitectureError(self._parts.missing[kind, layer])
        return self._internal("mlp_hidden", layer)

    def routed_experts(self, layer: int) -> torch.Tensor:
        """[seq, k] the experts each token was routed to in block `layer`'s mixture of experts:
        the router's own choice (its index output, or the top-k of its logits)."""
        out = self._internal("router", self._check_router(layer))
        outputs = out if isinstance(out, tuple | list) else (out,)
        chosen = next(
            (t for t in outputs if isinstance(t, torch.Tensor) and not t.is_floating_point()),
            None,
        )
        if chosen is None:
            logits = outputs[0].reshape(-1, outputs[0].shape[-1])
            chosen = logits.topk(self._parts.experts_per_token, dim=-1).indices
        return chosen.reshape(self.seq_len, -1)

    def _check_router(self, layer: int) -> int:
        layer = self._layer(layer)
        if self._parts.routers[layer] is None:
            raise UnsupportedArchitectureError(
                f"layer {layer} has no mixture-of-experts router lmscope found"
            )
        return layer

    @property
    def released(self) -> bool:
        """True once `release()` dropped the recorded tensors."""
        return self._rec is None

    @property
    def stream_dtype(self) -> torch.dtype:
        """The dtype the model computed the residual stream in (what is stored may be lower)."""
        return self._rec.stream_dtype or self.dtype

    def block_call(self, layer: int) -> capture.BlockCall:
        """How block `layer` was called, minus its hidden input (`resid_pre(layer)`): what a
        block is replayed with (recomputation, sweeps)."""
        return self._rec.block_call[self._layer(layer)]

    def attention_call(self, layer: int) -> tuple[tuple, dict]:
        """(args, kwargs) block `layer`'s attention module was called with (its input hidden
        states, position embeddings, mask): what pattern recomputation reruns it on."""
        return self._internal("attn_call", layer)

    def _internal(self, name: str, layer: int):
        layer = self._layer(layer)
        stored = getattr(self._rec, name)[layer]
        if stored is not None:
            return stored
        if name == "attn_call" and self._light_attention_call(layer):
            # a pattern needs only the attention's call: run the block up to its attention
            call = self._replay(capture.block_attention_call, layer)
            if call is not None:
                return call
        return getattr(self._rerun(layer), name)[layer]

    def _light_attention_call(self, layer: int) -> bool:
        return (
            layer not in self._recomputed
            and self._parts.attentions[layer] is not None
            and capture.stops_cleanly(self._parts, layer)
        )

    def _replay(self, run: Callable[..., Any], layer: int) -> Any:
        """`run` (capture.rerun_block or block_attention_call) on block `layer`'s stored input
        and call, with the run's edits applied again."""
        with self._rerun_edits(layer):
            return run(
                self._parts,
                layer,
                self._rec.resid_pre[layer],
                self._rec.block_call[layer],
                place=self._place,
                dtype=self._rec.stream_dtype,
            )

    def _rerun(self, layer: int) -> Recording:
        """Block `layer`'s internals, recomputed from its stored input (cached for a few blocks)."""
        if layer in self._recomputed:
            self._recomputed.move_to_end(layer)
            return self._recomputed[layer]
        try:
            rec = self._replay(capture.rerun_block, layer)
        except torch.OutOfMemoryError:
            memory.empty_caches()
            raise MemoryBudgetError(
                f"out of memory recomputing block {layer} at {self.seq_len} tokens; free other "
                "tensors or look at a shorter text (the trace is still usable)."
            ) from None
        self._recomputed[layer] = rec
        limit = self.recompute_cache_share * memory.tensor_bytes(self._rec.resid_pre)
        while len(self._recomputed) > 1 and memory.tensor_bytes(self._recomputed) > limit:
            self._recomputed.popitem(last=False)
        return rec

    def _rerun_edits(self, layer: int) -> AbstractContextManager:
        """The context a recomputed block runs in: the run's own edits, so that the recomputed
        internals belong to the stored stream (a plain run has none)."""
        if not self.edits:
            return nullcontext()
        from lmscope.edits import applied

        # the stored input already carries this layer's resid_pre edits: not twice
        here = [e for e in self.edits if e.layer == layer and e.site != "resid_pre"]
        return applied(self._parts, here)

    def stored_bytes(self, *, logits: bool = False) -> int:
        """Bytes this trace holds (each storage once): the stream, block calls, kept or cached
        internals and cached patterns; the logits too when asked."""
        held = [self._rec, self._recomputed, self._patterns]
        return memory.tensor_bytes([*held, self.logits] if logits else held)

    def stream(self, name: str, layer: int) -> torch.Tensor:
        """Any of STREAMS by name, e.g. trace.stream("attn_out", 3)."""
        _check_stream(name)
        return getattr(self, name)(layer)

    def stream_stored(self, name: str, layer: int) -> bool:
        """Whether `stream(name, layer)` is at hand without rerunning block `layer`: the
        residual stream always is; a sub-layer output when the run kept its internals, when
        the block's recomputed ones are still cached, or when the block has no such part."""
        _check_stream(name)
        layer = self._layer(layer)
        internal = {"attn_out": "attn_out", "resid_mid": "attn_out", "mlp_out": "mlp_out"}
        if name not in internal:
            return True
        self._parts.check_view("decomposition")  # the same refusal as reading it
        kind = "mixer" if internal[name] == "attn_out" else "mlp"
        return (
            (kind, layer) in self._parts.missing
            or getattr(self._rec, internal[name])[layer] is not None
            or layer in self._recomputed
        )

    def token_norms(self, name: str, layer: int) -> torch.Tensor:
        """float64 `[seq]` norm of each token's vector in stream `name` at `layer`, where the
        trace keeps it. When internals are recomputed, a sub-layer output's norms are the ones
        recorded during the run (no block rerun); otherwise they come from the stored tensor."""
        _check_stream(name)
        layer = self._layer(layer)
        kind = {"attn_out": "mixer", "mlp_out": "mlp"}.get(name)
        if kind is not None:
            self._parts.check_view("decomposition")
        if (
            kind is not None
            and (kind, layer) not in self._parts.missing
            and getattr(self._rec, name)[layer] is None  # not kept: use the recorded norms
        ):
            recorded = getattr(self._rec, capture.NORMS[name])[layer]
            if recorded is not None:
                return recorded
        return capture.token_norms(self.stream(name, layer))

    def unembed(self, resid: torch.Tensor) -> torch.Tensor:
        """Logits from any residual-stream vector(s): the final norm once, then the unembedding
        (the modules themselves are called, so offloaded weights are brought in as they are)."""
        device = placement.execution_device(self._parts.final_norm)
        resid = resid.to(device=device, dtype=self._rec.stream_dtype or resid.dtype)
        with torch.no_grad():
            return self._parts.unembed_residual(resid)

    # -- attention ----------------------------------------------------------------------
    def _pattern(self, layer: int, head: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, scores) of every head of `layer`, or of one head: a layer already
        computed answers for its heads, otherwise only that head is recomputed."""
        layer = self._layer(layer)
        self._parts.check_attention(layer)
        if head is not None:
            head = check_index("head", head, self.n_heads)
            if (layer, None) in self._patterns:
                probs, scores = self._cached((layer, None))
                return probs[head], scores[head]
        key = (layer, head)
        if key in self._patterns:
            return self._cached(key)
        n_heads = self.n_heads if head is None else 1
        module = self._parts.attentions[layer]
        budget = self.memory_budget
        if isinstance(budget, dict):
            budget = budget.get(placement.execution_device(module))
        if budget is not None:
            need = memory.estimate_pattern_bytes(
                n_tokens=self.seq_len,
                n_heads=n_heads,
                element_size=(self._rec.stream_dtype or self.dtype).itemsize,
            )
            what = f"layer {layer}" if head is None else f"layer {layer} head {head}"
            memory.check(
                need,
                budget,
                f"the attention pattern of {what} at {self.seq_len} tokens",
                "Look at a shorter text.",
            )
        call = self.attention_call(layer)
        route = self._parts.pattern_route.get(layer)
        try:
            if head is None:
                result = capture.pattern(module, call, route=route)
            else:
                probs, scores = capture.pattern(module, call, [head], route=route)
                result = probs[0], scores[0]
        except torch.OutOfMemoryError:
            memory.empty_caches()
            raise MemoryBudgetError(
                f"{placement.execution_device(module)} ran out of memory recomputing the attention "
                f"pattern of layer {layer} at {self.seq_len} tokens; look at a shorter text or "
                "free other tensors (the trace is still usable)."
            ) from None
        if head is None:
            for stale in [k for k in self._patterns if k[0] == layer]:  # the layer answers them now
                del self._patterns[stale]
        self._patterns[key] = result
        # keep at most `attention_cache_layers` layers' worth of heads
        limit = self.attention_cache_layers * self.n_heads
        while sum(self.n_heads if h is None else 1 for _, h in self._patterns) > limit:
            self._patterns.popitem(last=False)
        return result

    def _cached(self, key: tuple[int, int | None]) -> tuple[torch.Tensor, torch.Tensor]:
        self._patterns.move_to_end(key)
        return self._patterns[key]

    def cached_head(self, layer: int, head: int) -> torch.Tensor | None:
        """One head's probabilities if they are cached (its layer's or its own), else None:
        nothing is computed."""
        layer, head = self._layer(layer), check_index("head", head, self.n_heads)
        if (layer, None) in self._patterns:
            return self._patterns[layer, None][0][head]
        cached = self._patterns.get((layer, head))
        return None if cached is None else cached[0]

    def attention(self, layer: int) -> torch.Tensor:
        """[heads, seq, seq] softmax probabilities (rows are queries, columns keys)."""
        return self._pattern(layer)[0]

    def attention_scores(self, layer: int) -> torch.Tensor:
        """[heads, seq, seq] pre-softmax scores; positions the model masks out are -inf."""
        return self._pattern(layer)[1]

    def head(self, layer: int, head: int) -> torch.Tensor:
        """[seq, seq] one head's probabilities (recomputes only that head when its layer is
        not cached: a ninth of the work on a 9-head model)."""
        return self._pattern(layer, head)[0]

    def head_scores(self, layer: int, head: int) -> torch.Tensor:
        """[seq, seq] one head's pre-softmax scores; masked positions are -inf."""
        return self._pattern(layer, head)[1]

    # -- analyses -------------------------------------------------------------------------
    def logit_lens(self, **options):
        """Top-k decoded predictions after every block ("post") or attention sub-layer ("mid").

        Takes `lmscope.lens.logit_lens`'s keyword options (top_k, stage, positions, targets,
        tokenizer, chunk_rows); targets may be ids or strings such as " Warsaw".
        """
        from lmscope.lens import logit_lens

        return logit_lens(self, **options)

    def attribution(self, target, *, position=-1, foil=None):
        """Direct logit attribution of `target` (an id, or a string such as " Warsaw" standing
        for its first token) at `position`: the share of every head, MLP, the embeddings and
        the rest, adding up to the logit (or to logit(target) - logit(foil)). See
        `lmscope.attribution.attribution`."""
        from lmscope.attribution import attribution

        return attribution(self, target, position=position, foil=foil)

    # -- text ---------------------------------------------------------------------------
    def token_strings(self, ids) -> list[str]:
        """Display strings of vocabulary ids (for predictions), '#id' without a tokenizer."""
        return id_strings(self.tokenizer, list(ids))

    @cached_property
    def text(self) -> str:
        return "".join(self.token_texts)

    def release(self) -> None:
        """Drop every tensor now (a trace is also freed when nothing refers to it)."""
        self._patterns.clear()
        self._recomputed.clear()
        self._rec = None  # type: ignore[assignment]
        self.logits = None  # type: ignore[assignment]


def _check_stream(name: str) -> None:
    if name not in STREAMS:
        raise ValueError(f"unknown stream {name!r}; choose one of {', '.join(STREAMS)}")
