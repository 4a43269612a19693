"""The real bundled SmolLM2-135M against Hugging Face's own outputs, plus input validation."""

import time

import pytest
import torch

import lmscope
from _models import default_eager_model, default_inspector, hook_snapshot
from lmscope.errors import InputError, OutOfRangeError, UnknownModelError

pytestmark = pytest.mark.real_model

PROMPT = "Q: What is the capital of France?\nA: Paris\nQ: What is the capital of Poland?\nA:"


@pytest.fixture(scope="module")
def ins():
    return default_inspector()


@pytest.fixture(scope="module")
def trace(ins):
    return ins.run(PROMPT)


@pytest.fixture(scope="module")
def reference(trace):
    with torch.no_grad():
        return default_eager_model()(
            input_ids=trace.input_ids[None], output_attentions=True, output_hidden_states=True
        )


def test_default_model_shape(ins, trace):
    assert ins.model.config._attn_implementation == "sdpa"  # left as transformers chose
    assert (trace.n_layers, trace.n_heads, trace.d_model) == (30, 9, 576)
    assert trace.seq_len == len(trace.input_ids) == len(trace.tokens)
    assert trace.logits.shape == (trace.seq_len, 49152)


def test_residuals_and_logits_match_hugging_face(trace, reference):
    for layer in range(trace.n_layers):
        torch.testing.assert_close(
            trace.resid_pre(layer), reference.hidden_states[layer][0], atol=2e-4, rtol=1e-4
        )
    torch.testing.assert_close(trace.logits, reference.logits[0], atol=2e-4, rtol=1e-4)


def test_attention_matches_eager_on_every_layer(trace, reference):
    for layer in range(trace.n_layers):
        torch.testing.assert_close(
            trace.attention(layer), reference.attentions[layer][0], atol=1e-5, rtol=1e-4
        )


def test_generate_equals_hugging_face_greedy(ins):
    trace = ins.generate("The capital of Poland is", max_new_tokens=8)
    prompt_ids = ins.tokenizer("The capital of Poland is", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = default_eager_model().generate(
            prompt_ids, max_new_tokens=8, do_sample=False, pad_token_id=ins.tokenizer.eos_token_id
        )[0]
    assert torch.equal(trace.input_ids, expected)
    assert trace.prompt_length == prompt_ids.shape[1]
    assert trace.generated_text == ins.tokenizer.decode(
        expected[trace.prompt_length :], skip_special_tokens=True
    )
    assert trace.seq_len == len(expected)


def test_model_left_as_found(ins):
    model = ins.model
    before_hooks = hook_snapshot(model)
    before_config = model.config.to_dict()
    before_classes = {name: type(m) for name, m in model.named_modules()}
    forward_of_class = type(model.model.layers[0]).forward
    trace = ins.run("Leave everything as you found it.")
    trace.attention(3)
    trace.attention_scores(29)
    assert hook_snapshot(model) == before_hooks
    assert model.config.to_dict() == before_config
    assert model.config._attn_implementation == "sdpa"
    assert {name: type(m) for name, m in model.named_modules()} == before_classes
    assert type(model.model.layers[0]).forward is forward_of_class
    assert not model.training


def test_hooks_removed_when_forward_raises(ins):
    model = ins.model

    def explode(*_):
        raise RuntimeError("boom inside block 5")

    bomb = model.model.layers[5].register_forward_pre_hook(explode)
    try:
        before = hook_snapshot(model)
        with pytest.raises(RuntimeError, match="boom"):
            ins.run("this run fails half way")
        assert hook_snapshot(model) == before
    finally:
        bomb.remove()
    assert ins.run("and the next run works").seq_len > 0


def test_trace_tensors_are_plain_and_on_model_device(ins, trace):
    assert trace.resid_post(4).device == ins.device
    assert trace.resid_post(4).dtype == next(ins.model.parameters()).dtype
    # usable outside inference mode, e.g. fed back through model parts by the user
    assert not trace.resid_post(4).is_inference()


# -- bad input ------------------------------------------------------------------------------
def test_empty_text(ins):
    with pytest.raises(InputError, match="empty"):
        ins.run("")
    with pytest.raises(ValueError, match="empty"):
        ins.run([])


def test_text_longer_than_context(ins):
    with pytest.raises(InputError, match="at most 8192"):
        ins.run(torch.ones(8193, dtype=torch.long))


def test_ids_outside_vocabulary(ins):
    with pytest.raises(InputError, match=r"49152 is outside the vocabulary \(valid: 0..49151\)"):
        ins.run([1, 2, 49152])
    with pytest.raises(InputError, match="integers"):
        ins.run(torch.tensor([1.0, 2.0]))


def test_layer_and_head_out_of_range(trace):
    with pytest.raises(OutOfRangeError, match=r"layer 30 is out of range.*0\.\.29"):
        trace.attention(30)
    with pytest.raises(IndexError, match=r"head 9 .*0\.\.8"):
        trace.head(0, 9)
    with pytest.raises(OutOfRangeError):
        trace.resid_pre(-31)
    assert torch.equal(trace.resid_pre(-1), trace.resid_pre(29))


def test_bad_generate_arguments(ins):
    with pytest.raises(InputError, match="max_new_tokens"):
        ins.generate("hi", max_new_tokens=0)
    with pytest.raises(InputError, match="exceeds"):
        ins.generate(torch.ones(8190, dtype=torch.long), max_new_tokens=5)


def test_unknown_model_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(UnknownModelError, match="no-such-org/no-such-model"):
        lmscope.Inspector.from_pretrained("no-such-org/no-such-model")
    with pytest.raises(UnknownModelError, match="neither a local folder"):
        lmscope.Inspector.from_pretrained("not a model id!")
    assert time.monotonic() - started < 30  # a hang guard, not a speed target


def test_unknown_model_fails_without_hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(UnknownModelError, match="no-such-org/no-such-model"):
        lmscope.Inspector.from_pretrained("no-such-org/no-such-model")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_trace_matches_cpu(trace):
    gpu = lmscope.Inspector.from_pretrained(device="cuda")
    assert gpu.device.type == "cuda"
    gpu_trace = gpu.run(PROMPT)
    assert gpu_trace.resid_post(10).device.type == "cuda"
    torch.testing.assert_close(gpu_trace.logits.cpu(), trace.logits, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(
        gpu_trace.attention(7).cpu(), trace.attention(7), atol=1e-4, rtol=1e-3
    )
