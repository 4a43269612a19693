"""Models accelerate placed (a device map with disk offload, `cpu_offload`) are inspected exactly
like the same weights loaded plainly, and are left exactly as found."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
import transformers as tf
from accelerate import cpu_offload, dispatch_model

import lmscope
from _models import (
    TINY_CONFIGS,
    TINY_FAMILIES,
    default_inspector,
    hook_snapshot,
    tiny_ids,
    tiny_inspector,
)
from lmscope import architectures, lens, stats

ACCESSORS = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post", "mlp_activations")
PATTERNS = ("attention", "attention_scores")


def fresh_tiny(family: str) -> torch.nn.Module:
    """The weights of `_models.tiny_model(family)`, in a model of its own (dispatching adds hooks)."""
    torch.manual_seed(0)
    return tf.AutoModelForCausalLM.from_config(TINY_CONFIGS[family]()).eval()


def disk_map(model: torch.nn.Module) -> dict[str, str]:
    """Block 0 and everything outside the blocks on the CPU, the other blocks on disk."""
    parts = architectures.resolve(model, prove=False)
    blocks, n_blocks = parts.blocks_path, len(parts.blocks)
    device_map = {f"{blocks}.{i}": "cpu" if i == 0 else "disk" for i in range(n_blocks)}
    for name, _ in model.named_modules():
        inside = any(
            name == k or k.startswith(name + ".") or name.startswith(k + ".") for k in device_map
        )
        if name and not inside and name.count(".") <= blocks.count("."):
            device_map[name] = "cpu"
    return device_map


def dispatched_tiny(family: str, how: str, tmp_path) -> torch.nn.Module:
    model = fresh_tiny(family)
    if how == "disk":
        return dispatch_model(model, device_map=disk_map(model), offload_dir=str(tmp_path))
    cpu_offload(model, execution_device=torch.device("cpu"))
    return model


def assert_traces_equal(trace, reference, layers, heads=(0,)):
    assert torch.equal(trace.logits, reference.logits)
    for layer in layers:
        for name in ACCESSORS + PATTERNS:
            got, want = getattr(trace, name)(layer), getattr(reference, name)(layer)
            assert torch.equal(got, want), f"{name}({layer})"
        for head in heads:
            assert torch.equal(trace.head(layer, head), reference.head(layer, head))


def param_devices(model: torch.nn.Module) -> dict[str, torch.device]:
    return {name: p.device for name, p in model.named_parameters()}


@pytest.mark.parametrize("how", ["disk", "cpu_offload"])
@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_dispatched_tiny_model_is_inspected_like_the_plain_one(family, how, tmp_path, caplog):
    model = dispatched_tiny(family, how, tmp_path)
    assert any(p.device.type == "meta" for p in model.parameters())  # really offloaded
    hooks, devices = hook_snapshot(model), param_devices(model)
    plain = tiny_inspector(family).run(tiny_ids())
    caplog.clear()  # accelerate's own note about the offload, from dispatching
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")  # moving a dispatched model warns (or raises)
        ins = lmscope.Inspector(model)
        assert ins.device == torch.device("cpu")
        trace = ins.run(tiny_ids())
        assert_traces_equal(trace, plain, range(trace.n_layers), heads=range(trace.n_heads))
        for stage in lens.STAGES:
            got, want = (
                trace.logit_lens(top_k=3, stage=stage),
                plain.logit_lens(top_k=3, stage=stage),
            )
            assert torch.equal(got.token_ids, want.token_ids)
            assert torch.equal(got.probs, want.probs)
        for stream in lmscope.trace.VIEW_STREAMS:
            got, want = stats.log_norms(trace, stream=stream), stats.log_norms(plain, stream=stream)
            assert torch.equal(got, want)
        # attribution reads offloaded weights (output projections, final norm, unembedding)
        got, want = trace.attribution(5), plain.attribution(5)
        assert torch.equal(got.heads, want.heads) and torch.equal(got.mlps, want.mlps)
        assert got.total == want.total and got.rest == want.rest
        assert torch.equal(got.sources(1, 2), want.sources(1, 2))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert hook_snapshot(model) == hooks  # lmscope's hooks are gone
    assert param_devices(model) == devices  # offloaded weights went back where they were


def test_recomputed_internals_of_a_dispatched_model_equal_the_plain_ones(tmp_path):
    model = dispatched_tiny("llama", "disk", tmp_path)
    trace = lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids())
    assert not trace.internals_kept
    assert_traces_equal(trace, tiny_inspector("llama").run(tiny_ids()), range(trace.n_layers))


def test_patterns_failing_for_another_reason_are_not_blamed_on_dispatch(tmp_path):
    # the probe is reached through accelerate's hook, so the old misleading message is gone
    model = dispatched_tiny("llama", "disk", tmp_path)
    trace = lmscope.Inspector(model).run(tiny_ids(8))
    assert trace.attention(2).shape == (4, 8, 8)


def test_device_map_needs_no_device_and_extra_placement_needs_a_map():
    with pytest.raises(ValueError, match="either device="):
        lmscope.Inspector.from_pretrained(device="cpu", device_map="auto")
    with pytest.raises(ValueError, match="need a device_map"):
        lmscope.Inspector.from_pretrained(offload_folder="/tmp/nowhere")


def _states(widget) -> list:
    """Every widget's state under `widget`, with widget references and ids blanked."""
    import ipywidgets as ipw

    def clean(value):
        if isinstance(value, str) and value.startswith("IPY_MODEL_"):
            return "widget"
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, memoryview):
            return bytes(value)
        return value

    found, todo = [], [widget]
    while todo:
        w = todo.pop(0)
        state = {k: clean(v) for k, v in w.get_state().items() if k not in ("layout", "style")}
        found.append((type(w).__name__, state))
        for value in w.get_state().values():
            refs = value if isinstance(value, list | tuple) else [value]
            todo += [
                ipw.Widget.widgets[r[10:]]
                for r in refs
                if isinstance(r, str) and r.startswith("IPY_MODEL_")
            ]
    return found


@pytest.mark.real_model
def test_default_model_half_on_disk_matches_the_plain_one_in_every_view(tmp_path):
    from lmscope.widgets.dashboard import Dashboard

    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "cpu"}
    device_map |= {f"model.layers.{i}": "cpu" if i < 15 else "disk" for i in range(30)}
    device_map["lm_head"] = "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ins = lmscope.Inspector.from_pretrained(
            device_map=device_map, offload_folder=tmp_path, trace_internals="recompute"
        )
    assert ins.device_map == device_map and "disk" in repr(ins)
    assert ins.model.model.layers[20].self_attn.q_proj.weight.device.type == "meta"
    hooks = hook_snapshot(ins.model)
    text = "The capital of France is Paris, and the capital of Poland is"
    trace, plain = ins.run(text), default_inspector().run(text)
    assert not trace.internals_kept and plain.internals_kept  # recomputed vs stored, exactly
    assert_traces_equal(trace, plain, [0, 14, 15, 29], heads=[0, 8])
    dash, plain_dash = Dashboard(trace).build_all(), Dashboard(plain).build_all()
    got, want = _states(dash), _states(plain_dash)
    # attribution runs the recomputed blocks on one position (not the whole prompt, as the
    # run did): its shares agree to float rounding, every other state exactly
    shares = [(g, w) for g, w in zip(got, want, strict=True) if g[0] == "Attribution"]
    assert [g for g in got if g[0] != "Attribution"] == [w for w in want if w[0] != "Attribution"]
    assert shares
    for (_, g), (_, w) in shares:
        for name in ("heads", "mlps", "attn_bias", "blocks"):
            torch.testing.assert_close(
                _wire_tensor(g[name]), _wire_tensor(w[name]), atol=1e-5, rtol=0
            )
        assert g["summary"].keys() == w["summary"].keys()
        assert "rerun" not in g["summary"].pop("route") and w["summary"].pop("route")
        for key, value in w["summary"].items():
            assert g["summary"][key] == (
                pytest.approx(value, abs=1e-5) if isinstance(value, float) else value
            )
    assert hook_snapshot(ins.model) == hooks


def _wire_tensor(state) -> torch.Tensor:
    from lmscope.widgets.traits import WireArray

    return torch.from_numpy(WireArray.to_numpy(state).copy())


@pytest.mark.parametrize("how", ["disk", "cpu_offload"])
def test_edits_and_patching_on_a_dispatched_model_equal_the_plain_ones(how, tmp_path):
    model = dispatched_tiny("llama", how, tmp_path)
    hooks, devices = hook_snapshot(model), param_devices(model)
    ins, plain = lmscope.Inspector(model), tiny_inspector("llama")
    clean, corrupted = tiny_ids(12, seed=3), tiny_ids(12, seed=4)
    edits = [lmscope.Ablate(1, head=[0, 2]), lmscope.Ablate(2, neuron=5, position=4)]
    ins.trace_internals = "recompute"  # the edited blocks are rerun with the run's edits
    edited, reference = ins.run(corrupted, edits=edits), plain.run(corrupted, edits=edits)
    assert_traces_equal(edited, reference, range(edited.n_layers))
    sweeps = [
        lmscope.patching(i, clean, corrupted, answer=5, foil=7, site=site, progress=False)
        for i in (ins, plain)
        for site in ("resid_pre", "head")
    ]
    for got, want in zip(sweeps[:2], sweeps[2:], strict=True):
        torch.testing.assert_close(got.effect, want.effect, rtol=0, atol=1e-6)
        assert got.clean_metric == want.clean_metric
    assert hook_snapshot(model) == hooks and param_devices(model) == devices
