"""On a GPU (skipped without CUDA; `benchmarks/gpu_check.sh` runs them): the default model in
bf16 and fp16 against Hugging Face's own eager attention, a model dispatched over the GPU and
CPU offload, two GPUs when there are two, and a trace stored on the CPU beside a GPU model."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

import lmscope
from _models import hook_snapshot
from lmscope.default_model import ensure_converted

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
TEXT = "The capital of France is Paris, and the capital of Poland is"
ACCESSORS = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post", "mlp_activations")


def split_map(far: str, near: str = "cuda:0") -> dict[str, str]:
    where = {"model.embed_tokens": near, "model.rotary_emb": near, "model.norm": near}
    where |= {f"model.layers.{i}": near if i < 15 else far for i in range(30)}
    return where | {"lm_head": near}


@pytest.fixture(scope="module")
def plain_fp32():
    return lmscope.Inspector.from_pretrained(device="cuda:0", dtype=torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_patterns_match_hugging_face_eager(dtype):
    ins = lmscope.Inspector.from_pretrained(device="cuda:0", dtype=dtype)
    eager = tf.AutoModelForCausalLM.from_pretrained(
        ensure_converted(), attn_implementation="eager", dtype=dtype
    ).to("cuda:0")
    trace = ins.run(TEXT)
    with torch.no_grad():
        out = eager(input_ids=trace.input_ids.cuda()[None], output_attentions=True)
    for layer in (0, 15, 29):
        torch.testing.assert_close(
            trace.attention(layer).float(), out.attentions[layer][0].float(), atol=3e-2, rtol=0
        )
        rebuilt = trace.resid_mid(layer) + trace.mlp_out(layer)
        torch.testing.assert_close(rebuilt, trace.resid_post(layer), atol=5e-2, rtol=1e-2)
    lens = trace.logit_lens(top_k=1, positions=-1)
    assert int(lens.token_ids[-1, 0, 0]) == int(trace.logits[-1].argmax())


def test_gpu_with_cpu_offload_matches_the_plain_gpu_model(plain_fp32, tmp_path):
    ins = lmscope.Inspector.from_pretrained(device_map=split_map("cpu"), dtype=torch.float32)
    assert ins.device == torch.device("cuda:0") and ins.layer_devices[20].type == "cuda"
    hooks = hook_snapshot(ins.model)
    trace, plain = ins.run(TEXT), plain_fp32.run(TEXT)
    for layer in (0, 15, 29):
        for name in (*ACCESSORS, "attention"):
            torch.testing.assert_close(getattr(trace, name)(layer), getattr(plain, name)(layer))
    torch.testing.assert_close(trace.logits, plain.logits)
    assert hook_snapshot(ins.model) == hooks
    assert ins.model.model.layers[20].mlp.up_proj.weight.device.type == "meta"  # back offloaded


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpu_device_map_matches_one_gpu(plain_fp32):
    ins = lmscope.Inspector.from_pretrained(device_map=split_map("cuda:1"), dtype=torch.float32)
    assert ins.layer_devices[0] == torch.device("cuda:0")
    assert ins.layer_devices[29] == torch.device("cuda:1")
    trace, plain = ins.run(TEXT), plain_fp32.run(TEXT)
    for layer in (14, 15, 29):
        assert trace.resid_pre(layer).device == ins.layer_devices[layer]
        for name in (*ACCESSORS, "attention"):
            torch.testing.assert_close(
                getattr(trace, name)(layer).cpu(), getattr(plain, name)(layer).cpu()
            )
    for stage in ("post", "mid"):
        got, want = trace.logit_lens(top_k=3, stage=stage), plain.logit_lens(top_k=3, stage=stage)
        assert torch.equal(got.token_ids, want.token_ids)
    assert set(ins.budgets()) == {torch.device("cuda:0"), torch.device("cuda:1")}


def test_trace_on_the_cpu_beside_a_gpu_model(plain_fp32):
    ins = lmscope.Inspector(
        plain_fp32.model, plain_fp32.tokenizer, trace_device="cpu", trace_internals="recompute"
    )
    trace, plain = ins.run(TEXT), plain_fp32.run(TEXT)
    assert trace.resid_pre(3).device.type == "cpu" and trace.logits.device.type == "cpu"
    for layer in (0, 29):
        for name in (*ACCESSORS, "attention"):
            torch.testing.assert_close(
                getattr(trace, name)(layer).cpu(), getattr(plain, name)(layer).cpu()
            )
    assert torch.equal(trace.logit_lens(top_k=3).token_ids, plain.logit_lens(top_k=3).token_ids)
