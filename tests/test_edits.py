"""Edits on a run (Ablate, Patch) and patching sweeps, against hand-written hooks on every tiny
family and on the real default model."""

import pytest
import torch

import lmscope
from _models import (
    TINY_FAMILIES,
    default_inspector,
    hook_snapshot,
    tiny_ids,
    tiny_inspector,
    tiny_model,
)
from lmscope import edits, suffix
from lmscope.errors import InputError, OutOfRangeError
from lmscope.sweeps import metric_of

ATOL = 5e-5
DIFF = 5  # the one position where the tiny prompts differ
SLIDING = {"mistral", "gemma2"}  # tiny configs with a window (8) shorter than the prompts


def _pair(n=12):
    clean = tiny_ids(n, seed=1)
    corrupted = clean.clone()
    corrupted[DIFF] = (clean[DIFF] + 17) % 300 + 3
    return clean, corrupted


def _answer_foil(trace):
    top = trace.logits[-1].topk(2).indices.tolist()
    return top[0], top[1]


def _run_with(model, ids, hooks):
    """A plain forward with the test's own hooks, removed afterwards: the independent reference."""
    handles = [register(fn) for register, fn in hooks]
    try:
        with torch.no_grad():
            return model(input_ids=ids[None], use_cache=False, output_attentions=False)
    finally:
        for handle in handles:
            handle.remove()


def _head_dim(model, ins):
    config = model.config
    return getattr(config, "head_dim", None) or config.hidden_size // ins.n_heads


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def family(request):
    return request.param


def test_residual_patch_at_the_differing_position_restores_clean_exactly(family):
    ins = tiny_inspector(family)
    clean, corrupted = _pair()
    answer, foil = _answer_foil(ins.run(clean))
    before = hook_snapshot(ins.model)
    result = lmscope.patching(
        ins, clean, corrupted, answer=answer, foil=foil, layers=[0], progress=False
    )
    assert hook_snapshot(ins.model) == before
    assert result.effect.shape == (1, 12)
    torch.testing.assert_close(result.effect[0, DIFF], torch.tensor(1.0), atol=1e-4, rtol=0)
    # before the difference the two prompts are the same text: patching changes nothing
    assert result.effect[0, :DIFF].abs().max() < 1e-4
    assert result.metric[0, DIFF] == pytest.approx(result.clean_metric, abs=1e-4)


def test_restoring_the_last_blocks_input_and_attention_at_the_last_position_gives_clean_logits(
    family,
):
    ins = tiny_inspector(family)
    clean_ids, corrupted = _pair()
    clean = ins.run(clean_ids)
    last = ins.n_layers - 1
    every = ins.run(corrupted, edits=[lmscope.Patch(source=clean, site="resid_pre", layer=last)])
    torch.testing.assert_close(every.logits, clean.logits, atol=ATOL, rtol=1e-4)
    # at one position, the last block still attends to corrupted positions unless its
    # attention output is restored too; then the last position is exactly the clean one
    one = [
        lmscope.Patch(source=clean, site=site, layer=last, position=-1)
        for site in ("resid_pre", "attn_out")
    ]
    patched = ins.run(corrupted, edits=one)
    torch.testing.assert_close(patched.logits[-1], clean.logits[-1], atol=ATOL, rtol=1e-4)
    assert not torch.allclose(patched.logits[-2], clean.logits[-2], atol=1e-3)


def test_zero_ablating_every_head_leaves_only_the_projection_bias(family):
    ins = tiny_inspector(family)
    model, layer, ids = ins.model, 1, tiny_ids(12)
    edited = ins.run(ids, edits=[lmscope.Ablate(layer, site="head")])
    proj = ins.parts.attn_projs[layer]
    bias = getattr(proj, "bias", None)

    def only_bias(_module, _args, out):
        return torch.zeros_like(out) if bias is None else torch.zeros_like(out) + bias

    ref = _run_with(model, ids, [(proj.register_forward_hook, only_bias)])
    torch.testing.assert_close(edited.logits, ref.logits[0], atol=ATOL, rtol=1e-4)
    if ins.parts.attn_outs[layer] is ins.parts.attentions[layer]:  # not Gemma 2's post-norm
        expected = torch.zeros_like(edited.attn_out(layer)) + (0 if bias is None else bias)
        torch.testing.assert_close(edited.attn_out(layer), expected, atol=1e-6, rtol=0)


def test_head_ablation_equals_a_hand_written_hook_at_the_projection_input(family):
    ins = tiny_inspector(family)
    model, layer, head, ids = ins.model, 2, 1, tiny_ids(12)
    width = _head_dim(model, ins)
    before = hook_snapshot(model)
    edited = ins.run(ids, edits=[lmscope.Ablate(layer, head=head, position=[3, -1])])
    assert hook_snapshot(model) == before

    def zero_head(_module, args):
        x = args[0].clone()
        x[:, [3, 11], head * width : (head + 1) * width] = 0
        return (x,)

    ref = _run_with(
        model, ids, [(ins.parts.attn_projs[layer].register_forward_pre_hook, zero_head)]
    )
    torch.testing.assert_close(edited.logits, ref.logits[0], atol=ATOL, rtol=1e-4)
    plain = ins.run(ids)
    assert not torch.allclose(edited.logits, plain.logits, atol=1e-4)
    # recomputed per-head outputs see the edit too; the other heads are untouched
    heads = edits.head_outputs(edited, layer)
    assert heads[[3, 11], head].abs().max() == 0
    torch.testing.assert_close(heads[:, head + 1], edits.head_outputs(plain, layer)[:, head + 1])


def test_mean_ablation_equals_a_hand_computed_mean(family):
    ins = tiny_inspector(family)
    model, layer, head = ins.model, 1, 2
    width = _head_dim(model, ins)
    texts = [tiny_ids(9, seed=s) for s in (3, 4, 5)]
    proj = ins.parts.attn_projs[layer]
    seen = []

    def grab(_module, args):
        seen.append(args[0][0, :, head * width : (head + 1) * width])

    for ids in texts:
        _run_with(model, ids, [(proj.register_forward_pre_hook, grab)])
    hand_mean = torch.cat(seen).mean(0)
    site_mean = lmscope.mean_activation(ins, texts, site="head", layer=layer)
    torch.testing.assert_close(site_mean[head], hand_mean, atol=1e-6, rtol=1e-5)

    def put_mean(_module, args):
        x = args[0].clone()
        x[..., head * width : (head + 1) * width] = hand_mean
        return (x,)

    ids = tiny_ids(12)
    ref = _run_with(model, ids, [(proj.register_forward_pre_hook, put_mean)])
    for mean in (texts, site_mean, site_mean[head]):  # texts, the site's mean, the head's row
        edited = ins.run(ids, edits=[lmscope.Ablate(layer, head=head, mode="mean", mean=mean)])
        torch.testing.assert_close(edited.logits, ref.logits[0], atol=ATOL, rtol=1e-4)


def test_neuron_ablation_equals_a_hand_written_hook(family):
    ins = tiny_inspector(family)
    model, layer, ids = ins.model, 0, tiny_ids(12)
    edited = ins.run(ids, edits=[lmscope.Ablate(layer, neuron=[4, 7])])

    def zero_neurons(_module, args):
        x = args[0].clone()
        x[..., [4, 7]] = 0
        return (x,)

    ref = _run_with(
        model, ids, [(ins.parts.mlp_downs[layer].register_forward_pre_hook, zero_neurons)]
    )
    torch.testing.assert_close(edited.logits, ref.logits[0], atol=ATOL, rtol=1e-4)
    assert edited.mlp_activations(layer)[:, [4, 7]].abs().max() == 0  # the trace sees the edit


@pytest.mark.parametrize("site", ["resid_pre", "attn_out", "mlp_out", "head"])
def test_batched_sweep_equals_one_patched_run_at_a_time(family, site):
    ins = tiny_inspector(family)
    clean, corrupted = _pair()
    answer, foil = _answer_foil(ins.run(clean))
    result = lmscope.patching(
        ins, clean, corrupted, answer=answer, foil=foil, site=site, batch_size=5, progress=False
    )
    columns = ins.n_heads if site == "head" else 12
    assert result.metric.shape == result.effect.shape == (ins.n_layers, columns)
    step = 3 if site == "head" else DIFF  # one run per cell is slow: every layer, a few columns
    for i, layer in enumerate(result.layers):
        for j in range(0, len(result.columns), step):
            column = result.columns[j]
            single = ins.run(corrupted, edits=[result.patch(layer, column)])
            alone = float(metric_of(single.logits[-1], answer, foil))
            assert result.metric[i, j] == pytest.approx(alone, abs=1e-4), (layer, column)
    if family in SLIDING:  # their caches keep only the window: whole prompts, said in words
        assert result.route == "whole prompt"
        assert "sliding window shorter than the prompt" in result.route_note
    else:
        assert (result.route, result.route_note) == ("prefix cache", "")
    # layer 0 before the difference (and after it, for the residual) writes the same values
    assert result.n_unchanged >= (0 if site == "head" else DIFF)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_prompts_differing_at_two_positions_batch_cells_of_several_starts(family):
    ins = tiny_inspector(family)
    clean, corrupted = _pair()
    corrupted[8] = (clean[8] + 29) % 300 + 3
    answer, foil = _answer_foil(ins.run(clean))
    result = lmscope.patching(
        ins, clean, corrupted, answer=answer, foil=foil, batch_size=4, progress=False
    )
    assert result.route == "prefix cache"
    for layer in range(ins.n_layers):
        for position in (DIFF, 7, 8, 11):
            single = ins.run(corrupted, edits=[result.patch(layer, position)])
            alone = float(metric_of(single.logits[-1], answer, foil))
            assert result.metric[layer, position] == pytest.approx(alone, abs=1e-4)


def test_sweep_of_an_edited_corrupted_run_keeps_its_edits_on_the_suffix(family):
    """The corrupted run's own edits, before and after the first patched position, move with
    the prompt's suffix: with the last block's attention output at the last position restored,
    patching the last block's input there gives back the clean metric exactly."""
    ins = tiny_inspector(family)
    clean_ids, corrupted_ids = _pair()
    clean = ins.run(clean_ids)
    answer, foil = _answer_foil(clean)
    last = ins.n_layers - 1
    corrupted = ins.run(
        corrupted_ids,
        edits=[
            lmscope.Patch(source=clean, site="attn_out", layer=last, position=-1),
            lmscope.Ablate(1, head=0, position=[2, 9]),
        ],
    )
    result = lmscope.patching(
        ins, clean, corrupted, answer=answer, foil=foil, layers=[1, last], progress=False
    )
    assert result.metric[1, -1] == pytest.approx(result.clean_metric, abs=1e-4)
    for layer, position in [(1, DIFF), (1, 10), (last, DIFF), (last, 11)]:
        single = ins.run(corrupted_ids, edits=[*corrupted.edits, result.patch(layer, position)])
        alone = float(metric_of(single.logits[-1], answer, foil))
        row = result.layers.index(layer)
        assert result.metric[row, position] == pytest.approx(alone, abs=1e-4), (layer, position)


def test_a_model_without_attention_sweeps_whole_prompts_and_says_why():
    import transformers as tf

    torch.manual_seed(0)
    config = tf.MambaConfig(vocab_size=320, hidden_size=64, num_hidden_layers=2, state_size=8)
    ins = lmscope.Inspector(tf.AutoModelForCausalLM.from_config(config).eval())
    clean, corrupted = _pair(10)
    answer, foil = _answer_foil(ins.run(clean))
    result = lmscope.patching(ins, clean, corrupted, answer=answer, foil=foil, progress=False)
    assert result.route == "whole prompt" and "no attention module" in result.route_note
    for layer, position in [(0, DIFF), (1, DIFF), (1, 8)]:
        single = ins.run(corrupted, edits=[result.patch(layer, position)])
        alone = float(metric_of(single.logits[-1], answer, foil))
        assert result.metric[layer, position] == pytest.approx(alone, abs=1e-4)


def test_a_prefix_cache_that_does_not_give_back_the_run_is_refused_in_words():
    ins = tiny_inspector("llama")
    corrupted = ins.run(_pair()[1])
    runner = suffix.SuffixRunner.prepare(ins, corrupted)
    assert runner.check(DIFF) is None
    runner.keys[1] = runner.keys[1] * 0.5  # another run's keys, say
    assert "logits" in runner.check(DIFF) and "away from the run's own" in runner.check(DIFF)
    assert "sliding window" in suffix.SuffixRunner.prepare(
        tiny_inspector("mistral"), tiny_inspector("mistral").run(_pair()[1])
    )


def test_edits_upstream_reach_recomputed_attention_patterns(family):
    ins = tiny_inspector(family)
    clean_ids, corrupted = _pair()
    clean = ins.run(clean_ids)
    edit = lmscope.Patch(source=clean, site="resid_pre", layer=0, position=DIFF)
    edited = ins.run(corrupted, edits=[edit])
    assert [e.label for e in edited.edits] == [repr(edit)] and "edited" in repr(edited)
    eager = tiny_model(family, "eager")
    blocks = lmscope.Inspector(eager).parts.blocks

    def patch_block_input(_module, args, kwargs):
        hidden = (args[0] if args else kwargs["hidden_states"]).clone()
        hidden[:, DIFF] = clean.resid_pre(0)[DIFF]
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    handle = blocks[0].register_forward_pre_hook(patch_block_input, with_kwargs=True)
    try:
        with torch.no_grad():
            ref = eager(input_ids=corrupted[None], output_attentions=True)
    finally:
        handle.remove()
    for layer in range(ins.n_layers):
        torch.testing.assert_close(
            edited.attention(layer), ref.attentions[layer][0], atol=1e-5, rtol=1e-4
        )
    # the patched position now reads as the clean one in every later pattern
    torch.testing.assert_close(edited.attention(2), clean.attention(2), atol=1e-5, rtol=1e-4)


def test_internals_recomputed_later_apply_the_runs_edits(family):
    kept = tiny_inspector(family)
    recompute = lmscope.Inspector(kept.model, trace_internals="recompute")
    ids = tiny_ids(12)
    plan = [lmscope.Ablate(1, head=[0, 2]), lmscope.Ablate(2, neuron=5, position=4)]
    stored, rerun = kept.run(ids, edits=plan), recompute.run(ids, edits=plan)
    assert stored.internals_kept and not rerun.internals_kept
    for layer in range(kept.n_layers):
        for name in ("attn_out", "mlp_out", "mlp_activations"):
            torch.testing.assert_close(
                getattr(rerun, name)(layer), getattr(stored, name)(layer), atol=1e-6, rtol=1e-5
            )
        torch.testing.assert_close(
            edits.head_outputs(rerun, layer), edits.head_outputs(stored, layer)
        )
    assert (
        rerun.mlp_activations(2)[4, 5] == 0 and edits.head_outputs(rerun, 1)[:, 2].abs().max() == 0
    )


def test_no_lmscope_hook_remains_after_a_failed_edited_run():
    ins = tiny_inspector("llama")
    model = ins.model
    before = hook_snapshot(model)

    def bomb(*_):
        raise RuntimeError("boom in block 2")

    handle = model.model.layers[2].register_forward_pre_hook(bomb)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            ins.run(tiny_ids(8), edits=[lmscope.Ablate(1, head=0), lmscope.Ablate(2, neuron=3)])
        clean, corrupted = _pair()
        with pytest.raises(RuntimeError, match="boom"):
            lmscope.patching(ins, clean, corrupted, answer=1, foil=2, progress=False)
    finally:
        handle.remove()
    assert hook_snapshot(model) == before
    with pytest.raises(OutOfRangeError, match="head 9 is out of range"):
        ins.run(tiny_ids(8), edits=[lmscope.Ablate(1, head=0), lmscope.Ablate(1, head=9)])
    assert hook_snapshot(model) == before
    assert ins.run(tiny_ids(8)).edits == ()


def test_generate_with_edits_continues_the_edited_run():
    ins = tiny_inspector("qwen2")
    prompt = tiny_ids(6)
    edit = lmscope.Ablate(0, site="attn_out", position=-1)  # the prompt's last position
    trace = ins.generate(prompt, max_new_tokens=5, edits=[edit])
    assert trace.edits[0].positions == (5,)
    steps = trace.logits[5:-1].argmax(-1)
    assert steps.tolist() == trace.input_ids[6:].tolist()  # each token the edited run's argmax
    plain = ins.generate(prompt, max_new_tokens=5)
    assert plain.edits == ()


def test_sweep_over_prompts_of_different_lengths_needs_an_alignment():
    ins = tiny_inspector("llama")
    clean = tiny_ids(10)
    corrupted = torch.cat([clean[:4], torch.tensor([99]), clean[4:]])  # one token inserted
    with pytest.raises(InputError, match=r"10 tokens and the corrupted one 11.*align="):
        lmscope.patching(ins, clean, corrupted, answer=1, foil=2, progress=False)
    align = [0, 1, 2, 3, None, 4, 5, 6, 7, 8, 9]
    result = lmscope.patching(
        ins, clean, corrupted, answer=1, foil=2, align=align, layers=[0], progress=False
    )
    assert torch.isnan(result.effect[0, 4]) and not torch.isnan(result.effect[0, 5:]).any()
    heads = lmscope.patching(
        ins, clean, corrupted, answer=1, foil=2, align=align, site="head", progress=False
    )
    single = ins.run(corrupted, edits=[heads.patch(1, 3)])
    assert heads.metric[1, 3] == pytest.approx(float(metric_of(single.logits[-1], 1, 2)), abs=1e-4)


def test_edits_refuse_bad_input_in_words():
    ins = tiny_inspector("gpt2")
    other = tiny_inspector("llama").run(tiny_ids(8))
    with pytest.raises(InputError, match="needs head=, neuron= or site="):
        lmscope.Ablate(1)
    with pytest.raises(InputError, match="mode='mean' needs mean="):
        lmscope.Ablate(1, head=0, mode="mean")
    with pytest.raises(InputError, match="unknown site"):
        lmscope.Patch(source=other, site="resid", layer=0)
    with pytest.raises(InputError, match="another model"):
        ins.run(tiny_ids(8), edits=[lmscope.Patch(source=other, site="resid_pre", layer=0)])
    own = ins.run(tiny_ids(6))
    with pytest.raises(InputError, match="source has 6 tokens and this run 8"):
        ins.run(tiny_ids(8), edits=[lmscope.Patch(source=own, site="resid_pre", layer=0)])
    with pytest.raises(InputError, match="expected the site's mean"):
        ins.run(tiny_ids(8), edits=[lmscope.Ablate(0, head=1, mode="mean", mean=torch.zeros(3))])
    with pytest.raises(InputError, match="no difference"):
        lmscope.patching(ins, tiny_ids(8), tiny_ids(8), answer=1, foil=2, progress=False)
    with pytest.raises(InputError, match="unknown sweep site"):
        lmscope.patching(ins, tiny_ids(8), tiny_ids(8), answer=1, site="mlp_neuron")


# -- the real default model --------------------------------------------------------------

CLEAN = "I flew to France last week and visited its capital,"
CORRUPTED = "I flew to Germany last week and visited its capital,"


@pytest.fixture(scope="module")
def real():
    return default_inspector()


@pytest.mark.real_model
def test_real_model_residual_patch_restores_the_clean_answer(real):
    clean = real.run(CLEAN)
    assert real.tokenizer.decode(clean.logits[-1].argmax()) == " Paris"
    diff = [
        i
        for i, (a, b) in enumerate(zip(clean.input_ids, real.encode(CORRUPTED), strict=True))
        if a != b
    ]
    assert diff == [3]
    result = lmscope.patching(
        real, clean, CORRUPTED, answer=" Paris", foil=" Berlin", layers=[0, 29], progress=False
    )
    assert result.corrupted_metric < 0 < result.clean_metric
    torch.testing.assert_close(result.effect[0, 3], torch.tensor(1.0), atol=1e-4, rtol=0)
    assert result.effect[0, :3].abs().max() < 1e-4
    assert result.route == "prefix cache"
    # one patched run at a time agrees with the batched sweep
    for layer, position in [(0, 3), (29, 10), (29, 3)]:
        single = real.run(CORRUPTED, edits=[result.patch(layer, position)])
        alone = float(metric_of(single.logits[-1], result.answer, result.foil))
        assert result.metric[result.layers.index(layer), position] == pytest.approx(alone, abs=1e-3)
    # with the last block's attention output at the last position restored in the corrupted
    # run, patching the last block's input there gives back the clean logits
    restored = real.run(
        CORRUPTED, edits=[lmscope.Patch(source=clean, site="attn_out", layer=29, position=-1)]
    )
    last = lmscope.patching(
        real, clean, restored, answer=" Paris", foil=" Berlin", layers=[29], progress=False
    )
    assert last.route == "prefix cache"
    assert last.metric[0, -1] == pytest.approx(result.clean_metric, abs=1e-4)


@pytest.mark.real_model
def test_real_model_head_ablation_equals_a_hand_written_hook(real):
    layer, head, width = 20, 4, 64
    edited = real.run(CLEAN, edits=[lmscope.Ablate(layer, head=head)])

    def zero_head(_module, args):
        x = args[0].clone()
        x[..., head * width : (head + 1) * width] = 0
        return (x,)

    ids = real.encode(CLEAN)
    ref = _run_with(
        real.model, ids, [(real.parts.attn_projs[layer].register_forward_pre_hook, zero_head)]
    )
    torch.testing.assert_close(edited.logits, ref.logits[0], atol=2e-4, rtol=1e-4)


def test_options_are_keywords_and_typos_name_the_closest_one():
    ins = tiny_inspector("llama")
    with pytest.raises(TypeError, match="did you mean 'head'"):
        lmscope.Ablate(1, haed=2)
    with pytest.raises(TypeError, match="keyword option"):
        lmscope.Ablate(1, 2)
    with pytest.raises(TypeError, match="did you mean 'foil'"):
        lmscope.patching(ins, tiny_ids(8), tiny_ids(8), answer=1, foils=2)


def test_patching_view_checks_values_from_the_browser_like_python():
    clean, corrupted = _pair()
    ins = tiny_inspector("llama")
    result = lmscope.patching(
        ins, clean, corrupted, answer=1, foil=2, layers=[0, 2], progress=False
    )
    view = lmscope.Patching(result, top_k=3)
    view.set_state({"layer": 1})  # not a layer of this sweep
    assert view.layer == -1 and "layer 1 is not in this sweep" in view.error
    with pytest.raises(OutOfRangeError, match="token 12 is not in this sweep"):
        view.token = 12
    view.set_state({"layer": 2, "token": DIFF})
    assert view.patch_label.startswith("Patch(site='resid_pre', layer=2, position=5")
    assert len(view.top_tokens[1]) == 3 and view.error == ""
    with pytest.raises(TypeError, match="did you mean 'top_k'"):
        lmscope.Patching(result, k=3)


def test_every_view_of_an_edited_trace_names_its_edits():
    ins = tiny_inspector("llama")
    edited = ins.run(tiny_ids(12), edits=[lmscope.Ablate(1, head=2)])
    plain = ins.run(tiny_ids(12))
    text = "edited: Ablate(1, head=2)"
    assert edited.edits_text == text
    for make in (lmscope.TokenView, lmscope.AttentionLines, lmscope.AttentionGrid):
        assert make(edited).edits == text and make(plain).edits == ""
    assert lmscope.LogitLens(edited).table.edits == text  # a composite: its first view
    assert lmscope.AttentionExplorer(edited).grid.edits == text
