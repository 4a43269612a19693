"""Models shared by the tests: the real bundled SmolLM2 (loaded once per session) and tiny
random configs of every supported family (built from transformers, no download).

Import what you need: `from _models import default_inspector, tiny_inspector, TINY_FAMILIES`.
"""

from __future__ import annotations

from functools import cache

import torch
import transformers as tf

import lmscope

# sharper random weights than the default 0.02 so attention patterns are far from uniform
_INIT = 0.2
_COMMON = dict(vocab_size=320, initializer_range=_INIT)
_DECODER = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    **_COMMON,
)

TINY_CONFIGS = {
    "gpt2": lambda: tf.GPT2Config(n_layer=3, n_head=4, n_embd=64, n_positions=256, **_COMMON),
    "llama": lambda: tf.LlamaConfig(**_DECODER),
    "mistral": lambda: tf.MistralConfig(**_DECODER, sliding_window=8),
    "qwen2": lambda: tf.Qwen2Config(**_DECODER),
    "qwen3": lambda: tf.Qwen3Config(**_DECODER, head_dim=16),
    "gpt_neox": lambda: tf.GPTNeoXConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=256,
        rotary_pct=0.5,
        **_COMMON,
    ),
    "phi3": lambda: tf.Phi3Config(**_DECODER, pad_token_id=0),
    "gemma2": lambda: tf.Gemma2Config(
        **_DECODER,
        head_dim=16,
        sliding_window=8,
        attn_logit_softcapping=20.0,
        final_logit_softcapping=15.0,
    ),
}
TINY_FAMILIES = sorted(TINY_CONFIGS)


@cache
def tiny_model(family: str, attn_implementation: str | None = None) -> torch.nn.Module:
    """None keeps transformers' default for the family (SDPA where it supports it)."""
    torch.manual_seed(0)
    config = TINY_CONFIGS[family]()
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    return tf.AutoModelForCausalLM.from_config(config, **kwargs).eval()


def tiny_inspector(family: str) -> lmscope.Inspector:
    return lmscope.Inspector(tiny_model(family))


def tiny_ids(n: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, 320, (n,), generator=torch.Generator().manual_seed(seed))


@cache
def default_inspector() -> lmscope.Inspector:
    """The real SmolLM2-135M-Instruct on CPU (converted once into the lmscope cache)."""
    return lmscope.Inspector.from_pretrained(device="cpu")


@cache
def default_eager_model() -> torch.nn.Module:
    """The same weights under eager attention: Hugging Face's own reference for patterns."""
    from lmscope.default_model import ensure_converted

    return tf.AutoModelForCausalLM.from_pretrained(
        ensure_converted(), attn_implementation="eager"
    ).eval()


PROSE_THEN_CODE = (
    "The old lighthouse keeper walked along the shore every evening, watching the waves roll "
    "in from the grey sea while gulls circled above the harbour and the fishing boats came home.\n"
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
    "    return a\n\nprint([fibonacci(i) for i in range(10)])\n"
)


def hook_snapshot(model: torch.nn.Module) -> dict:
    """Every module's forward (pre-)hook ids: equal before and after a run when lmscope removed
    its own (transformers' recording hooks are there in both snapshots alike)."""
    return {
        (name, kind): tuple(getattr(module, kind).keys())
        for name, module in model.named_modules()
        for kind in ("_forward_hooks", "_forward_pre_hooks")
    }
