"""Every decoder-only family in transformers' causal-LM mapping, built small and checked.

For each model type in `MODEL_FOR_CAUSAL_LM_MAPPING_NAMES` (encoder-decoder and masked-LM
encoders left out) a tiny random config is made from the family's own default config by
shrinking its size attributes, and lmscope is checked against Hugging Face itself on it:
the residual stream against `hidden_states`, the logits, every attention layer's pattern
against eager `output_attentions` (with a sliding window shorter than the prompt where the
family has one), and the logit lens's last row against the model's own top-k.

    PYTHONPATH=src python scripts/sweep_models.py            # all families, writes docs/models.md
    PYTHONPATH=src python scripts/sweep_models.py llama bloom  # just these, prints only
    PYTHONPATH=src python scripts/sweep_models.py --jobs 2     # two families at a time

Each family runs in its own forked process with a timeout, so one that hangs or crashes is
reported rather than stopping the sweep. `tests/test_model_sweep.py` runs a subset of it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import multiprocessing
import os
import sys
import time
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.models.auto import modeling_auto

ROOT = Path(__file__).resolve().parents[1]
SEQ = 24  # prompt length; sliding windows are made shorter than it
WINDOW = 8
VOCAB = 512
TIMEOUT_S = 60
ATOL, RTOL = 5e-5, 1e-4

# size attributes, wherever a family's config has them (text sub-config for multimodal ones)
_SIZES = {
    "hidden_size": 64,
    "n_embd": 64,
    "d_model": 64,
    "num_attention_heads": 4,
    "n_head": 4,
    "num_heads": 4,
    "n_heads": 4,
    "intermediate_size": 128,
    "n_inner": 128,
    "ffn_hidden_size": 128,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "expert_intermediate_size": 32,
    "head_dim": 16,
    "num_local_experts": 4,
    "num_experts": 4,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "word_embed_proj_dim": 64,  # OPT projects embeddings when this differs from hidden_size
    "max_position_embeddings": 256,
    "n_positions": 256,
    # rotary and latent-attention widths must fit the shrunk head width
    "rotary_dim": 8,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 8,
    "v_head_dim": 16,
    "kv_lora_rank": 16,
    "q_lora_rank": 32,
    # Granite's multipliers, away from 1 so that the sweep checks them
    # widths of other mixers, which the defaults leave at the full model's size
    "attention_hidden_size": 64,  # RWKV (Zamba's is twice the hidden size: see _fit)
    "embedding_dim": 64,  # xLSTM
    "lru_width": 64,  # RecurrentGemma
    "unpadded_vocab_size": VOCAB,  # Inkling 2
    "adapter_rank": 8,
    "shared_intermediate_size": 32,
    "residual_multiplier": 0.5,
    "embedding_multiplier": 2.0,
    "logits_scaling": 3.0,
    "initializer_range": 0.2,  # sharper patterns than the default 0.02
}
_LAYER_ATTRS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


def decoder_model_types() -> list[str]:
    """Model types of the causal-LM mapping that are decoder-only (not encoder-decoder, not an
    encoder with a masked-LM head used as a decoder)."""
    encoders = set(modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    seq2seq = set(modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)
    seq2seq |= set(getattr(modeling_auto, "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES", {}))
    out = []
    for model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        if model_type in encoders or model_type in seq2seq:
            continue
        try:
            if getattr(AutoConfig.for_model(model_type), "is_encoder_decoder", False):
                continue
        except Exception:  # listed, then reported as not buildable
            pass
        out.append(model_type)
    return out


def _set(config, name: str, value) -> None:
    with contextlib.suppress(Exception):  # a read-only property keeps its own value
        setattr(config, name, value)


def _short_layer_types(types: list) -> list:
    """One layer of each kind, in order of first appearance, at least two layers."""
    kinds = list(dict.fromkeys(types))
    return kinds if len(kinds) >= 2 else types[:2]


# shrinking tried in turn: every size attribute; then leaving head counts and head widths to
# the family (state-space and recurrent mixers tie them to the hidden size)
_LEVELS = (
    _SIZES,
    {
        k: v
        for k, v in _SIZES.items()
        if k not in ("num_attention_heads", "n_head", "num_heads", "n_heads", "head_dim")
    },
)


def name_ok(sizes: dict, name: str) -> bool:
    return name in sizes


def tiny_config(model_type: str, level: int = 0):
    config = AutoConfig.for_model(model_type)
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    sizes = _LEVELS[level]
    for sub in {id(text): text, id(config): config}.values():
        for name, value in sizes.items():
            current = getattr(sub, name, None)
            # a size of 0 switches a part off (GraniteMoeShared's shared expert): shrinking
            # must not switch it on
            if isinstance(current, int | float) and not isinstance(current, bool) and current:
                _set(sub, name, value)
        if isinstance(getattr(sub, "num_key_value_heads", None), int):
            _set(sub, "num_key_value_heads", 2 if sub.num_key_value_heads > 1 else 1)
        if isinstance(getattr(sub, "vocab_size", None), int):
            _set(sub, "vocab_size", VOCAB)
        for name in ("sliding_window", "window_size"):  # GPT-Neo's local attention
            if isinstance(getattr(sub, name, None), int) and getattr(sub, name):
                _set(sub, name, WINDOW)
        # hybrids place attention every `period` layers from `offset`: one of each in 2 layers
        for prefix in ("attn_layer", "expert_layer"):
            if isinstance(getattr(sub, f"{prefix}_period", None), int):
                _set(sub, f"{prefix}_period", 2)
                _set(sub, f"{prefix}_offset", 1)
        types = getattr(sub, "layer_types", None)
        n_layers = 2
        if isinstance(types, list) and types:
            short = _short_layer_types(types)
            _set(sub, "layer_types", short)
            n_layers = len(short)
        for name in _LAYER_ATTRS:
            if isinstance(getattr(sub, name, None), int):
                _set(sub, name, n_layers)
        if isinstance(getattr(sub, "qk_rope_head_dim", None), int) and name_ok(sizes, "head_dim"):
            # latent attention derives these at construction: rotary width and q/k width
            _set(sub, "head_dim", sub.qk_rope_head_dim)
            _set(sub, "qk_head_dim", sub.qk_rope_head_dim + getattr(sub, "qk_nope_head_dim", 0))
        if getattr(sub, "kv_lora_rank", None) and isinstance(
            getattr(sub, "num_key_value_heads", None), int
        ):
            _set(
                sub, "num_key_value_heads", sub.num_attention_heads
            )  # latent attention: one per head
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(sub, name, None)
            if isinstance(value, int) and value >= VOCAB:
                _set(sub, name, 0)
        _fit(sub, level)
    return config


def _declared(config, name: str) -> bool:
    """The config has the field (possibly None), not just no such attribute."""
    try:
        return name in config.to_dict()
    except Exception:  # a config whose dict cannot be built: treat as absent
        return False


def _fit(sub, level: int) -> None:
    """Sizes the families tie to each other, made consistent again after shrinking: fields the
    default config leaves None that the family needs, state-space heads that must tile the
    expanded width, expert groups that must divide the experts, and hybrid layer lists that
    must keep one layer of each kind in two layers."""
    hidden = getattr(sub, "hidden_size", None)
    if not isinstance(hidden, int):
        return
    heads = getattr(sub, "num_attention_heads", None)
    # fields None by default that the family's code reads as numbers (HunYuan, Ministral...)
    none_fields = {
        "num_key_value_heads": 2,
        "num_experts_per_tok": 2,
        "n_routed_experts": 4,
        "n_shared_experts": 1,
    }
    if level == 0:
        none_fields["head_dim"] = 16
    for name, value in none_fields.items():
        if _declared(sub, name) and getattr(sub, name, None) is None:
            _set(sub, name, value)
    kv_heads = getattr(sub, "num_key_value_heads", None)
    if isinstance(heads, int) and isinstance(kv_heads, int) and heads % kv_heads:
        _set(sub, "num_key_value_heads", heads)
    # expert groups must divide the (shrunk) experts: DeepSeek-style group routing
    experts = getattr(sub, "n_routed_experts", None) or getattr(sub, "num_experts", None)
    groups = getattr(sub, "n_group", None)
    if isinstance(experts, int) and isinstance(groups, int) and experts % groups:
        _set(sub, "n_group", 1)
        _set(sub, "topk_group", 1)
    # Mamba 2 heads tile expand * hidden: num_heads * head_dim == expand * hidden
    expand = getattr(sub, "expand", None) or getattr(sub, "mamba_expand", None) or 2
    for n_name, d_name in (
        ("num_heads", "head_dim"),  # Mamba 2
        ("mamba_n_heads", "mamba_d_head"),  # Bamba, GraniteMoeHybrid
        ("n_mamba_heads", "mamba_headdim"),  # Zamba 2
    ):
        if n_name == "num_heads" and getattr(sub, "model_type", "") != "mamba2":
            continue  # elsewhere num_heads counts attention heads
        if _declared(sub, "mamba_d_ssm"):
            continue  # Falcon-H1 sizes the heads' width itself, apart from the hidden size
        if isinstance(getattr(sub, d_name, None), int) and isinstance(getattr(sub, n_name), int):
            _set(sub, n_name, 4)
            _set(sub, d_name, expand * hidden // 4)
    for name in ("n_groups", "mamba_n_groups"):  # state groups must divide the 4 heads
        if isinstance(getattr(sub, name, None), int) and getattr(sub, name) > 1:
            _set(sub, name, 1)
    # Zamba: the shared attention reads the hidden state concatenated with the embeddings
    if _declared(sub, "attention_head_dim") and isinstance(heads, int):
        _set(sub, "attention_hidden_size", 2 * hidden)
        _set(sub, "attention_head_dim", 2 * hidden // heads)
        if _declared(sub, "kv_channels"):
            _set(sub, "kv_channels", hidden // heads)
        if _declared(sub, "mamba_dt_rank"):
            _set(sub, "mamba_dt_rank", max(hidden // 16, 1))
    # hybrids whose default config lists one kind of layer only (or none)
    model_type = getattr(sub, "model_type", "")
    if model_type in _HYBRID_KINDS:
        _set(sub, "layer_types", list(_HYBRID_KINDS[model_type]))
    # hybrids that list their layer kinds under other names keep one of each
    for name in ("layers_block_type", "block_types"):
        kinds = getattr(sub, name, None)
        if isinstance(kinds, list | tuple) and len(set(kinds)) > 1:
            short = _short_layer_types(list(kinds))
            if "hybrid" in short:  # Zamba ties every later shared block to the first one
                short.append("hybrid")
            _set(sub, name, short)
            if name == "layers_block_type" and _declared(sub, "hybrid_layer_ids"):
                _set(sub, "hybrid_layer_ids", [i for i, k in enumerate(short) if k == "hybrid"])
    if _declared(sub, "attn_layer_indices") and getattr(sub, "attn_layer_indices", None) is None:
        _set(sub, "attn_layer_indices", [1])  # Bamba: which layers have attention
    kinds = next(
        (
            getattr(sub, n)
            for n in ("layer_types", "layers_block_type", "block_types")
            if isinstance(getattr(sub, n, None), list | tuple)
        ),
        None,
    )
    if kinds:
        for name in _LAYER_ATTRS:
            if isinstance(getattr(sub, name, None), int):
                _set(sub, name, len(kinds))
    if model_type == "xlstm":  # its state keeps the value width for both; blocks = layers
        _set(sub, "qk_dim_factor", 1.0)
        _set(sub, "num_blocks", sub.num_hidden_layers)


# layer kinds for hybrids whose default config declares only one (or None)
_HYBRID_KINDS = {
    "lfm2_moe": ("conv", "full_attention"),
    "granitemoehybrid": ("linear_attention", "full_attention"),
}


def build(model_type: str):
    """(model under transformers' default attention, the same weights under eager, shrink
    level): the first shrinking under which transformers builds the family and runs it."""
    errors = []
    for level in range(len(_LEVELS)):
        try:
            return (*_build(model_type, level), level)
        except Exception as err:  # the next level shrinks less
            errors.append(err)
    raise errors[0]


def _build(model_type: str, level: int):
    torch.manual_seed(0)
    config = tiny_config(model_type, level)
    model = AutoModelForCausalLM.from_config(config).eval()
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > 200_000_000:
        raise RuntimeError(f"still {n_params / 1e6:.0f}M parameters after shrinking its config")
    with torch.no_grad():  # transformers itself must run it
        model(input_ids=torch.tensor([[3, 4, 5]]))
    # built eager from the start (families outside the attention interface pick their attention
    # code at construction), then given the same weights
    eager = AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation="eager")
    eager.load_state_dict(model.state_dict())
    return model, eager.eval()


def _close(a, b) -> bool:
    return (
        a is not None
        and b is not None
        and a.shape == b.shape
        and torch.allclose(a.float(), b.float(), atol=ATOL, rtol=RTOL)
    )


def check(model_type: str) -> dict:
    """One family's result: status exact / partial / refused / wrong / not_built, and why."""
    import lmscope
    from lmscope.errors import LmscopeError

    try:
        model, eager, level = build(model_type)
        vocab = model.get_output_embeddings().weight.shape[0]
        ids = torch.randint(3, vocab, (SEQ,), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = eager(input_ids=ids[None], output_attentions=True, output_hidden_states=True)
    except Exception as err:  # transformers itself cannot build or run it
        return {"status": "not_built", "why": f"{type(err).__name__}: {_short(err)}"}
    try:
        ins = lmscope.Inspector(model)
    except LmscopeError as err:
        return {"status": "refused", "why": _short(err)}
    parts = ins.parts
    wrong, partial = [], []
    for view, why in parts.refused.items():
        partial.append(f"{view}: {why}")
    try:
        trace = ins.run(ids)
        n = trace.n_layers
        if parts.hidden_states_are == "inputs":
            pairs = [(trace.resid_pre(i), ref.hidden_states[i][0]) for i in range(n)]
            if parts.stream_entry is not None:  # RWKV: the stream starts at block 0's pre_ln
                with torch.no_grad():
                    entered = parts.stream_entry(ref.hidden_states[0])[0]
                pairs[0] = (trace.resid_pre(0), entered)
        else:  # Mamba's hidden_states are the block outputs
            pairs = [(trace.resid_post(i), ref.hidden_states[i][0]) for i in range(n - 1)]
        if not all(_close(a, b) for a, b in pairs):
            wrong.append("residual stream differs from hidden_states")
        if not _close(trace.logits, ref.logits[0]):
            wrong.append("logits differ")
        if "decomposition" not in parts.refused:
            for i in range(n):
                if not _close(trace.resid_mid(i) + trace.mlp_out(i), trace.resid_post(i)):
                    wrong.append(f"block {i}: resid_pre + attn_out + mlp_out != block output")
                    break
        if "unembed" not in parts.refused:
            lens = trace.logit_lens(top_k=5, positions=[SEQ - 1])
            top = ref.logits[0, -1].topk(5).indices.tolist()
            if _lens_ids(lens, n) != top:
                wrong.append("lens's last row differs from the model's top-k")
        attention_layers = parts.attention_layers
        refs = getattr(ref, "attentions", None) or ()
        if len(refs) == n and n != len(attention_layers):
            refs = [refs[layer] for layer in attention_layers]  # one entry per block
        elif attention_layers and len(refs) != len(attention_layers):
            refs = [None] * len(attention_layers)
        for j, layer in enumerate(attention_layers):
            if layer in parts.attention_refused:
                partial.append(f"attention layer {layer}: {parts.attention_refused[layer]}")
                continue
            expected = refs[j][0] if refs[j] is not None else None
            if expected is None:
                partial.append(f"attention layer {layer}: no eager output_attentions to check")
            elif not _close(trace.attention(layer), expected):
                wrong.append(f"attention layer {layer} differs from eager output_attentions")
    except Exception as err:  # reported as wrong: lmscope failed on it
        wrong.append(f"{type(err).__name__}: {_short(err)} ({_where(err)})")
    facts = {
        "layers": len(parts.blocks),
        "attention_layers": len(parts.attention_layers),
        "parallel": parts.parallel_residual,
        "routes": sorted(set(parts.pattern_route.values())),
        "mixers": sorted(set(parts.mixers)),
        "shrink": level,
        "window": any(
            getattr(model.config.get_text_config(decoder=True), name, None)
            for name in ("sliding_window", "window_size")
        ),
    }
    if wrong:
        return {"status": "wrong", "why": "; ".join(wrong), **facts}
    if partial:
        return {"status": "partial", "why": "; ".join(dict.fromkeys(partial)), **facts}
    return {"status": "exact", **facts}


def _lens_ids(lens, n_layers: int) -> list[int]:
    return [int(i) for i in lens.token_ids[-1, -1].tolist()]


def _short(err: Exception, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _where(err: Exception) -> str:
    frame = traceback.extract_tb(err.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def _child(model_type: str, queue) -> None:
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    try:
        queue.put(check(model_type))
    except BaseException as err:
        queue.put({"status": "wrong", "why": f"sweep crashed: {type(err).__name__}: {_short(err)}"})
    queue.close()
    queue.join_thread()
    os._exit(0)  # skip interpreter teardown: the parent has the result


def run_one(model_type: str, timeout: float = TIMEOUT_S) -> dict:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(model_type, queue))
    start = time.perf_counter()
    proc.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:  # queue.Empty: it ran past the timeout
        result = {"status": "not_built", "why": f"did not finish within {timeout:.0f} s on CPU"}
    proc.join(5)
    if proc.is_alive():
        proc.kill()
    result["model_type"] = model_type
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


STATUS_ORDER = ("exact", "partial", "wrong", "refused", "not_built")
STATUS_TEXT = {
    "exact": "exact",
    "partial": "partial",
    "wrong": "wrong (a bug: shown without refusal but differs from Hugging Face)",
    "refused": "refused",
    "not_built": "cannot be built small",
}


def counts(results: list[dict]) -> dict[str, int]:
    return {s: sum(r["status"] == s for r in results) for s in STATUS_ORDER}


def summary(results: list[dict]) -> str:
    c = counts(results)
    built = len(results) - c["not_built"]
    share = 100 * c["exact"] / built if built else 0.0
    return (
        f"{len(results)} decoder-only model types; {built} build small; exact {c['exact']} "
        f"({share:.0f}% of those built), partial {c['partial']}, refused {c['refused']}, "
        f"wrong {c['wrong']}, cannot be built small {c['not_built']}"
    )


def write_markdown(results: list[dict], path: Path) -> None:
    lines = [
        "# Model families",
        "",
        f"Generated by `scripts/sweep_models.py` with transformers {transformers.__version__} "
        f"and torch {torch.__version__}; do not edit by hand.",
        "",
        "Every decoder-only model type in transformers' `MODEL_FOR_CAUSAL_LM_MAPPING_NAMES` is "
        "built from a tiny random config (its own default config, sizes shrunk) and lmscope is "
        "checked against Hugging Face itself: residual stream vs `hidden_states`, logits, every "
        f"attention layer vs eager `output_attentions` on a {SEQ}-token prompt (sliding windows "
        f"set to {WINDOW} where the family has one), and the logit lens's last row vs the model's "
        "top-5. *Exact*: every check passed and nothing was refused. *Partial*: what is shown is "
        "exact, some views are refused (listed). *Refused*: lmscope declines the model, saying why.",
        "",
        f"**{summary(results)}.**",
        "",
    ]
    for status in STATUS_ORDER:
        group = [r for r in results if r["status"] == status]
        if not group:
            continue
        lines += [f"## {STATUS_TEXT[status].capitalize()} ({len(group)})", ""]
        if status == "exact":
            lines += [
                "| model type | layers (attention) | parallel residual | pattern route | token mixers |",
                "|---|---|---|---|---|",
            ]
            for r in group:
                lines.append(
                    f"| `{r['model_type']}` | {r['layers']} ({r['attention_layers']}) | "
                    f"{'yes' if r['parallel'] else ''} | {', '.join(r['routes'])} | "
                    f"{', '.join(r['mixers'])} |"
                )
        else:
            lines += ["| model type | why |", "|---|---|"]
            for r in group:
                why = r.get("why", "").replace("|", "\\|")
                lines.append(f"| `{r['model_type']}` | {why} |")
        lines.append("")
    path.write_text("\n".join(lines))


def main(argv: list[str]) -> int:
    jobs = 1
    if argv[:1] == ["--jobs"]:
        jobs, argv = int(argv[1]), argv[2:]
    types = argv or decoder_model_types()
    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:  # each family runs in a forked process of its own
        results = []
        for result in pool.map(run_one, types):
            results.append(result)
            print(json.dumps(result), flush=True)
    print(f"{time.perf_counter() - start:.0f} s with {jobs} parallel job(s)")
    print(summary(results))
    if not argv:
        write_markdown(results, ROOT / "docs" / "models.md")
        print(f"wrote {ROOT / 'docs' / 'models.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
