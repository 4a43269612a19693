"""One table: where each model family keeps its blocks, attention, MLP, norms and unembedding.

Paths are attribute paths (dots) from the causal-LM module (for `blocks`, `final_norm`) or from
one block (the rest). `attn_out` / `mlp_out` name the module whose *output is added to the
residual stream*: usually the attention / MLP itself, but Gemma 2 normalises both outputs once
more before the add, so there it is the post-norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmscope import placement
from lmscope.errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class Adapter:
    blocks: str
    attention: str
    attn_out: str
    mlp_out: str
    mlp_down: str  # its *input* is the MLP's hidden activation after the nonlinearity
    final_norm: str
    # the attention's output projection: its *input* is every head's output side by side
    # ([..., n_heads * head_dim], head-major), where one head can be read or edited alone
    attn_proj: str = "self_attn.o_proj"
    parallel_residual: bool = (
        False  # attention and MLP both read the block input (GPT-NeoX, Phi-1/2)
    )


_LLAMA_LIKE = Adapter(
    blocks="model.layers",
    attention="self_attn",
    attn_out="self_attn",
    mlp_out="mlp",
    mlp_down="mlp.down_proj",
    final_norm="model.norm",
)

ADAPTERS: dict[str, Adapter] = {
    "gpt2": Adapter(
        blocks="transformer.h",
        attention="attn",
        attn_out="attn",
        mlp_out="mlp",
        mlp_down="mlp.c_proj",
        final_norm="transformer.ln_f",
        attn_proj="attn.c_proj",
    ),
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "phi3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": Adapter(
        blocks="model.layers",
        attention="self_attn",
        attn_out="post_attention_layernorm",
        mlp_out="post_feedforward_layernorm",
        mlp_down="mlp.down_proj",
        final_norm="model.norm",
    ),
    "gpt_neox": Adapter(
        blocks="gpt_neox.layers",
        attention="attention",
        attn_out="attention",
        mlp_out="mlp",
        mlp_down="mlp.dense_4h_to_h",
        final_norm="gpt_neox.final_layer_norm",
        attn_proj="attention.dense",
        parallel_residual=True,
    ),
}

CONTEXT_ATTRS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length")


def _get(root: nn.Module, path: str) -> nn.Module | None:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


@dataclass
class ModelParts:
    """The concrete modules of one loaded model, resolved through its adapter."""

    model_type: str
    adapter: Adapter
    blocks: list[nn.Module]
    attentions: list[nn.Module]
    attn_outs: list[nn.Module]
    mlp_outs: list[nn.Module]
    mlp_downs: list[nn.Module]
    attn_projs: list[nn.Module]
    final_norm: nn.Module
    unembed: nn.Module
    final_logit_softcap: float | None
    n_heads: int
    n_ctx: int | None
    parallel_residual: bool

    def attn_proj_weight(self, layer: int) -> torch.Tensor:
        """[d_model, n_heads * head_dim] of layer's output projection, whatever its module type
        (GPT-2's Conv1D stores the transpose); its columns for head h are h*head_dim onwards."""
        proj = self.attn_projs[layer]
        weight = placement.loaded_tensor(proj)  # an offloaded weight is read from its offload
        return weight.t() if type(proj).__name__ == "Conv1D" else weight

    def attn_proj_bias(self, layer: int) -> torch.Tensor | None:
        return placement.loaded_tensor(self.attn_projs[layer], "bias")

    def unembed_residual(self, resid: torch.Tensor) -> torch.Tensor:
        """Final norm, unembedding and soft-capping, exactly as the model applies them."""
        logits = self.unembed(self.final_norm(resid))
        if self.final_logit_softcap:
            logits = torch.tanh(logits / self.final_logit_softcap) * self.final_logit_softcap
        return logits


def resolve(model: nn.Module) -> ModelParts:
    """Find the parts lmscope hooks, or raise an error naming what is missing."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None) or type(model).__name__
    adapter = ADAPTERS.get(model_type)
    if adapter is None:
        known = ", ".join(sorted(ADAPTERS))
        raise UnsupportedArchitectureError(
            f"lmscope has no adapter for model type {model_type!r} ({type(model).__name__}). "
            f"Supported: {known}. Add an entry to lmscope.architectures.ADAPTERS naming its "
            "blocks, attention, MLP and final norm."
        )
    blocks = _get(model, adapter.blocks)
    missing = []
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        missing.append(f"blocks at '{adapter.blocks}'")
        blocks = []
    final_norm = _get(model, adapter.final_norm)
    if final_norm is None:
        missing.append(f"final norm at '{adapter.final_norm}'")
    unembed = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if unembed is None:
        missing.append("an output embedding (is this a *ForCausalLM model, not a base model?)")

    per_block: dict[str, list[nn.Module]] = {}
    for field in ("attention", "attn_out", "mlp_out", "mlp_down", "attn_proj"):
        path = getattr(adapter, field)
        found = [_get(block, path) for block in blocks]
        if any(module is None for module in found):
            missing.append(f"'{path}' inside each block")
        per_block[field] = found
    if missing:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} ({model_type}) does not have the layout lmscope expects: "
            f"missing {'; '.join(missing)}."
        )
    n_heads = getattr(config, "num_attention_heads", None) or config.n_head
    n_ctx = next((getattr(config, a) for a in CONTEXT_ATTRS if getattr(config, a, None)), None)
    parallel = adapter.parallel_residual and bool(getattr(config, "use_parallel_residual", True))
    return ModelParts(
        model_type=model_type,
        adapter=adapter,
        blocks=list(blocks),
        attentions=per_block["attention"],
        attn_outs=per_block["attn_out"],
        mlp_outs=per_block["mlp_out"],
        mlp_downs=per_block["mlp_down"],
        attn_projs=per_block["attn_proj"],
        final_norm=final_norm,
        unembed=unembed,
        final_logit_softcap=getattr(config, "final_logit_softcapping", None),
        n_heads=int(n_heads),
        n_ctx=int(n_ctx) if n_ctx else None,
        parallel_residual=parallel,
    )
