"""One run's activations: tensors stay on the model's device, slices are taken on demand.

A Trace knows nothing about widgets or the browser. Attention patterns are rebuilt per layer
when asked for (and a few recent layers are cached), so a trace never holds
layers × heads × seq² unless a caller asks for every layer.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from lmscope import capture, memory
from lmscope.errors import check_index
from lmscope.tokens import id_strings

if TYPE_CHECKING:
    from lmscope.architectures import ModelParts
    from lmscope.capture import Recording

STREAMS = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")


class Trace:
    """Everything one forward pass computed that lmscope's views show."""

    #: how many layers' [heads, seq, seq] patterns are kept after being computed
    attention_cache_layers = 4

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
        memory_budget: int | None = None,
        tokenizer: Any = None,
    ) -> None:
        self._parts = parts
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
        self.n_layers = len(parts.blocks)
        self.n_heads = parts.n_heads
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
        return self._rec.resid_pre[0].dtype

    @property
    def d_model(self) -> int:
        return self._rec.resid_pre[0].shape[-1]

    @property
    def parts(self) -> ModelParts:
        """The model's resolved modules (final norm, unembedding), for analyses like the lens."""
        return self._parts

    def __repr__(self) -> str:
        return (
            f"Trace({self.model_name or 'model'}: {self.seq_len} tokens, {self.n_layers} layers, "
            f"{self.n_heads} heads, d_model={self.d_model}, on {self.device})"
        )

    def _layer(self, layer: int) -> int:
        return check_index("layer", layer, self.n_layers)

    # -- residual stream and sub-layer outputs ----------------------------------------
    @property
    def embeddings(self) -> torch.Tensor:
        """[seq, d_model] the input of block 0 (token + position embeddings, as the model adds them)."""
        return self._rec.resid_pre[0]

    def resid_pre(self, layer: int) -> torch.Tensor:
        return self._rec.resid_pre[self._layer(layer)]

    def attn_out(self, layer: int) -> torch.Tensor:
        """What block `layer`'s attention adds to the residual stream."""
        return self._rec.attn_out[self._layer(layer)]

    def resid_mid(self, layer: int) -> torch.Tensor:
        layer = self._layer(layer)
        return self._rec.resid_pre[layer] + self._rec.attn_out[layer]

    def mlp_out(self, layer: int) -> torch.Tensor:
        """What block `layer`'s MLP adds to the residual stream."""
        return self._rec.mlp_out[self._layer(layer)]

    def resid_post(self, layer: int) -> torch.Tensor:
        """The block's output (equal to resid_mid + mlp_out up to float rounding)."""
        layer = self._layer(layer)
        if layer + 1 < self.n_layers:
            return self._rec.resid_pre[layer + 1]
        return self._rec.final_resid

    def mlp_activations(self, layer: int) -> torch.Tensor:
        """[seq, d_mlp] the MLP hidden activations after the nonlinearity (input of its down projection)."""
        return self._rec.mlp_hidden[self._layer(layer)]

    def stream(self, name: str, layer: int) -> torch.Tensor:
        """Any of STREAMS by name, e.g. trace.stream("attn_out", 3)."""
        if name not in STREAMS:
            raise ValueError(f"unknown stream {name!r}; choose one of {', '.join(STREAMS)}")
        return getattr(self, name)(layer)

    def unembed(self, resid: torch.Tensor) -> torch.Tensor:
        """Logits from any residual-stream vector(s): the final norm once, then the unembedding."""
        with torch.no_grad():
            return self._parts.unembed_residual(resid)

    # -- attention ----------------------------------------------------------------------
    def _pattern(self, layer: int, head: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, scores) of every head of `layer`, or of one head: a layer already
        computed answers for its heads, otherwise only that head is recomputed."""
        layer = self._layer(layer)
        if head is not None:
            head = check_index("head", head, self.n_heads)
            if (layer, None) in self._patterns:
                probs, scores = self._cached((layer, None))
                return probs[head], scores[head]
        key = (layer, head)
        if key in self._patterns:
            return self._cached(key)
        n_heads = self.n_heads if head is None else 1
        if self.memory_budget is not None:
            need = memory.estimate_pattern_bytes(
                n_tokens=self.seq_len, n_heads=n_heads, element_size=self.dtype.itemsize
            )
            what = f"layer {layer}" if head is None else f"layer {layer} head {head}"
            memory.check(
                need,
                self.memory_budget,
                f"the attention pattern of {what} at {self.seq_len} tokens",
                "Look at a shorter text.",
            )
        module, call = self._parts.attentions[layer], self._rec.attn_call[layer]
        if head is None:
            result = capture.pattern(module, call)
            for stale in [k for k in self._patterns if k[0] == layer]:  # the layer answers them now
                del self._patterns[stale]
        else:
            probs, scores = capture.pattern(module, call, [head])
            result = probs[0], scores[0]
        self._patterns[key] = result
        # keep at most `attention_cache_layers` layers' worth of heads
        limit = self.attention_cache_layers * self.n_heads
        while sum(self.n_heads if h is None else 1 for _, h in self._patterns) > limit:
            self._patterns.popitem(last=False)
        return result

    def _cached(self, key: tuple[int, int | None]) -> tuple[torch.Tensor, torch.Tensor]:
        self._patterns.move_to_end(key)
        return self._patterns[key]

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
    def logit_lens(
        self, k=5, stage="post", positions=None, targets=None, *, tokenizer=None, chunk_rows=None
    ):
        """Top-k decoded predictions after every block ("post") or attention sub-layer ("mid").

        See `lmscope.lens.logit_lens`; targets may be ids or strings such as " Warsaw".
        """
        from lmscope.lens import logit_lens

        return logit_lens(
            self, k, stage, positions, targets, tokenizer=tokenizer, chunk_rows=chunk_rows
        )

    def attribution(self, target, *, position=-1, foil=None):
        """Direct logit attribution of `target` (an id or a string such as " Warsaw") at
        `position`: the share of every head, MLP, the embeddings and the rest, adding up to the
        logit (or to logit(target) - logit(foil)). See `lmscope.attribution.attribution`."""
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
        self._rec = None  # type: ignore[assignment]
        self.logits = None  # type: ignore[assignment]
