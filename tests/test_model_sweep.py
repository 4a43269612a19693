"""A representative subset of `scripts/sweep_models.py` (the whole sweep writes docs/models.md),
one family per quirk, each checked against Hugging Face itself; plus what each quirk means."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import pytest
import torch

import lmscope
from lmscope.errors import UnsupportedArchitectureError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import sweep_models

# one family per quirk (the sweep checks every family the same way)
SUBSET = {
    "bloom": "attention outside the interface, ALiBi inside, residual added inside the modules",
    "falcon": "parallel residual, multi-query, adds attention to the MLP output in place",
    "gptj": "parallel residual with one shared norm",
    "cohere": "parallel residual and logit_scale",
    "gpt_neo": "attention outside the interface, local windows",
    "olmo2": "norms after the sub-layers",
    "gemma3_text": "per-layer sliding windows, post-norms, embedding scale",
    "granite": "residual, embedding and logit multipliers",
    "mixtral": "mixture-of-experts MLP",
    "gpt_oss": "attention sinks, MoE, sliding layers",
    "deepseek_v3": "latent attention (MLA), MoE",
    "mamba": "no attention",
    "jamba": "hybrid: Mamba and attention layers",
    "nemotron_h": "hybrid with MLP-only blocks (no token mixer)",
    "kimi_linear": "linear-attention layers declared by layer_types (no softmax pattern)",
    "minicpm3": "residual scale kept by each block",
    "hyperclovax": "logits multiplied (not divided) by logits_scaling",
    "modernbert-decoder": "a prediction head between the final norm and the unembedding",
    "mpt": "attention outside the interface reading its own boolean mask",
    "granitemoehybrid": "an MLP that is experts plus a shared MLP, Mamba layers, multipliers",
    "inkling_text": "a short convolution after each sub-layer is what is added; mup logit scale",
    "gemma4_text": "a per-layer-input branch added after the MLP's post-norm",
    "rwkv": "block 0 normalises its input first (pre_ln); a time mix, not attention",
}


@cache
def _result(model_type: str) -> dict:
    return sweep_models.check(model_type)


@pytest.mark.parametrize("model_type", sorted(SUBSET))
def test_family_is_exact_against_hugging_face(model_type):
    result = _result(model_type)
    assert result["status"] == "exact", result.get("why")


@cache
def _inspector(model_type: str) -> lmscope.Inspector:
    model, _, _ = sweep_models.build(model_type)
    return lmscope.Inspector(model)


def _ids(n: int = sweep_models.SEQ) -> torch.Tensor:
    return torch.randint(3, sweep_models.VOCAB, (n,), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("model_type", ["falcon", "gptj", "cohere"])
def test_parallel_residual_is_found_and_resid_mid_defined(model_type):
    ins = _inspector(model_type)
    assert ins.parts.parallel_residual
    trace = ins.run(_ids())
    # the MLP reads resid_pre there; resid_mid is resid_pre + attn_out, and the block adds both
    torch.testing.assert_close(
        trace.resid_mid(0) + trace.mlp_out(0), trace.resid_post(0), atol=5e-5, rtol=1e-4
    )


def test_post_norms_are_what_is_added():
    parts = _inspector("olmo2").parts
    block = parts.blocks[0]
    assert parts.attn_outs[0] is block.post_attention_layernorm
    assert parts.mlp_outs[0] is block.post_feedforward_layernorm
    assert not parts.parallel_residual


def test_bloom_adds_the_projection_not_the_module_output():
    parts = _inspector("bloom").parts
    assert parts.attn_outs[0] is parts.attn_projs[0]  # the module's output is already resid_mid
    assert parts.pattern_route[0] == "module"


def test_mixture_of_experts_routing_matches_the_router():
    ins = _inspector("mixtral")
    trace = ins.run(_ids())
    with torch.no_grad():
        ref = ins.model(input_ids=trace.input_ids[None], output_router_logits=True)
    k = ins.model.config.num_experts_per_tok
    for layer in range(trace.n_layers):
        chosen = trace.routed_experts(layer)
        assert chosen.shape == (trace.seq_len, k)
        expected = ref.router_logits[layer].topk(k, dim=-1).indices
        assert torch.equal(chosen.sort(-1).values, expected.sort(-1).values)
    with pytest.raises(UnsupportedArchitectureError, match="no single down projection"):
        trace.mlp_activations(0)


def test_each_layer_has_its_own_window():
    ins = _inspector("gemma3_text")
    types = ins.model.config.layer_types
    trace = ins.run(_ids())
    window = sweep_models.WINDOW
    for layer, kind in enumerate(types):
        row = trace.attention(layer)[:, 20]
        if kind == "sliding_attention":
            assert (row[:, : 20 - window + 1] == 0).all()
        else:
            assert (row[:, : 20 - window + 1] > 0).all()
    assert set(types) == {"sliding_attention", "full_attention"}


def test_attention_sinks_rows_sum_to_less_than_one_and_say_why():
    ins = _inspector("gpt_oss")
    trace = ins.run(_ids())
    rows = trace.attention(0).sum(-1)
    assert (rows < 1 - 1e-4).any() and (rows <= 1 + 1e-5).all()
    assert "sink" in ins.parts.attention_notes[0]
    # one head alone (the line diagram's probe) is that head of the whole layer
    fresh = ins.run(_ids())
    torch.testing.assert_close(fresh.head(0, 1), trace.attention(0)[1])


def test_scaled_residual_embedding_and_logits_are_part_of_the_decomposition():
    from transformers import GraniteConfig, GraniteForCausalLM

    torch.manual_seed(0)
    config = GraniteConfig(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        residual_multiplier=0.3,
        embedding_multiplier=4.0,
        logits_scaling=2.5,
        attention_multiplier=0.2,
        initializer_range=0.2,
    )
    model = GraniteForCausalLM(config).eval()
    ins = lmscope.Inspector(model)
    assert ins.parts.residual_scale == 0.3 and ins.parts.logit_scale == pytest.approx(1 / 2.5)
    assert not ins.parts.refused and not ins.parts.attention_refused
    trace = ins.run(_ids(16) % 320)
    with torch.no_grad():
        ref = model(input_ids=trace.input_ids[None], output_hidden_states=True)
    torch.testing.assert_close(trace.embeddings, ref.hidden_states[0][0])  # scaled embeddings
    for layer in range(2):
        torch.testing.assert_close(
            trace.resid_mid(layer) + trace.mlp_out(layer), trace.resid_post(layer)
        )
    torch.testing.assert_close(trace.unembed(trace.resid_post(1)), ref.logits[0])
    # attribution: each head's share is scaled like the layer's output, and the parts add up
    for position in (3, -1):
        att = trace.attribution(7, position=position)
        summed = att.embed + att.heads.sum() + att.attn_bias.sum() + att.mlps.sum() + att.rest
        assert float(summed) == pytest.approx(att.model_value, rel=1e-5, abs=1e-6)
        assert att.total == pytest.approx(float(ref.logits[0, position, 7]), rel=1e-5)
    # edits: a patched sub-layer output is the source's contribution, not scaled twice
    other = ins.run(trace.input_ids.flip(0))
    for site in ("attn_out", "mlp_out"):
        patched = ins.run(other.input_ids, edits=[lmscope.Patch(source=trace, site=site, layer=1)])
        torch.testing.assert_close(getattr(patched, site)(1), getattr(trace, site)(1))
    assert _inspector("cohere").parts.logit_scale == _inspector("cohere").model.config.logit_scale


def test_attention_free_model_refuses_attention_views_in_words():
    ins = _inspector("mamba")
    trace = ins.run(_ids())
    assert ins.parts.attention_layers == []
    with pytest.raises(
        UnsupportedArchitectureError, match=r"layer 0 has no attention \(MambaMixer"
    ):
        trace.attention(0)
    torch.testing.assert_close(trace.mlp_out(0), torch.zeros_like(trace.resid_pre(0)))
    # the residual stream, the lens and the norms still work
    assert trace.logit_lens(top_k=3).token_ids.shape[0] == trace.n_layers
    assert lmscope.log_norms(trace, stream="attn_out").shape[0] == trace.n_layers


def test_hybrid_lists_its_attention_layers():
    ins = _inspector("jamba")
    trace = ins.run(_ids())
    assert ins.parts.attention_layers == [1]
    with pytest.raises(UnsupportedArchitectureError, match="layers with attention: 1"):
        trace.attention(0)
    assert trace.attention(1).shape[-1] == trace.seq_len


def test_declared_linear_attention_layers_are_mixers_not_attention():
    ins = _inspector("kimi_linear")
    types = ins.model.config.layer_types
    assert ins.parts.attention_layers == [i for i, t in enumerate(types) if t == "full_attention"]
    linear = types.index("linear_attention")
    with pytest.raises(UnsupportedArchitectureError, match="declared 'linear_attention'"):
        ins.run(_ids()).attention(linear)


def test_mlp_only_block_adds_nothing_from_a_mixer():
    ins = _inspector("nemotron_h")
    kinds = ins.model.config.layers_block_type
    trace = ins.run(_ids())
    for layer, kind in enumerate(kinds):
        if kind in ("mlp", "moe"):
            torch.testing.assert_close(trace.attn_out(layer), torch.zeros_like(trace.embeddings))
            with pytest.raises(UnsupportedArchitectureError, match=r"an MLP .* only"):
                trace.attention(layer)
            break
    else:
        pytest.fail(f"no MLP-only block among {kinds}")


def test_multiplied_logit_scale_is_chosen_by_the_proof():
    ins = _inspector("hyperclovax")
    assert ins.parts.logit_scale == ins.model.config.logits_scaling  # MuP multiplies here
    assert _inspector("granite").parts.logit_scale == 1 / ins.model.config.logits_scaling


def test_prediction_head_is_part_of_the_unembedding_and_attribution_refuses_it():
    ins = _inspector("modernbert-decoder")
    trace = ins.run(_ids())
    with torch.no_grad():
        ref = ins.model(input_ids=trace.input_ids[None]).logits[0]
    torch.testing.assert_close(trace.unembed(trace.resid_post(trace.n_layers - 1)), ref)
    with pytest.raises(UnsupportedArchitectureError):  # a dense + activation is not a norm
        trace.attribution(5)


def test_skipping_the_proof_shows_only_the_stream_and_refuses_the_rest_in_words():
    """prove=False: the residual stream (hooked at the blocks) and what reads only it; the
    decomposition, the unembedding and patterns, which rest on choices the proof makes, are
    refused naming prove=False. Checked on a post-norm family, where the first candidate (the
    attention's own output) would be wrong."""
    model, _, _ = sweep_models.build("olmo2")
    ins = lmscope.Inspector(model, prove=False)
    ids = _ids(10)
    trace = ins.run(ids)
    with torch.no_grad():
        ref = model(input_ids=ids[None], output_hidden_states=True)
    for layer in range(trace.n_layers):
        torch.testing.assert_close(trace.resid_pre(layer), ref.hidden_states[layer][0])
    assert lmscope.log_norms(trace, stream="resid_pre").shape[0] == trace.n_layers
    for refused in (
        lambda: trace.attn_out(0),
        lambda: trace.resid_mid(0),
        lambda: trace.logit_lens(top_k=3),
        lambda: trace.attention(0),
        lambda: trace.attribution(5),
        lambda: ins.run(ids, edits=[lmscope.Ablate(0, site="attn_out")]),
        lambda: ins.run(ids, edits=[lmscope.Ablate(0, head=1)]),  # heads: as their patterns
    ):
        with pytest.raises(UnsupportedArchitectureError, match=r"prove=False"):
            refused()
    assert trace.logits is not None  # the model's own logits are the model's


def test_attention_views_say_why_rows_do_not_sum_to_one_and_which_layers_are_not_shown():
    from lmscope import attention

    sinks = _inspector("gpt_oss").run(_ids())
    lines = lmscope.AttentionLines(sinks, layer=0)
    assert "layer 0: rows sum to less than one" in lines.note and "sink" in lines.note
    grid = lmscope.AttentionGrid(sinks, by="head")
    assert "layers 0, 1: rows sum to less than one" in grid.note
    hybrid = _inspector("jamba").run(_ids())
    grid = lmscope.AttentionGrid(hybrid, by="head", layer=1)
    assert [tuple(c) for c in grid.cells] == [(1, 0)]  # only the layer with attention
    assert "not shown: layer 0 has no attention (JambaMambaMixer" in grid.note
    assert attention.notes(_inspector("llama").run(_ids()), range(2)) == ""
    lines = lmscope.AttentionLines(hybrid, layer=1)
    lines.layer = 0  # from the browser: refused in words under the view, lines unchanged
    assert "layer 0 has no attention" in lines.error and "layers with attention: 1" in lines.error


def test_a_side_that_adds_two_modules_is_their_sum_and_edits_refuse_it_in_words():
    ins = _inspector("granitemoehybrid")
    block = ins.parts.blocks[0]
    assert ins.parts.mlp_outs[0] == (block.block_sparse_moe, block.shared_mlp)
    trace = ins.run(_ids())
    torch.testing.assert_close(
        trace.resid_mid(0) + trace.mlp_out(0), trace.resid_post(0), atol=5e-5, rtol=1e-4
    )
    with pytest.raises(UnsupportedArchitectureError, match="sum of two modules' outputs"):
        ins.run(_ids(), edits=[lmscope.Patch(source=trace, site="mlp_out", layer=0)])


def test_a_module_reading_the_sub_layer_output_is_what_is_added():
    ins = _inspector("inkling_text")
    block = ins.parts.blocks[0]
    assert ins.parts.attn_outs[0] is block.attn_sconv and ins.parts.mlp_outs[0] is block.mlp_sconv
    trace = ins.run(_ids())
    with pytest.raises(UnsupportedArchitectureError):  # a convolution is not a norm to freeze
        trace.attribution(5)


def test_a_branch_after_the_mlp_post_norm_is_part_of_the_mlp_side():
    ins = _inspector("gemma4_text")
    block = ins.parts.blocks[0]
    # Gemma 4 adds its per-layer-input branch (gate, projection, norm) after the MLP's
    assert ins.parts.mlp_outs[0] == (
        block.post_feedforward_layernorm,
        block.post_per_layer_input_norm,
    )
    assert "post_per_layer_input_norm" in ins.parts.contribution_notes[("mlp", 0)]
    trace = ins.run(_ids())
    for layer in range(trace.n_layers):
        torch.testing.assert_close(
            trace.resid_mid(layer) + trace.mlp_out(layer),
            trace.resid_post(layer),
            atol=5e-5,
            rtol=1e-4,
        )
    result = trace.attribution(
        5
    )  # checks embeddings + every attn/MLP output == last block's output
    assert abs(result.unexplained) < 1e-3 * max(1.0, abs(result.total))


def test_rwkv_stream_starts_at_block_0_pre_ln_and_its_time_mix_is_not_attention():
    ins = _inspector("rwkv")
    parts = ins.parts
    assert parts.stream_entry is parts.blocks[0].pre_ln
    assert parts.attention_layers == []
    with pytest.raises(UnsupportedArchitectureError, match="RwkvSelfAttention mixes tokens"):
        parts.check_attention(0)
    ids, other = _ids(), _ids(8).repeat(3)
    trace = ins.run(ids)
    assert parts.hidden_states_are == "outputs"  # RWKV lists block outputs, not embeddings
    with torch.no_grad():
        ref = ins.model(input_ids=ids[None], output_hidden_states=True)
        entered = parts.blocks[0].pre_ln(ins.model.get_input_embeddings()(ids))
    torch.testing.assert_close(trace.embeddings, entered)
    torch.testing.assert_close(trace.resid_post(0), ref.hidden_states[0][0])
    # an edit of resid_pre 0 replaces the stream after pre_ln: patching all of it is the source
    source = ins.run(other)
    patched = ins.run(ids, edits=[lmscope.Patch(source=source, site="resid_pre", layer=0)])
    torch.testing.assert_close(patched.logits, source.logits, atol=5e-5, rtol=1e-4)


def test_rwkv_rescale_every_is_refused_naming_it_and_is_exact_without_it():
    """Real RWKV checkpoints set rescale_every: in inference mode the model halves the stream
    after every N blocks, outside them. The refusal says so (not that block 0's input is wrong),
    and the same weights loaded with rescale_every=0 are exact, with the same logits."""
    from transformers import AutoModelForCausalLM

    config = sweep_models.tiny_config("rwkv")
    config.num_hidden_layers, config.rescale_every = 4, 2
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    plain = AutoModelForCausalLM.from_config(
        config.__class__(**{**config.to_dict(), "rescale_every": 0})
    )
    plain.load_state_dict(model.state_dict())  # before the first eval forward divides weights
    ids = _ids()
    with torch.no_grad():
        rescaled_logits = model(input_ids=ids[None]).logits[0]
    # the stream is halved after blocks 1 and 3 (of 0..3): what the message names
    with pytest.raises(UnsupportedArchitectureError) as refused:
        lmscope.Inspector(model)
    message = str(refused.value)
    assert "rescale_every=2" in message and "halves its residual stream" in message
    assert "block 2's input is 0.5 x block 1's output" in message
    assert "rescale_every=0" in message and "block 0" not in message

    ins = lmscope.Inspector(plain.eval())
    trace = ins.run(ids)
    assert ins.parts.refused == {}
    # LayerNorm is scale-invariant up to its eps: the halving changes the logits only by that
    torch.testing.assert_close(trace.logits, rescaled_logits, atol=1e-4, rtol=1e-4)
    # the stream is the embeddings plus every block's time mix and channel mix, exactly
    total = trace.embeddings + sum(trace.attn_out(i) + trace.mlp_out(i) for i in range(4))
    torch.testing.assert_close(total, trace.resid_post(3), atol=1e-5, rtol=1e-5)
