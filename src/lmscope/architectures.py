"""Where a causal LM keeps its blocks, attention, MLP, norms and unembedding.

Found from what transformers declares rather than a table per family: the decoder
(`get_decoder()`), its pipeline plan (`base_model_pp_plan`: the block list and the final norm),
its tensor-parallel plan (`base_model_tp_plan`: each block's row-wise output projections), the
classes it records outputs of (`_can_record_outputs`: decoder layer, attention, router) and
`get_output_embeddings()`. Names are only a fallback for families that declare none of these.

This module finds *candidates*; which module's output is really added to the residual stream
(the attention itself, a post-norm, or its output projection when the module adds the residual
inside, as Bloom's does) is decided numerically by `lmscope.proof` on one short forward.
A user with a custom model passes a `Layout` of attribute paths instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from lmscope import placement
from lmscope.errors import UnsupportedArchitectureError

CONTEXT_ATTRS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length")
_LAYER_COUNT_ATTRS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_HEAD_COUNT_ATTRS = ("num_attention_heads", "n_head", "num_heads", "n_heads")
# name fallbacks, for families that declare neither a recorder nor a tensor-parallel plan
_ATTENTION_NAMES = ("self_attn", "self_attention", "attn", "attention", "multi_head_attention")
_MLP_NAMES = ("mlp", "feed_forward", "ffn", "block_sparse_moe", "moe", "mlp_block")
_MLP_CLASS = re.compile(r"MLP|Moe|MoE|FeedForward|FFN|Experts|SparseMoe", re.IGNORECASE)
_MIXER_CLASS = re.compile(r"Mamba|Mixer|Attention|Conv|Recurrent|LSTM|Rwkv|DeltaNet", re.I)
_ATTN_PROJ_NAMES = ("o_proj", "out_proj", "dense", "c_proj", "wo", "o", "proj")
_MLP_DOWN_NAMES = ("down_proj", "c_proj", "dense_4h_to_h", "fc_out", "fc2", "w2", "wo", "proj")


@dataclass(frozen=True)
class Layout:
    """Attribute paths, for a model lmscope cannot map by itself: `blocks` and `final_norm`
    from the causal-LM module, the rest from one block. Leave a field None to let lmscope find
    it; `mlp=""` (or `attention=""`) says the blocks have none.

    `attn_out` / `mlp_out` name the module whose *output is added to the residual stream*
    when it is not the attention / MLP itself (e.g. a post-norm); `attn_proj` is the
    attention's output projection (its input is every head side by side) and `mlp_down` the
    MLP's down projection (its input is the hidden activation)."""

    blocks: str | None = None
    attention: str | None = None
    attn_out: str | None = None
    mlp: str | None = None
    mlp_out: str | None = None
    mlp_down: str | None = None
    attn_proj: str | None = None
    final_norm: str | None = None


# Real quirks only: what no declaration says. Keyed by config.model_type.
OVERRIDES: dict[str, Layout] = {
    # its time mix is recorded under the name "attention" but keeps no softmax pattern
    "rwkv": Layout(attention=""),
}


def _get(root: nn.Module, path: str) -> nn.Module | None:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, nn.Module) else None


# the final logit soft-cap's name in each family's config (Gemma 2, RecurrentGemma, xLSTM)
_SOFTCAP_ATTRS = ("final_logit_softcapping", "logits_soft_cap", "output_logit_soft_cap")


def _first_float(config, names) -> float | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int | float) and not isinstance(value, bool) and value:
            return float(value)
    return None


def _first_attr(config, names) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer, by its type (LayerNorm, GroupNorm or a family's *Norm)."""
    return _is_norm(module)


def _is_norm(module: nn.Module) -> bool:
    if isinstance(module, nn.Embedding):  # Inkling's "NormedEmbedding" is an embedding
        return False
    return (
        isinstance(module, nn.LayerNorm | nn.GroupNorm) or "norm" in type(module).__name__.lower()
    )


def _out_features(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return module.out_features
    if type(module).__name__ == "Conv1D":  # GPT-2 family: weight is [in, out]
        return module.weight.shape[1]
    return None


@dataclass
class ModelParts:
    """The concrete modules of one loaded model, and what the load-time proof established.

    Per-layer lists have one entry per block; None where a block has no such part (a Mamba
    block has no attention, an MoE block no single down projection): `missing[(kind, layer)]`
    then says why in words."""

    model_type: str
    blocks: list[nn.Module]
    attentions: list[nn.Module | None]
    #: the module whose output is the token mixer's contribution (attention or other), or a
    #: pair whose outputs add up to it (Falcon-H1's attention and Mamba mixer)
    attn_outs: list[nn.Module | tuple[nn.Module, nn.Module] | None]
    #: likewise for the MLP (GraniteMoeHybrid: its experts plus its shared MLP)
    mlp_outs: list[nn.Module | tuple[nn.Module, nn.Module] | None]
    mlp_downs: list[nn.Module | None]
    attn_projs: list[nn.Module | None]
    final_norm: nn.Module
    unembed: nn.Module
    final_logit_softcap: float | None
    n_heads: int
    n_ctx: int | None
    parallel_residual: bool
    blocks_path: str = ""  # attribute path of the block list from the causal-LM module
    mixers: list[str] = field(default_factory=list)  # class name of each block's token mixer
    residual_scale: float = 1.0  # Granite: what a sub-layer adds is scaled before the add
    logit_scale: float = 1.0  # Cohere's logit_scale, Granite's 1/logits_scaling
    routers: list[nn.Module | None] = field(default_factory=list)  # MoE router per block
    experts_per_token: int = 1
    #: the family later changes a sub-layer's output tensor in place, so it is copied when kept
    copy_contributions: bool = False
    #: what the model's own hidden_states list: block "inputs" (embeddings first, the usual
    #: convention) or block "outputs" (Mamba); the proof checks which
    hidden_states_are: str = "inputs"
    missing: dict[tuple[str, int], str] = field(default_factory=dict)
    #: views the load-time proof refused, with the identity that failed
    refused: dict[str, str] = field(default_factory=dict)
    #: layers whose recomputed pattern did not reproduce the model's attention output
    attention_refused: dict[int, str] = field(default_factory=dict)
    #: how patterns are recomputed: "interface" (transformers' eager attention via a probe)
    #: or "module" (the module's own eager path with output_attentions)
    pattern_route: dict[int, str] = field(default_factory=dict)
    #: why a layer's pattern rows do not sum to one (gpt-oss's learned attention sinks)
    attention_notes: dict[int, str] = field(default_factory=dict)
    #: a module block 0 applies to its input before anything else (RWKV's pre_ln): the stream
    #: lmscope decomposes starts at its output, so resid_pre(0) and the embeddings are that
    #: output (the proof checks block 0's output is it plus what block 0 adds)
    stream_entry: nn.Module | None = None
    #: why a side is the sum of two modules' outputs (Gemma 4's per-layer-input branch)
    contribution_notes: dict[tuple[str, int], str] = field(default_factory=dict)
    proven: bool = False

    # -- attention -------------------------------------------------------------------------
    @property
    def attention_layers(self) -> list[int]:
        return [i for i, a in enumerate(self.attentions) if a is not None]

    def check_attention(self, layer: int) -> None:
        """Raise, in words, when `layer` has no attention lmscope can show."""
        if self.attentions[layer] is None:
            have = self.attention_layers
            listed = ", ".join(map(str, have)) if have else "none"
            why = self.missing.get(("attention", layer), f"layer {layer} has no attention")
            raise UnsupportedArchitectureError(f"{why}; layers with attention: {listed}")
        if layer in self.attention_refused:
            raise UnsupportedArchitectureError(self.attention_refused[layer])

    def check_view(self, view: str) -> None:
        if view in self.refused:
            raise UnsupportedArchitectureError(self.refused[view])

    def attn_proj_weight(self, layer: int) -> torch.Tensor:
        """[d_model, n_heads * head_dim] of layer's output projection, whatever its module type
        (GPT-2's Conv1D stores the transpose); its columns for head h are h*head_dim onwards."""
        self.check_attention(layer)
        proj = self.attn_projs[layer]
        if proj is None:
            raise UnsupportedArchitectureError(self.missing[("attn_proj", layer)])
        weight = placement.loaded_tensor(proj)  # an offloaded weight is read from its offload
        return weight.t() if type(proj).__name__ == "Conv1D" else weight

    def attn_proj_bias(self, layer: int) -> torch.Tensor | None:
        self.attn_proj_weight(layer)  # the same refusals
        return placement.loaded_tensor(self.attn_projs[layer], "bias")

    # -- unembedding -----------------------------------------------------------------------
    def unembed_residual(self, resid: torch.Tensor) -> torch.Tensor:
        """Final norm, unembedding, logit scale and soft-capping, exactly as the model applies them."""
        self.check_view("unembed")
        return self._unembed(resid)

    def _unembed(self, resid: torch.Tensor) -> torch.Tensor:
        logits = self.unembed(self.final_norm(resid))
        if self.logit_scale != 1.0:
            logits = logits * self.logit_scale
        if self.final_logit_softcap:
            logits = torch.tanh(logits / self.final_logit_softcap) * self.final_logit_softcap
        return logits


@dataclass
class Candidates:
    """What static discovery found; `lmscope.proof` picks among them and fills ModelParts."""

    model_type: str
    blocks_path: str
    blocks: list[nn.Module]
    final_norms: list[nn.Module]  # in order of preference; Identity last
    unembed: nn.Module
    attentions: list[nn.Module | None]
    mixers: list[nn.Module | None]  # the token mixer: the attention, or Mamba/conv/linear attn
    mlps: list[nn.Module | None]
    attn_projs: list[nn.Module | None]
    mlp_downs: list[nn.Module | None]
    routers: list[nn.Module | None]
    # per block, modules whose output may be what is added (order: preferred first)
    attn_out_choices: list[list[nn.Module]]
    mlp_out_choices: list[list[nn.Module]]
    n_heads: int
    n_ctx: int | None
    residual_scale: float
    logit_scale: float
    softcap: float | None
    missing: dict[tuple[str, int], str]
    experts_per_token: int = 1
    logit_scales: list[float] = field(default_factory=lambda: [1.0])  # preferred first


def _recorded_class(model: nn.Module, key: str) -> tuple[type | None, str | None]:
    """The class (and layer name, if any) transformers records `key` outputs from."""
    spec = (getattr(model, "_can_record_outputs", None) or {}).get(key)
    if spec is None:
        return None, None
    if isinstance(spec, type):
        return spec, None
    return getattr(spec, "target_class", None), getattr(spec, "layer_name", None)


def _find_blocks(model: nn.Module, text_config) -> tuple[str, nn.ModuleList]:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    names = {id(m): n for n, m in model.named_modules()}
    prefix = names.get(id(decoder)) if decoder is not None else None
    plan = getattr(text_config, "base_model_pp_plan", None) or {}
    if decoder is not None and prefix is not None:
        for key in plan:
            found = _get(decoder, key)
            if isinstance(found, nn.ModuleList) and len(found):
                return (f"{prefix}.{key}" if prefix else key), found
    layer_class, _ = _recorded_class(model, "hidden_states")
    lists = [
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0
    ]
    if layer_class is not None:
        for name, found in lists:
            if any(isinstance(b, layer_class) for b in found):
                return name, found
    n_layers = _first_attr(text_config, _LAYER_COUNT_ATTRS)
    sized = [(n, m) for n, m in lists if len(m) == n_layers and "." not in n.split(".")[-1]]
    # the outermost list of that length (expert lists sit deeper inside each block)
    sized.sort(key=lambda item: item[0].count("."))
    if sized:
        return sized[0]
    raise UnsupportedArchitectureError(
        f"{type(model).__name__}: no list of decoder blocks found (no base_model_pp_plan, no "
        f"recorded decoder-layer class, no module list of {n_layers} layers). Pass "
        "Inspector(model, layout=lmscope.Layout(blocks='path.to.layers', ...))."
    )


def _final_norms(model: nn.Module, blocks_path: str, text_config) -> list[nn.Module]:
    """Norm candidates after the blocks: the pipeline plan's last entry first, then the last
    norm-like child of the module holding the blocks, then none (OPT-350m has none)."""
    holder_path = blocks_path.rsplit(".", 1)[0] if "." in blocks_path else ""
    holder = _get(model, holder_path) if holder_path else model
    found: list[nn.Module] = []
    plan = list(getattr(text_config, "base_model_pp_plan", None) or {})
    if plan and holder is not None:
        last = _get(holder, plan[-1])
        if last is not None and _is_norm(last):
            found.append(last)
    if holder is not None:
        norms = [m for _, m in holder.named_children() if _is_norm(m)]
        found += [m for m in reversed(norms) if all(m is not f for f in found)]
    found.append(nn.Identity())
    # a prediction head between the final norm and the unembedding (ModernBERT decoder's
    # dense + activation + norm): a child of the causal-LM module besides the model and the
    # unembedding, applied after each norm candidate
    unembed = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    top = blocks_path.split(".", 1)[0]
    heads = [
        m
        for name, m in model.named_children()
        if name != top and m is not unembed and any(True for _ in m.parameters())
    ]
    found += [nn.Sequential(norm, head) for head in heads for norm in list(found)]
    return found


def _tp_rowwise(text_config, blocks_key: str) -> list[str]:
    """Paths inside one block that the tensor-parallel plan shards row-wise (the projections
    whose outputs are summed across devices: attention output and MLP down projections)."""
    plan = getattr(text_config, "base_model_tp_plan", None) or {}
    out = []
    for path, style in plan.items():
        if "rowwise" not in str(style):
            continue
        head, _, rest = path.partition(".*.")
        if rest and head.split(".")[-1] == blocks_key.split(".")[-1]:
            out.append(rest)
    return out


def _child(block: nn.Module, path: str | None) -> nn.Module | None:
    return _get(block, path) if path else None


def _find_attention(block, attn_class, attn_layer_name, layout: Layout) -> nn.Module | None:
    if layout.attention is not None:
        return _child(block, layout.attention)
    if attn_class is not None:
        if attn_layer_name:
            named = _get(block, attn_layer_name.strip(".").split(".")[-1])
            if named is not None:
                return named
        for _, child in block.named_children():
            if isinstance(child, attn_class):
                return child
        for _, child in block.named_modules():
            if isinstance(child, attn_class):
                return child
    for name in _ATTENTION_NAMES:
        child = getattr(block, name, None)
        if isinstance(child, nn.Module) and "attention" in type(child).__name__.lower():
            return child
    return None


def _find_mlp(block: nn.Module, layout: Layout) -> nn.Module | None:
    if layout.mlp is not None:
        return _child(block, layout.mlp)
    for name in _MLP_NAMES:
        child = getattr(block, name, None)
        if isinstance(child, nn.Module):
            return child
    for _, child in block.named_children():
        if _MLP_CLASS.search(type(child).__name__):
            return child
    return None


def _find_mixer(block: nn.Module, attention, mlp) -> nn.Module | None:
    """The token mixer where there is no attention (Mamba mixer, short conv, linear attention):
    the one child with parameters that is neither a norm nor the MLP."""
    if attention is not None:
        return attention
    others = [
        c
        for _, c in block.named_children()
        if c is not mlp and not _is_norm(c) and any(True for _ in c.parameters())
    ]
    if len(others) > 1:  # beside a second MLP (GraniteMoeHybrid's shared one): the mixer
        others = [c for c in others if _MIXER_CLASS.search(type(c).__name__)]
    return others[0] if len(others) == 1 else None


def _projection(
    parent: nn.Module | None, tp_paths: list[str], prefix: str, names, width: int, path: str | None
) -> nn.Module | None:
    """The projection back to the residual width inside `parent`: named by the user, by the
    tensor-parallel plan, by a usual name, or the last such Linear/Conv1D."""
    if parent is None:
        return None
    if path is not None:
        return _get(parent, path) if path else None
    for tp in tp_paths:
        head, _, rest = tp.partition(".")
        if head == prefix and rest:
            found = _get(parent, rest)
            if found is not None and _out_features(found) is not None:
                return found
    for name in names:
        found = getattr(parent, name, None)
        if isinstance(found, nn.Module) and _out_features(found) == width:
            return found
    linears = [m for _, m in parent.named_modules() if _out_features(m) == width]
    return linears[-1] if linears else None


def _name_in(block: nn.Module, module: nn.Module | None) -> str:
    for name, child in block.named_modules():
        if child is module:
            return name
    return ""


def discover(model: nn.Module, layout: Layout | None = None) -> Candidates:
    """Every part lmscope needs, or an error naming what was not found and how to pass it."""
    config = getattr(model, "config", None)
    if config is None:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} has no config: lmscope inspects Hugging Face models"
        )
    model_type = getattr(config, "model_type", None) or type(model).__name__
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} ({model_type}) is an encoder-decoder model; lmscope "
            "inspects decoder-only causal LMs"
        )
    if hasattr(model, "can_generate") and not model.can_generate():
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} ({model_type}) is not a causal LM (it cannot generate): "
            "lmscope inspects decoder-only causal LMs such as *ForCausalLM models"
        )
    text_config = (
        config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    )
    layout = layout or OVERRIDES.get(model_type) or Layout()
    unembed = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(unembed, nn.Module) or getattr(unembed, "weight", None) is None:
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} ({model_type}) has no output embedding (get_output_embeddings() "
            "is None): load it as a *ForCausalLM model, not a base model"
        )
    if layout.blocks is not None:
        blocks_path, blocks = layout.blocks, _get(model, layout.blocks)
        if not isinstance(blocks, nn.ModuleList) or not len(blocks):
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} ({model_type}): no list of blocks at '{layout.blocks}'"
            )
    else:
        blocks_path, blocks = _find_blocks(model, text_config)
    if layout.final_norm is not None:
        norm = _get(model, layout.final_norm)
        if norm is None:
            raise UnsupportedArchitectureError(
                f"{type(model).__name__} ({model_type}): no final norm at '{layout.final_norm}'"
            )
        final_norms = [norm]
    else:
        final_norms = _final_norms(model, blocks_path, text_config)

    width = unembed.weight.shape[1]
    attn_class, attn_layer_name = _recorded_class(model, "attentions")
    router_class, _ = _recorded_class(model, "router_logits")
    rowwise = _tp_rowwise(text_config, blocks_path)
    missing: dict[tuple[str, int], str] = {}
    per: dict[str, list] = {
        k: [] for k in ("att", "mix", "mlp", "proj", "down", "router", "ao", "mo")
    }
    layer_types = getattr(text_config, "layer_types", None)
    for layer, block in enumerate(blocks):
        attention = _find_attention(block, attn_class, attn_layer_name, layout)
        mlp = _find_mlp(block, layout)
        declared = _declared_mixer(layer_types, layer)
        if attention is not None and declared is not None and layout.attention is None:
            # recorded as an "attention" class, but the config says this layer mixes tokens
            # another way (a linear/delta attention keeps no softmax pattern)
            mixer = attention
            attention = None
        else:
            mixer = _find_mixer(block, attention, mlp)
        attn_prefix, mlp_prefix = _name_in(block, attention), _name_in(block, mlp)
        proj = _projection(
            attention, rowwise, attn_prefix, _ATTN_PROJ_NAMES, width, layout.attn_proj
        )
        down = _projection(mlp, rowwise, mlp_prefix, _MLP_DOWN_NAMES, width, layout.mlp_down)
        if mlp is None and layout.mlp is None:
            # BioGPT, XGLM: fc1/fc2 sit in the block itself; the last projection back to the
            # residual width outside the token mixer is the MLP's down projection
            outside = [
                m for _, m in block.named_children() if m is not mixer and _out_features(m) == width
            ]
            down = outside[-1] if outside else None
            mlp = down
        if down is not None and mlp is not None and _out_features(down) is None:
            down = None
        router = None
        if router_class is not None and mlp is not None:
            router = next((m for m in mlp.modules() if isinstance(m, router_class)), None)
        if attention is None:
            missing[("attention", layer)] = _no_attention(layer, mixer, mlp, declared)
        elif proj is None:
            missing[("attn_proj", layer)] = (
                f"no output projection found in layer {layer}'s {type(attention).__name__} "
                "(pass Layout(attn_proj=...))"
            )
        if mixer is None:
            missing[("mixer", layer)] = f"layer {layer} has no token mixer (it adds its MLP only)"
        if mlp is None:
            missing[("mlp", layer)] = f"layer {layer} has no MLP"
        elif down is None:
            missing[("mlp_down", layer)] = (
                f"layer {layer}'s {type(mlp).__name__} has no single down projection (a "
                "mixture of experts keeps its experts' weights fused), so its hidden "
                "activations are not one tensor"
            )
        per["att"].append(attention)
        per["mix"].append(mixer)
        per["mlp"].append(mlp)
        per["proj"].append(proj)
        per["down"].append(down)
        per["router"].append(router)
        per["ao"].append(_out_choices(block, mixer, proj, layout.attn_out))
        per["mo"].append(_out_choices(block, mlp, down, layout.mlp_out))
    if all(m is None for m in per["mix"]):
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} ({model_type}): no attention or other token mixer found in "
            f"its blocks ({type(blocks[0]).__name__}). Pass Inspector(model, layout="
            "lmscope.Layout(attention='name inside a block', mlp=..., final_norm=...))."
        )
    n_heads = _first_attr(text_config, _HEAD_COUNT_ATTRS) or 0
    n_ctx = _first_attr(text_config, CONTEXT_ATTRS)
    logit_scale = float(getattr(text_config, "logit_scale", None) or 1.0)
    if getattr(text_config, "logits_mup_width_multiplier", None):  # Inkling divides by it
        logit_scale /= float(text_config.logits_mup_width_multiplier)
    logit_scales = [logit_scale]
    if getattr(text_config, "logits_scaling", None):
        # Granite divides by it, HyperCLOVA X multiplies (MuP): the proof checks which
        logit_scales = [logit_scale / float(text_config.logits_scaling)]
        logit_scales.append(logit_scale * float(text_config.logits_scaling))
    return Candidates(
        model_type=model_type,
        blocks_path=blocks_path,
        blocks=list(blocks),
        final_norms=final_norms,
        unembed=unembed,
        attentions=per["att"],
        mixers=per["mix"],
        mlps=per["mlp"],
        attn_projs=per["proj"],
        mlp_downs=per["down"],
        routers=per["router"],
        attn_out_choices=per["ao"],
        mlp_out_choices=per["mo"],
        n_heads=int(n_heads),
        n_ctx=int(n_ctx) if n_ctx else None,
        residual_scale=_residual_scale(text_config, blocks),
        logit_scale=logit_scales[0],
        logit_scales=logit_scales,
        softcap=_first_float(text_config, _SOFTCAP_ATTRS),
        missing=missing,
        experts_per_token=_first_attr(text_config, ("num_experts_per_tok", "top_k", "moe_topk"))
        or 1,
    )


# layer types a config declares for layers whose token mixer keeps no softmax pattern
_NOT_SOFTMAX = re.compile(r"linear|mamba|conv|recurrent|delta|ssm|rwkv|mlp|moe", re.IGNORECASE)


def _declared_mixer(layer_types, layer: int) -> str | None:
    """The config's declared type of `layer` when it says the layer has no softmax attention."""
    if isinstance(layer_types, list | tuple) and layer < len(layer_types):
        kind = str(layer_types[layer])
        if _NOT_SOFTMAX.search(kind) and "full" not in kind and "sliding" not in kind:
            return kind
    return None


def _no_attention(layer: int, mixer, mlp, declared: str | None) -> str:
    if mixer is not None:
        said = f", declared '{declared}' by its config" if declared else ""
        return (
            f"layer {layer} has no attention ({type(mixer).__name__} mixes tokens there{said}; "
            "it keeps no softmax pattern)"
        )
    if mlp is not None:
        return f"layer {layer} has no attention: its block is an MLP ({type(mlp).__name__}) only"
    return f"layer {layer} has no attention"


def _residual_scale(text_config, blocks) -> float:
    """What each sub-layer's output is multiplied by before it is added: Granite's config
    `residual_multiplier`, or the one `residual_scale` every block keeps (MiniCPM 3's
    scale_depth / sqrt(layers)). The proof checks it on the forward."""
    declared = getattr(text_config, "residual_multiplier", None)
    if isinstance(declared, int | float) and declared:
        return float(declared)
    kept = {getattr(b, name, None) for b in blocks for name in ("residual_scale",)}
    if len(kept) == 1:
        (value,) = kept
        if isinstance(value, int | float) and not isinstance(value, bool) and value:
            return float(value)
    return 1.0


def _out_choices(
    block: nn.Module, sublayer: nn.Module | None, proj: nn.Module | None, path: str | None
) -> list[nn.Module]:
    """Modules whose output may be what `sublayer` adds to the residual stream: the user's
    choice alone; otherwise the sub-layer itself, every norm or other child of the block (a
    post-norm or Inkling's short convolution reads the sub-layer's output; the proof checks
    which one does) and the output projection (Bloom's attention and MLP add the residual
    inside, after it)."""
    if path is not None:
        chosen = _get(block, path)
        return [chosen] if chosen is not None else []
    if sublayer is None:
        return []
    choices = [sublayer]
    # a norm or other module of the block reading the sub-layer's output (the proof checks)
    choices += [
        c
        for _, c in block.named_children()
        if c is not sublayer and (_is_norm(c) or any(True for _ in c.parameters()))
    ]
    if proj is not None:
        choices.append(proj)
    return choices


def resolve(model: nn.Module, layout: Layout | None = None, *, prove: bool = True) -> ModelParts:
    """Find the parts lmscope hooks and (unless `prove=False`) prove on one short forward that
    they mean what lmscope says; raise an error naming what is missing or what failed."""
    from lmscope import proof

    candidates = discover(model, layout)
    return proof.establish(model, candidates, prove=prove)
