"""Direct logit attribution: the parts add up to the model's own logit, on every family, and
agree with a hand computation from Hugging Face's modules (norm formulas written out here)."""

import copy
import dataclasses
from functools import cache

import pytest
import torch
from torch import nn

import lmscope
from _models import (
    TINY_FAMILIES,
    default_eager_model,
    default_inspector,
    hook_snapshot,
    tiny_ids,
    tiny_model,
)
from lmscope import capture
from lmscope.errors import InputError, OutOfRangeError, UnsupportedArchitectureError

ATOL = 5e-5
POSITIONS = (-1, 0, 11)
TARGET, FOIL = 11, 7


def close_enough(value: float, want: float) -> bool:
    """The issue's bound: 1e-3 relative (absolute below a logit of 1)."""
    return abs(value - want) <= 1e-3 * max(1.0, abs(want))


@cache
def perturbed_model(family: str) -> nn.Module:
    """The tiny model with random norm gains and biases (their init is 1 and 0, or 0 for Gemma's
    1 + weight, which would hide a mistaken gain) and, for GPT-2, an unembedding bias."""
    model = copy.deepcopy(tiny_model(family))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, module in model.named_modules():
            if "norm" in type(module).__name__.lower() or name.split(".")[-1].startswith("ln"):
                for kind, param in module.named_parameters(recurse=False):
                    noise = torch.rand(param.shape, generator=gen)
                    param.copy_(0.6 + 0.8 * noise if kind == "weight" else noise - 0.5)
        for proj in lmscope.architectures.resolve(model).attn_projs:
            if getattr(proj, "bias", None) is not None:  # GPT-2 and GPT-NeoX init it to 0
                proj.bias.copy_(torch.rand(proj.bias.shape, generator=gen) - 0.5)
        if family == "gpt2":
            vocab = model.lm_head.out_features
            model.lm_head.bias = nn.Parameter(torch.randn(vocab, generator=gen))
    return model


@cache
def family_trace(family: str) -> lmscope.Trace:
    return lmscope.Inspector(perturbed_model(family)).run(tiny_ids(24))


def parts_sum(result) -> float:
    return float(
        result.embed
        + result.rest
        + result.heads.double().sum()
        + result.attn_bias.double().sum()
        + result.mlps.double().sum()
    )


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_probe_rows_give_the_output_projection_input(family):
    """One query row through the probe is that row of what the model fed its output projection."""
    ins = lmscope.Inspector(tiny_model(family))
    parts, layer, seen = ins.parts, 1, {}
    handle = parts.attn_projs[layer].register_forward_pre_hook(
        lambda _m, args: seen.update(z=args[0][0])
    )
    try:
        trace = ins.run(tiny_ids(20))
    finally:
        handle.remove()
    call = trace._rec.attn_call[layer]
    for row in (0, 7, 19):
        sink = capture.probe(parts.attentions[layer], call, rows=[row])
        assert sink["weights"].shape[-2:] == (1, 20)
        torch.testing.assert_close(
            sink["output"][0, 0].flatten(), seen["z"][row], atol=ATOL, rtol=1e-4
        )
    head = parts.n_heads - 1
    sink = capture.probe(parts.attentions[layer], call, heads=[head], rows=[19])
    torch.testing.assert_close(sink["weights"][0, 0, 0], trace.head(layer, head)[19])


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_parts_add_up_to_the_models_logit(family):
    trace = family_trace(family)
    model = perturbed_model(family)
    with torch.no_grad():
        ref = model(input_ids=trace.input_ids[None]).logits[0]
    cap = model.config.get_text_config().to_dict().get("final_logit_softcapping")
    before = hook_snapshot(model)
    for position in POSITIONS:
        for foil in (None, FOIL):
            result = trace.attribution(TARGET, position=position, foil=foil)
            want = ref[position, TARGET] - (0 if foil is None else ref[position, foil])
            assert close_enough(result.model_value, float(want))
            if cap:  # the attributed logit is the one before the cap, and says so
                assert "before the final soft-cap" in result.attributed
                capped = cap * torch.tanh(torch.tensor([result.total, 0.0]) / cap)
                if foil is None:
                    assert close_enough(float(capped[0]), float(want))
            else:
                assert close_enough(result.total, float(want))
            assert close_enough(parts_sum(result), result.total)
            assert abs(result.unexplained) < 1e-4
            assert result.heads.shape == (trace.n_layers, trace.n_heads)
            assert result.heads.device.type == "cpu"
            torch.testing.assert_close(
                result.resid[-1], torch.tensor(result.total), atol=1e-4, rtol=1e-4
            )
    assert hook_snapshot(model) == before


def _hand_norm(family: str, module: nn.Module, x: torch.Tensor):
    """(linear part, bias) of one norm frozen at x, from the family's formula written out
    (families the tests do not know by name: a LayerNorm by type, else Llama's RMSNorm)."""
    if family in ("gpt2", "gpt_neox") or isinstance(module, nn.LayerNorm):
        center, gain, eps, bias = True, module.weight, module.eps, module.bias
    elif family == "gemma2" or "gemma" in type(module).__name__.lower():
        center, gain, eps, bias = False, 1 + module.weight, module.eps, None
    else:
        eps = getattr(module, "variance_epsilon", None) or module.eps
        center, gain, bias = False, module.weight, None
    xc = x - x.mean() if center else x
    inv = 1 / torch.sqrt((xc * xc).mean() + eps)
    return (lambda v: ((v - v.mean()) if center else v) * inv * gain), (
        torch.zeros_like(x) if bias is None else bias
    )


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_agrees_with_a_hand_computation_from_the_models_modules(family):
    """Hooks on Hugging Face's own modules, the norm formulas above, one dot product per head."""
    trace = family_trace(family)
    model = perturbed_model(family)
    parts = lmscope.Inspector(model).parts
    seen: dict = {}
    hooks = [parts.final_norm.register_forward_pre_hook(lambda _m, a: seen.update(x=a[0][0]))]
    for layer in range(trace.n_layers):
        hooks.append(
            parts.attn_projs[layer].register_forward_hook(
                lambda _m, a, out, layer=layer: seen.update(
                    {("z", layer): a[0][0], ("o", layer): out[0]}
                )
            )
        )
        hooks.append(
            parts.mlp_outs[layer].register_forward_hook(
                lambda _m, _a, out, layer=layer: seen.update({("mlp", layer): out[0]})
            )
        )
    try:
        with torch.no_grad():
            out = model(input_ids=trace.input_ids[None], output_hidden_states=True)
    finally:
        for hook in hooks:
            hook.remove()
    unembed = model.get_output_embeddings()
    with torch.no_grad():  # the hand computation multiplies parameters
        for position in (-1, 5):
            result = trace.attribution(TARGET, position=position, foil=FOIL)
            readout = unembed.weight[TARGET] - unembed.weight[FOIL]
            final, final_bias = _hand_norm(family, parts.final_norm, seen["x"][position])
            b_u = 0.0 if unembed.bias is None else float(unembed.bias[TARGET] - unembed.bias[FOIL])

            def share(v, readout=readout, final=final) -> float:
                return float(readout @ final(v))

            assert result.embed == pytest.approx(share(out.hidden_states[0][0, position]), abs=1e-4)
            assert result.rest == pytest.approx(float(readout @ final_bias) + b_u, abs=1e-4)
            for layer in range(trace.n_layers):
                z = seen["z", layer][position].unflatten(-1, (trace.n_heads, -1))
                weight = parts.attn_proj_weight(layer).unflatten(1, (trace.n_heads, -1))
                per_head = torch.einsum("hd,mhd->hm", z, weight)  # each head through its columns
                if parts.attn_outs[layer] is not parts.attentions[layer]:  # Gemma 2's post-norm
                    post, _ = _hand_norm(family, parts.attn_outs[layer], seen["o", layer][position])
                    per_head = torch.stack([post(v) for v in per_head])
                hand = torch.tensor([share(v) for v in per_head])
                torch.testing.assert_close(result.heads[layer], hand, atol=1e-4, rtol=1e-4)
                bias = parts.attn_proj_bias(layer)  # Gemma 2's has none (and its post-norm no bias)
                hand_bias = 0.0 if bias is None else share(bias)
                assert float(result.attn_bias[layer]) == pytest.approx(hand_bias, abs=1e-4)
                assert float(result.mlps[layer]) == pytest.approx(
                    share(seen["mlp", layer][position]), abs=1e-4
                )


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_heads_plus_bias_are_the_attention_share_and_sources_sum_to_a_head(family):
    """Heads (read at the projection's input) plus the bias equal the share of the attention
    output the run recorded (read through the final norm written out by hand); the layer
    totals and the running residual agree with them."""
    trace = family_trace(family)
    result = trace.attribution(TARGET, position=-1, foil=FOIL)
    unembed = trace.parts.unembed
    readout = (unembed.weight[TARGET] - unembed.weight[FOIL]).detach()
    final, _ = _hand_norm(family, trace.parts.final_norm, trace.resid_post(trace.n_layers - 1)[-1])
    with torch.no_grad():
        for layer in range(trace.n_layers):
            recorded = float(readout @ final(trace.attn_out(layer)[-1]))
            from_heads = float(result.heads[layer].sum() + result.attn_bias[layer])
            assert from_heads == pytest.approx(recorded, abs=1e-4)
            assert float(result.attn[layer]) == pytest.approx(from_heads, abs=1e-5)
            step = result.resid[layer] - (
                result.resid[layer - 1] if layer else result.embed + result.rest
            )
            assert float(step) == pytest.approx(float(result.layers[layer]), abs=1e-4)
    probed = dataclasses.replace(result, _sources=None)  # each head from a probe of its own
    for layer in range(trace.n_layers):
        for head in range(trace.n_heads):
            sources = result.sources(layer, head)
            assert sources.shape == (trace.seq_len,)
            assert float(sources.sum()) == pytest.approx(float(result.heads[layer, head]), abs=1e-5)
            torch.testing.assert_close(sources, probed.sources(layer, head), atol=1e-6, rtol=1e-5)
    mid = trace.attribution(TARGET, position=11)
    assert (mid.sources(1, 0)[12:] == 0).all()  # causal: no key after the position


def _run_with_hook(model, module, hook) -> lmscope.Trace:
    """A run during which `hook` changes `module`'s output (gone again afterwards); added after
    the inspector is built, so the load-time proof does not see it."""
    ins = lmscope.Inspector(model)
    handle = module.register_forward_hook(hook)
    try:
        return ins.run(tiny_ids(24))
    finally:
        handle.remove()


def test_a_constant_logit_scale_is_found_and_included():
    model = tiny_model("llama")
    trace = _run_with_hook(model, model.lm_head, lambda _m, _a, out: out * 2.5)
    result = trace.attribution(TARGET, foil=FOIL)
    assert "logit scale (2.5)" in result.attributed
    assert close_enough(result.total, float(trace.logits[-1, TARGET] - trace.logits[-1, FOIL]))
    assert close_enough(parts_sum(result), result.total)


def test_logits_that_are_not_the_unembedding_are_refused():
    model = tiny_model("llama")
    trace = _run_with_hook(model, model.lm_head, lambda _m, _a, out: out + 0.1 * out**2)
    with pytest.raises(UnsupportedArchitectureError, match="logits are not its final norm"):
        trace.attribution(TARGET)


def test_a_residual_stream_that_is_not_the_sum_of_its_parts_is_refused():
    model = tiny_model("llama")
    block = model.model.layers[1]
    trace = _run_with_hook(model, block, lambda _m, _a, out: out + 1.0)  # a hidden steering add
    with pytest.raises(UnsupportedArchitectureError, match="block 1's output is not its input"):
        trace.attribution(TARGET)


class _TanhNorm(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x):
        return torch.tanh(x) * self.weight


def test_a_final_norm_that_is_neither_layernorm_nor_rmsnorm_is_refused():
    model = copy.deepcopy(tiny_model("llama"))
    model.model.norm = _TanhNorm(model.config.hidden_size)
    trace = lmscope.Inspector(model).run(tiny_ids(24))
    with pytest.raises(UnsupportedArchitectureError, match="does not behave like a RMSNorm"):
        trace.attribution(TARGET)


def test_bad_arguments_are_clear_errors():
    trace = family_trace("llama")
    with pytest.raises(InputError, match="same token"):
        trace.attribution(TARGET, foil=TARGET)
    with pytest.raises(InputError, match="one token at a time"):
        trace.attribution([TARGET, FOIL])
    with pytest.raises(OutOfRangeError, match="position 24 is out of range"):
        trace.attribution(TARGET, position=24)
    with pytest.raises(OutOfRangeError, match="negative"):
        trace.attribution(-3)
    with pytest.raises(InputError, match="no tokenizer"):
        trace.attribution(" Warsaw")
    with pytest.raises(TypeError):
        trace.attribution(TARGET, -1)  # position is keyword-only
    with pytest.raises(OutOfRangeError, match="head 4 is out of range"):
        trace.attribution(TARGET).sources(0, 4)


PROMPT = "Paris is the capital of France, and Warsaw is the capital of"


@pytest.fixture(scope="module")
def default_run():
    ins = default_inspector()
    return ins, ins.run(PROMPT)


def test_default_model_parts_add_up_and_agree_with_hugging_face(default_run):
    ins, trace = default_run
    eager = default_eager_model()
    seen: dict = {}
    proj = lmscope.Inspector(eager).parts.attn_projs
    hooks = [
        proj[layer].register_forward_pre_hook(
            lambda _m, a, layer=layer: seen.update({layer: a[0][0]})
        )
        for layer in (3, 17, 29)
    ]
    try:
        with torch.no_grad():
            ref = eager(input_ids=trace.input_ids[None])
    finally:
        for hook in hooks:
            hook.remove()
    poland, warsaw = (
        ins.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" Poland", " Warsaw")
    )
    assert int(ref.logits[0, -1].argmax()) == poland  # the model does answer " Poland"
    for position in (-1, 4, 9):
        for foil in (None, " Warsaw"):
            result = trace.attribution(" Poland", position=position, foil=foil)
            want = ref.logits[0, position, poland] - (
                0 if foil is None else ref.logits[0, position, warsaw]
            )
            assert close_enough(result.total, float(want))
            assert close_enough(parts_sum(result), result.total)
    result = trace.attribution(" Poland", foil=" Warsaw")
    assert result.target_token == "·Poland" and result.foil_token == "·Warsaw"
    # one dot product per head from Hugging Face's projection input and weights
    x = trace.resid_post(trace.n_layers - 1)[-1]
    norm = ins.parts.final_norm
    scale = norm.weight / torch.sqrt(x.pow(2).mean() + norm.variance_epsilon)
    readout = (ins.parts.unembed.weight[poland] - ins.parts.unembed.weight[warsaw]) * scale
    for layer, z in seen.items():
        weight = ins.parts.attn_proj_weight(layer).unflatten(1, (trace.n_heads, -1))
        hand = torch.einsum(
            "hd,mhd,m->h", z[-1].unflatten(-1, (trace.n_heads, -1)), weight, readout
        )
        torch.testing.assert_close(result.heads[layer], hand.detach(), atol=1e-4, rtol=1e-4)
    for head in (0, 4):
        assert float(result.sources(23, head).sum()) == pytest.approx(
            float(result.heads[23, head]), abs=1e-5
        )


def test_default_model_recomputed_trace_gives_the_kept_shares(default_run):
    """SmolLM2 (grouped-query attention, rotary): one position of each block against its keys
    and values gives the kept run's shares, with no block rerun over the prompt."""
    ins, kept = default_run
    recompute = lmscope.Inspector(ins.model, ins.tokenizer, trace_internals="recompute")
    trace = recompute.run(PROMPT)
    for position in (-1, 4):
        want = kept.attribution(" Poland", position=position, foil=" Warsaw")
        result = trace.attribution(" Poland", position=position, foil=" Warsaw")
        _same_shares(result, want)
        assert "rerun" not in result.route
    assert not trace._recomputed


def test_widget_syncs_the_shares_and_answers_a_head_selection():
    from lmscope.widgets.attribution import Attribution
    from lmscope.widgets.traits import WireArray

    trace = family_trace("gpt2")
    view = Attribution(trace, target=TARGET, foil=FOIL)
    result = trace.attribution(TARGET, foil=FOIL)
    torch.testing.assert_close(torch.tensor(WireArray.to_numpy(view.heads)), result.heads)
    assert WireArray.to_numpy(view.sources).size == 0  # nothing selected yet
    view.layer, view.head = 1, 2  # as the browser sets them
    sources = WireArray.to_numpy(view.sources)
    assert sources.sum() == pytest.approx(float(result.heads[1, 2]), abs=1e-5)
    view.attribute(FOIL, token=5, foil=None)  # one recomputation, another question
    assert (view.target, view.foil, view.token) == (FOIL, -1, 5)
    assert view.summary["total"] == pytest.approx(float(trace.logits[5, FOIL]), abs=1e-4)
    assert WireArray.to_numpy(view.sources).shape == (trace.seq_len,)
    assert view.synced_bytes() < 4096
    with pytest.raises(OutOfRangeError, match="head 99 is out of range"):
        view.head = 99
    with pytest.raises(TypeError):
        Attribution(trace, TARGET)  # options are keyword-only
    view.close()
    assert view.result is None and view.trace is None  # nothing pins the trace any more


def test_dashboard_links_attribution_to_the_lens_and_the_attention_views():
    from lmscope.widgets.dashboard import TABS, Dashboard

    trace = family_trace("llama")
    dash = Dashboard(trace, tab="Attribution")
    view = dash.views["Attribution"]
    assert view.can_open and view.token == trace.seq_len - 1
    assert view.target == int(trace.logits[-1].argmax())  # the model's own answer
    view.layer, view.head = 2, 3  # a click on a head, as the browser sets it
    assert (dash.selection.layer, dash.selection.head) == (2, 3)
    assert wire_sum(view.sources) == pytest.approx(float(view.result.heads[2, 3]), abs=1e-5)
    view.open_head += 1  # "open in attention view"
    assert TABS[dash.tabs.selected_index] == "Attention"
    lines = dash.views["Attention"].lines
    assert (lines.layer, lines.head) == (2, 3)
    dash.selection = {"token": 7}  # another view selects a token: attribution follows
    assert view.token == 7
    # a lens click (lens tab open) attributes that cell's top token at that position
    dash.tabs.selected_index = TABS.index("Logit lens")
    lens = dash.views["Logit lens"]
    with lens.table.hold_trait_notifications():
        lens.table.token, lens.table.layer = 5, 1
    top = int(lens.results["post"].token_ids[1, 5, 0])
    assert (view.token, view.target) == (5, top)
    assert view.summary["total"] == pytest.approx(float(trace.attribution(top, position=5).total))


def wire_sum(envelope) -> float:
    from lmscope.widgets.traits import WireArray

    return float(WireArray.to_numpy(envelope).sum())


def test_an_edited_run_is_attributed_as_it_ran():
    """A zero-ablated head has no share and the parts still add up; sources of the edited head
    are refused; an edit the parts cannot account for (an attention output) is refused."""
    ins = lmscope.Inspector(perturbed_model("llama"))
    trace = ins.run(tiny_ids(24), edits=[lmscope.Ablate(1, head=2)])
    result = trace.attribution(TARGET, foil=FOIL)
    assert float(result.heads[1, 2]) == 0.0
    assert close_enough(result.total, float(trace.logits[-1, TARGET] - trace.logits[-1, FOIL]))
    assert close_enough(parts_sum(result), result.total)
    with pytest.raises(InputError, match="was edited"):
        result.sources(1, 2)
    assert float(result.sources(1, 1).sum()) == pytest.approx(float(result.heads[1, 1]), abs=1e-5)
    edited = ins.run(tiny_ids(24), edits=[lmscope.Ablate(1, site="attn_out")])
    with pytest.raises(UnsupportedArchitectureError, match="this run was edited"):
        edited.attribution(TARGET)


def _same_shares(result, kept) -> None:
    for name in ("heads", "attn_bias", "mlps"):
        torch.testing.assert_close(getattr(result, name), getattr(kept, name), atol=1e-5, rtol=1e-4)
    for name in ("embed", "rest", "total"):
        assert getattr(result, name) == pytest.approx(getattr(kept, name), abs=1e-5)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_a_trace_that_recomputes_its_internals_gives_the_same_shares_without_a_block_rerun(family):
    """Each block run on the position alone against its layer's keys and values (sliding
    windows, soft-caps, post-norms, parallel residuals included) gives the kept run's shares,
    reruns no block over the prompt and leaves no hook behind."""
    model = perturbed_model(family)
    trace = lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids(24))
    assert not trace.internals_kept
    before = hook_snapshot(model)
    for position in POSITIONS:
        kept = family_trace(family).attribution(TARGET, position=position, foil=FOIL)
        result = trace.attribution(TARGET, position=position, foil=FOIL)
        _same_shares(result, kept)
        assert result.route.startswith("each block run on this position alone")
        assert "rerun" not in result.route
        assert abs(result.unexplained) < 1e-4
    assert not trace._recomputed  # no block was rerun over the whole prompt
    assert hook_snapshot(model) == before
    sources = result.sources(1, 0)
    assert float(sources.sum()) == pytest.approx(float(result.heads[1, 0]), abs=1e-5)


def test_a_block_its_one_position_run_does_not_reproduce_is_rerun_whole():
    """An MLP whose output depends on the other tokens (as an MoE with a capacity would) cannot
    be run on one position: that block's check fails, it is rerun over the prompt, and the
    shares are still the kept run's."""
    model = perturbed_model("llama")
    mlp = model.model.layers[1].mlp
    handle = mlp.register_forward_hook(lambda _m, _a, out: out + out.mean(dim=1, keepdim=True))
    try:
        kept = lmscope.Inspector(model, trace_internals="keep").run(tiny_ids(24))
        trace = lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids(24))
        want = kept.attribution(TARGET, foil=FOIL)
        result = trace.attribution(TARGET, foil=FOIL)
    finally:
        handle.remove()
    _same_shares(result, want)
    assert "blocks 1 rerun whole instead (block 1 run on position 23 alone" in result.route
    assert list(trace._recomputed) == [1]


def test_a_recomputed_edited_layer_is_rerun_whole_with_its_edit():
    model = perturbed_model("llama")
    edits = [lmscope.Ablate(1, head=2), lmscope.Ablate(2, neuron=[3, 5])]
    kept = lmscope.Inspector(model, trace_internals="keep").run(tiny_ids(24), edits=edits)
    trace = lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids(24), edits=edits)
    result = trace.attribution(TARGET, foil=FOIL)
    _same_shares(result, kept.attribution(TARGET, foil=FOIL))
    assert float(result.heads[1, 2]) == 0.0
    assert "blocks 1-2 rerun whole instead (this run edited layer 1" in result.route
    edited = lmscope.Inspector(model, trace_internals="recompute").run(
        tiny_ids(24), edits=[lmscope.Ablate(1, site="attn_out")]
    )
    with pytest.raises(UnsupportedArchitectureError, match="this run was edited"):
        edited.attribution(TARGET)


def test_a_bfloat16_model_adds_up_to_its_own_rounding():
    """The parts are summed in float32; the model's own bf16 logit is rounded to 8 bits of
    mantissa, so the bound is a few of its steps (~0.5%), not 1e-3."""
    model = copy.deepcopy(tiny_model("llama")).to(torch.bfloat16)
    trace = lmscope.Inspector(model).run(tiny_ids(24))
    result = trace.attribution(TARGET, foil=FOIL)
    assert result.heads.dtype == torch.float32
    assert abs(result.unexplained) <= 1e-2 * max(1.0, abs(result.total))
