"""Trace agrees with Hugging Face itself on a tiny random config of every supported family."""

import pytest
import torch

import lmscope
from _models import TINY_FAMILIES, hook_snapshot, tiny_ids, tiny_inspector, tiny_model
from lmscope.errors import UnsupportedArchitectureError

ATOL = 5e-5


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def family_run(request):
    family = request.param
    ins = tiny_inspector(family)
    trace = ins.run(tiny_ids(24))
    eager = tiny_model(family, "eager")
    with torch.inference_mode():
        ref = eager(
            input_ids=trace.input_ids[None], output_attentions=True, output_hidden_states=True
        )
    return family, ins, trace, ref


def test_residual_stream_equals_hidden_states(family_run):
    _, _, trace, ref = family_run
    for layer in range(trace.n_layers):
        torch.testing.assert_close(
            trace.resid_pre(layer), ref.hidden_states[layer][0], atol=ATOL, rtol=1e-4
        )
    torch.testing.assert_close(trace.embeddings, ref.hidden_states[0][0], atol=ATOL, rtol=1e-4)


def test_sublayer_decomposition(family_run):
    _, _, trace, _ = family_run
    for layer in range(trace.n_layers):
        torch.testing.assert_close(
            trace.resid_mid(layer), trace.resid_pre(layer) + trace.attn_out(layer)
        )
        torch.testing.assert_close(
            trace.resid_post(layer),
            trace.resid_mid(layer) + trace.mlp_out(layer),
            atol=ATOL,
            rtol=1e-4,
        )


def test_last_block_output_gives_final_hidden_state(family_run):
    _, _, trace, ref = family_run
    # HF's last hidden state has the final norm applied; ours is the block output before it
    normed = trace.parts.final_norm(trace.resid_post(trace.n_layers - 1))
    torch.testing.assert_close(normed, ref.hidden_states[-1][0], atol=ATOL, rtol=1e-4)


def test_attention_equals_eager_output_attentions(family_run):
    family, ins, trace, ref = family_run
    assert ins.model.config._attn_implementation == tiny_model(family).config._attn_implementation
    for layer in range(trace.n_layers):
        pattern = trace.attention(layer)
        assert pattern.shape == (trace.n_heads, 24, 24)
        torch.testing.assert_close(pattern, ref.attentions[layer][0], atol=1e-5, rtol=1e-4)


def test_one_head_recomputed_alone_equals_eager(family_run):
    _, ins, _, ref = family_run
    trace = ins.run(tiny_ids(24))  # fresh: no layer cached, so each head is recomputed alone
    trace.attention_cache_layers = 1
    before = hook_snapshot(ins.model)
    alone = {}
    for layer in range(trace.n_layers):
        for head in range(trace.n_heads):
            alone[layer, head] = trace.head(layer, head), trace.head_scores(layer, head)
            assert (layer, None) not in trace._patterns  # the subset path, not the whole layer
            torch.testing.assert_close(
                alone[layer, head][0], ref.attentions[layer][0, head], atol=1e-5, rtol=1e-4
            )
    # the cache holds at most `attention_cache_layers` layers' worth of heads
    assert sum(trace.n_heads if h is None else 1 for _, h in trace._patterns) <= trace.n_heads
    assert hook_snapshot(ins.model) == before
    trace.attention_cache_layers = trace.n_layers + 1  # room for all: only the swap removes heads
    for (layer, head), (_, scores) in alone.items():
        whole = trace.attention_scores(layer)[head]
        torch.testing.assert_close(scores, whole, atol=1e-5, rtol=1e-4)
        assert [h for at, h in trace._patterns if at == layer] == [None]  # no copies of its heads


def test_scores_softmax_to_pattern_and_mark_masked(family_run):
    _, _, trace, _ = family_run
    for layer in range(trace.n_layers):
        scores = trace.attention_scores(layer)
        assert torch.isneginf(scores[:, 0, 1:]).all()  # causal: the first query sees only itself
        torch.testing.assert_close(
            torch.softmax(scores, -1), trace.attention(layer), atol=1e-6, rtol=1e-5
        )


def test_logits_equal_model_logits(family_run):
    _, _, trace, ref = family_run
    torch.testing.assert_close(trace.logits, ref.logits[0], atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(
        trace.unembed(trace.resid_post(trace.n_layers - 1)), ref.logits[0], atol=ATOL, rtol=1e-4
    )


def test_mlp_activations_feed_the_down_projection(family_run):
    _, _, trace, _ = family_run
    down = trace.parts.mlp_downs[1]
    acts = trace.mlp_activations(1)
    assert acts.shape[0] == 24 and acts.shape[1] > trace.d_model
    if family_run[0] != "gemma2":  # gemma2's mlp_out is post-normed; checked by the decomposition
        torch.testing.assert_close(down(acts), trace.mlp_out(1), atol=ATOL, rtol=1e-4)


def test_output_projection_splits_into_heads(family_run):
    """The projection's input is every head side by side: per-head slices through their own
    columns of the weight, plus the bias, rebuild the projection's output."""
    _, ins, _, _ = family_run
    parts, layer, seen = ins.parts, 1, {}
    handle = parts.attn_projs[layer].register_forward_hook(
        lambda _m, args, out: seen.update(z=args[0][0], out=out[0])
    )
    try:
        with torch.no_grad():
            ins.model(input_ids=tiny_ids(12)[None])
    finally:
        handle.remove()
    weight, bias = parts.attn_proj_weight(layer), parts.attn_proj_bias(layer)
    head_dim = weight.shape[1] // parts.n_heads
    z = seen["z"].unflatten(-1, (parts.n_heads, head_dim))
    per_head = torch.einsum("shd,mhd->shm", z, weight.unflatten(1, (parts.n_heads, head_dim)))
    rebuilt = per_head.sum(1) + (0 if bias is None else bias)
    torch.testing.assert_close(rebuilt, seen["out"], atol=ATOL, rtol=1e-4)


def test_sliding_window_is_applied():
    trace = tiny_inspector("mistral").run(tiny_ids(24))
    pattern = trace.attention(0)
    window = 8
    assert (pattern[:, 20, : 20 - window + 1] == 0).all()
    assert (pattern[:, 20, 20 - window + 1 : 21] > 0).all()


def test_unsupported_architecture_names_the_problem():
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(
        BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    )
    with pytest.raises(UnsupportedArchitectureError, match="bert"):
        lmscope.Inspector(bert)


def test_wrong_layout_names_what_is_missing():
    layout = lmscope.Layout(final_norm="model.final_norm")
    with pytest.raises(UnsupportedArchitectureError, match=r"no final norm at 'model\.final_norm'"):
        lmscope.Inspector(tiny_model("llama"), layout=layout)
