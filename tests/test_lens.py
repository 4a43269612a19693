"""Logit lens against an independent torch computation on Hugging Face's own forward pass.

The reference reads the residual stream from Hugging Face (`output_hidden_states` and pre-hooks
on the norm each stream feeds), writes each family's final norm out by hand, and ranks the whole
vocabulary with a full sort, as the classic notebooks do.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _models import TINY_FAMILIES, default_eager_model, default_inspector, tiny_ids, tiny_inspector
from lmscope.errors import InputError, OutOfRangeError
from lmscope.lens import LensResult, distribution, logit_lens, token_strings

# the module each family's resid_mid enters first (its input is the stream after attention)
MID_NORM = {
    "gpt2": "ln_2",
    "llama": "post_attention_layernorm",
    "gemma2": "pre_feedforward_layernorm",
}


def _blocks(model):
    return model.transformer.h if hasattr(model, "transformer") else model.model.layers


def _final_norm(model, x: torch.Tensor) -> torch.Tensor:
    kind = model.config.model_type
    if kind == "gpt2":
        ln = model.transformer.ln_f
        return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
    norm = model.model.norm
    eps = getattr(norm, "variance_epsilon", None) or norm.eps
    h = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    if kind == "gemma2":
        return (h * (1.0 + norm.weight.float())).to(x.dtype)
    return norm.weight * h.to(x.dtype)


def reference(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"post"|"mid": [layers, seq, vocab] probabilities, "logits": the model's own} by hand."""
    kind = model.config.model_type
    mids: list[torch.Tensor] = []
    last: list[torch.Tensor] = []
    hooks = [
        getattr(block, MID_NORM[kind]).register_forward_pre_hook(
            lambda _m, args: mids.append(args[0][0].detach())
        )
        for block in _blocks(model)
    ]
    final = model.transformer.ln_f if kind == "gpt2" else model.model.norm
    hooks.append(final.register_forward_pre_hook(lambda _m, args: last.append(args[0][0])))
    try:
        with torch.no_grad():
            out = model(input_ids=ids[None], output_hidden_states=True, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    # hidden_states[l + 1] is block l's output, except the last entry, which is already normed
    posts = [h[0] for h in out.hidden_states[1:-1]] + last
    weight = model.get_output_embeddings().weight
    cap = getattr(model.config, "final_logit_softcapping", None)

    def decode(states: list[torch.Tensor]) -> torch.Tensor:
        logits = _final_norm(model, torch.stack(states)) @ weight.T
        if cap:
            logits = torch.tanh(logits / cap) * cap
        # float64: torch's float32 softmax is itself ~1e-5 off near p = 1 (the lens is closer)
        return torch.softmax(logits.double(), dim=-1).float()

    return {"post": decode(posts), "mid": decode(mids), "logits": out.logits[0]}


def assert_lens_matches(result: LensResult, probs: torch.Tensor) -> None:
    """Our top-k equals a full sort of the reference (ids compared through their probabilities,
    so two tokens tied to float rounding may swap places)."""
    probs = probs[:, result.positions]
    ref_top = probs.sort(dim=-1, descending=True).values[..., : result.top_k]
    torch.testing.assert_close(result.probs, ref_top, atol=2e-6, rtol=1e-4)
    torch.testing.assert_close(
        probs.gather(-1, result.token_ids), result.probs, atol=2e-6, rtol=1e-4
    )


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2"])
@pytest.mark.parametrize("stage", ["post", "mid"])
def test_every_layer_matches_hand_computation(family, stage):
    ins = tiny_inspector(family)
    ids = tiny_ids(18)
    trace = ins.run(ids)
    ref = reference(ins.model, ids)
    result = logit_lens(trace, top_k=7, stage=stage, targets=[5, 77])
    assert result.token_ids.shape == (trace.n_layers, 18, 7)
    assert result.probs.dtype == torch.float32 and result.token_ids.dtype == torch.long
    assert_lens_matches(result, ref[stage])
    # targets: probability and rank among the whole vocabulary (0 = top)
    torch.testing.assert_close(result.target_probs, ref[stage][..., [5, 77]], atol=2e-6, rtol=1e-4)
    t_probs = ref[stage][..., [5, 77]]  # [L, seq, 2]
    ref_rank = (ref[stage].unsqueeze(-2) > t_probs.unsqueeze(-1)).sum(-1)
    assert (result.target_ranks - ref_rank).abs().max() <= 1  # float ties only
    assert (result.target_ranks == ref_rank).float().mean() > 0.95


def test_softcap_is_applied_once_in_gemma2():
    ins = tiny_inspector("gemma2")
    trace = ins.run(tiny_ids(10))
    result = logit_lens(trace, top_k=3, positions=-1)
    logits = trace.logits[-1].float()
    assert logits.abs().max() <= 15.0  # the model's own output is capped at 15
    torch.testing.assert_close(
        result.probs[-1, 0], logits.double().softmax(-1).float().topk(3).values
    )


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_last_post_row_is_the_models_prediction(family):
    trace = tiny_inspector(family).run(tiny_ids(16))
    result = logit_lens(trace, top_k=4)
    own_p = torch.softmax(trace.logits.double(), dim=-1).float()
    own = own_p.topk(4)
    torch.testing.assert_close(result.probs[-1], own.values, atol=1e-6, rtol=1e-5)
    own_p_at_ours = own_p.gather(-1, result.token_ids[-1])
    torch.testing.assert_close(own_p_at_ours, result.probs[-1], atol=1e-6, rtol=1e-5)


def test_chunking_and_position_subsets_do_not_change_numbers():
    trace = tiny_inspector("llama").run(tiny_ids(21))
    for stage in ("mid", "post"):  # post: the last layer's rows are read, in chunks of their own
        full = logit_lens(trace, top_k=5, stage=stage, targets=9)
        for rows in (1, 7, 20, 64, 1000):  # chunks inside a layer, across layers, all at once
            chunked = logit_lens(trace, top_k=5, stage=stage, targets=9, chunk_rows=rows)
            assert torch.equal(chunked.token_ids, full.token_ids)
            torch.testing.assert_close(chunked.probs, full.probs)
            assert torch.equal(chunked.target_ranks, full.target_ranks)
        if stage == "post":  # the last row is the model's own prediction, bitwise
            assert torch.equal(full.token_ids[-1], trace.logits.topk(5, dim=-1).indices)
    full = logit_lens(trace, top_k=5, stage="mid", targets=9)
    some = logit_lens(trace, top_k=5, stage="mid", positions=[20, 3, -1])
    assert some.positions == [20, 3, 20]
    assert torch.equal(some.token_ids, full.token_ids[:, [20, 3, 20]])
    one = logit_lens(trace, top_k=5, stage="mid", positions=4)
    assert one.token_ids.shape == (3, 1, 5) and torch.equal(
        one.token_ids[:, 0], full.token_ids[:, 4]
    )


def test_distribution_is_the_full_row_of_the_lens():
    trace = tiny_inspector("gpt2").run(tiny_ids(9))
    result = logit_lens(trace, top_k=3, stage="mid", positions=[6])
    dist = distribution(trace, layer=1, position=6, stage="mid")
    assert dist.shape == (320,)
    torch.testing.assert_close(dist.sum(), torch.tensor(1.0))
    torch.testing.assert_close(dist.topk(3).values, result.probs[1, 0])


def test_token_strings_without_a_tokenizer_name_the_ids():
    trace = tiny_inspector("llama").run(tiny_ids(5))
    result = logit_lens(trace, top_k=2, positions=0, targets=[3])
    assert result.tokens[0][0] == [f"#{i}" for i in result.token_ids[0, 0].tolist()]
    assert result.target_tokens == ["#3"]
    assert set(result.token_strings) == {*result.token_ids.flatten().tolist(), 3}


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"top_k": 0}, OutOfRangeError, "1..320"),
        ({"top_k": 321}, OutOfRangeError, "1..320"),
        ({"top_k": 2.5}, InputError, "integer"),
        ({"positions": 8}, OutOfRangeError, "0..7"),
        ({"positions": [1, -9]}, OutOfRangeError, "0..7"),
        ({"positions": []}, OutOfRangeError, "empty"),
        ({"stage": "pre"}, InputError, "post, mid"),
        ({"targets": " Warsaw"}, InputError, "tokenizer"),
        ({"targets": [-1]}, OutOfRangeError, "0..319"),
        ({"targets": [320]}, OutOfRangeError, "0..319"),
        ({"chunk_rows": 0}, OutOfRangeError, ">= 1"),
    ],
)
def test_bad_input_names_the_valid_range(kwargs, error, words):
    trace = tiny_inspector("llama").run(tiny_ids(8))
    with pytest.raises(error, match=words):
        logit_lens(trace, **kwargs)
    assert issubclass(error, ValueError)


@pytest.mark.real_model
@pytest.mark.parametrize("stage", ["post", "mid"])
def test_real_model_every_layer_and_target(stage):
    ins = default_inspector()
    text = "Q: What is the capital of France?\nA: Paris\nQ: What is the capital of Poland?\nA:"
    trace = ins.run(text)
    ref = reference(default_eager_model(), trace.input_ids)
    result = logit_lens(
        trace, top_k=5, stage=stage, targets=[" Warsaw", 1], tokenizer=ins.tokenizer
    )
    assert_lens_matches(result, ref[stage])
    warsaw = ins.tokenizer(" Warsaw", add_special_tokens=False)["input_ids"][0]
    assert result.targets == [warsaw, 1] and result.target_tokens[0] == "·Warsaw"
    torch.testing.assert_close(
        result.target_probs, ref[stage][..., [warsaw, 1]], atol=2e-6, rtol=1e-4
    )
    if stage == "post":
        # the last row is what the model itself predicts, and " Warsaw" is in its top 5
        own = trace.logits.double().softmax(-1).float().topk(5)
        torch.testing.assert_close(result.probs[-1], own.values, atol=1e-6, rtol=1e-5)
        eager = (
            ref["logits"].double().softmax(-1).float().topk(5)
        )  # eager vs SDPA attention rounding
        torch.testing.assert_close(result.probs[-1], eager.values, atol=5e-5, rtol=1e-4)
        assert result.target_ranks[-1, -1, 0] < 5
        decoded = ins.tokenizer.batch_decode(result.token_ids[-1, -1, :, None])
        assert [s.replace(" ", "·") for s in decoded] == result.tokens[-1][-1]
        assert token_strings(ins.tokenizer, [warsaw]) == ["·Warsaw"]
