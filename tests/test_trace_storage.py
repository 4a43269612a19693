"""What a trace stores: the stream always, a block's internals kept or recomputed by rerunning that
block (recomputed == stored), placement and dtype of the stored tensors, per-device budgets."""

from __future__ import annotations

import pytest
import torch

import lmscope
from _models import TINY_FAMILIES, hook_snapshot, tiny_ids, tiny_model
from lmscope import capture, memory
from lmscope.errors import MemoryBudgetError
from lmscope.inspector import _oom_device
from lmscope.trace import STREAMS

INTERNALS = ("attn_out", "resid_mid", "mlp_out", "mlp_activations")


def floor_bytes(trace) -> int:
    """The residual stream's own bytes: every block's input and the last block's output."""
    return (trace.n_layers + 1) * trace.seq_len * trace.d_model * trace.dtype.itemsize


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_recomputed_internals_equal_the_stored_ones(family):
    model = tiny_model(family)
    hooks = hook_snapshot(model)
    kept = lmscope.Inspector(model, trace_internals="keep").run(tiny_ids())
    redone = lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids())
    assert kept.internals_kept and not redone.internals_kept
    for layer in range(kept.n_layers):
        for name in INTERNALS:
            assert torch.equal(getattr(redone, name)(layer), getattr(kept, name)(layer)), name
        (got_args, got_kwargs), (want_args, want_kwargs) = (
            redone.attention_call(layer),
            kept.attention_call(layer),
        )
        got = got_args[0] if got_args else got_kwargs["hidden_states"]
        want = want_args[0] if want_args else want_kwargs["hidden_states"]
        assert torch.equal(got, want)
        assert torch.equal(redone.attention(layer), kept.attention(layer))
    assert hook_snapshot(model) == hooks  # the reruns' hooks are gone too


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_recorded_norms_equal_the_norms_of_the_kept_internals(family, monkeypatch):
    """The run records each sub-layer output's per-token norms: bitwise the norms of the kept
    tensor, and a recomputing trace gives the same ones without rerunning a block."""
    model = tiny_model(family)
    kept = lmscope.Inspector(model, trace_internals="keep").run(tiny_ids())
    redone = lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids())
    reruns = []
    monkeypatch.setattr(capture, "rerun_block", lambda *a, **k: reruns.append(a[1]))
    monkeypatch.setattr(capture, "block_attention_call", lambda *a, **k: reruns.append(a[1]))
    for stream in STREAMS:
        for layer in range(kept.n_layers):
            want = capture.token_norms(kept.stream(stream, layer))
            assert torch.equal(kept.token_norms(stream, layer), want), (stream, layer)
            if stream in capture.NORMS and getattr(kept._rec, stream)[layer] is not None:
                recorded = getattr(kept._rec, capture.NORMS[stream])[layer]
                assert torch.equal(recorded, want), (stream, layer)
            if stream != "resid_mid":  # resid_mid = resid_pre + attn_out: not recorded
                assert torch.equal(redone.token_norms(stream, layer), want), (stream, layer)
    assert reruns == []
    recorded = [n for n in (*kept._rec.attn_out_norm, *kept._rec.mlp_out_norm) if n is not None]
    assert recorded and all(n.dtype == torch.float64 for n in recorded)


def test_recorded_norms_are_those_of_the_tensor_as_stored():
    low = lmscope.Inspector(
        tiny_model("llama"), trace_dtype=torch.bfloat16, trace_internals="keep"
    ).run(tiny_ids())
    for layer in range(low.n_layers):
        stored = low.mlp_out(layer)
        assert stored.dtype == torch.bfloat16
        assert torch.equal(low._rec.mlp_out_norm[layer], capture.token_norms(stored))


def test_a_trace_without_internals_holds_little_more_than_the_stream():
    model = tiny_model("llama")
    kept = lmscope.Inspector(model, trace_internals="keep").run(tiny_ids(64))
    redone = lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids(64))
    floor = floor_bytes(redone)
    assert redone.stored_bytes() <= 1.3 * floor
    assert kept.stored_bytes() > 3 * floor  # four [seq, d_model] tensors a layer and the MLP's
    for layer in range(redone.n_layers):  # a view reading every layer
        redone.mlp_out(layer)
    assert len(redone._recomputed) == 1  # the cache holds a share of the stream, >= one block
    assert redone.stored_bytes() <= 1.3 * floor + memory.tensor_bytes(redone._recomputed)
    redone.recompute_cache_share = 100.0
    for layer in range(redone.n_layers):
        redone.mlp_out(layer)
    assert len(redone._recomputed) == redone.n_layers


def test_auto_keeps_internals_only_while_they_fit_a_share_of_the_budget():
    model = tiny_model("llama")
    per_layer = memory.internals_layer_bytes(n_tokens=64, d_model=64, d_mlp=128, element_size=4)
    roomy = lmscope.Inspector(
        model, memory_budget=100 * 3 * per_layer / memory.KEEP_INTERNALS_SHARE
    )
    assert roomy.keeps_internals(64) and roomy.run(tiny_ids(64)).internals_kept
    tight = lmscope.Inspector(model, memory_budget=3 * per_layer / memory.KEEP_INTERNALS_SHARE)
    assert not tight.keeps_internals(128)
    trace = tight.run(tiny_ids(128))
    assert not trace.internals_kept
    assert tight.estimate_run_bytes(128) < roomy.estimate_run_bytes(128)
    with pytest.raises(ValueError, match="trace_internals must be one of"):
        lmscope.Inspector(model, trace_internals="some")


def test_trace_dtype_rounds_the_stored_stream_and_internals_follow_it():
    model = tiny_model("llama")
    plain = lmscope.Inspector(model).run(tiny_ids())
    low = lmscope.Inspector(
        model, trace_internals="recompute", trace_dtype=torch.bfloat16, trace_device="cpu"
    ).run(tiny_ids())
    assert low.dtype == torch.bfloat16 and low.stored_bytes() < plain.stored_bytes() / 4
    for layer in range(low.n_layers):
        assert torch.equal(low.resid_pre(layer), plain.resid_pre(layer).bfloat16())
        # rerun in the model's dtype from the rounded input, stored rounded
        assert low.attn_out(layer).dtype == torch.bfloat16
        torch.testing.assert_close(
            low.mlp_out(layer).float(), plain.mlp_out(layer), rtol=0.05, atol=0.05
        )
        torch.testing.assert_close(low.attention(layer), plain.attention(layer), rtol=0, atol=0.02)
    lens = low.logit_lens(top_k=1)
    assert lens.token_ids.shape == (low.n_layers, low.seq_len, 1)


def test_a_refusal_names_every_device_and_its_share():
    needs = {torch.device("cuda:0"): 3_000_000_000, torch.device("cuda:1"): 1_000_000_000}
    budgets = {torch.device("cuda:0"): 2_000_000_000, torch.device("cuda:1"): 20_000_000_000}
    with pytest.raises(MemoryBudgetError) as err:
        memory.check_devices(needs, budgets, "capturing 8192 tokens", "Use a shorter text.")
    message = str(err.value)
    assert "3.0 GB on cuda:0 but the memory budget there is 2.0 GB" in message
    assert "cuda:0: 3.0 GB of 2.0 GB; cuda:1: 1.0 GB of 20.0 GB" in message
    assert memory.budget_bytes(torch.device("cuda:1"), {1: "5GB", "cuda:0": "1GB"}) == 5e9
    assert _oom_device(torch.OutOfMemoryError("Tried to allocate 2 GiB. GPU 1 has a total")) == (
        "cuda:1"
    )


def test_out_of_memory_recomputing_a_block_is_a_clear_error_and_the_trace_stays_usable():
    model = tiny_model("llama")
    trace = lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids())
    hooks = hook_snapshot(model)

    def out_of_memory(*_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    bomb = model.model.layers[1].mlp.register_forward_pre_hook(out_of_memory)
    try:
        with pytest.raises(MemoryBudgetError, match=r"recomputing block 1 .* still usable"):
            trace.mlp_out(1)
    finally:
        bomb.remove()
    assert hook_snapshot(model) == hooks
    assert trace.mlp_out(1).shape == (24, 64)
    trace.attention_call(2)  # the block is rerun first; now the pattern's own recomputation
    bomb = model.model.layers[2].self_attn.q_proj.register_forward_pre_hook(out_of_memory)
    try:
        with pytest.raises(MemoryBudgetError, match=r"cpu ran out of memory .* layer 2 .* usable"):
            trace.attention(2)
    finally:
        bomb.remove()
    assert hook_snapshot(model) == hooks
    assert trace.attention(2).shape == (4, 24, 24)


def test_a_recomputed_block_applies_the_runs_edits():
    model = tiny_model("llama")
    clean = lmscope.Inspector(model).run(tiny_ids(seed=2))
    edits = [
        lmscope.Ablate(1, head=[0, 2]),
        lmscope.Ablate(2, neuron=5, position=4),
        lmscope.Patch(source=clean, site="resid_pre", layer=1, position=3),
        lmscope.Patch(source=clean, site="mlp_out", layer=0),
    ]
    kept = lmscope.Inspector(model, trace_internals="keep").run(tiny_ids(), edits=edits)
    redone = lmscope.Inspector(model, trace_internals="recompute").run(tiny_ids(), edits=edits)
    for layer in range(kept.n_layers):
        for name in INTERNALS:
            assert torch.equal(getattr(redone, name)(layer), getattr(kept, name)(layer)), name
        assert torch.equal(redone.attention(layer), kept.attention(layer))


def test_an_offloaded_blocks_weights_count_where_it_runs(tmp_path):
    from lmscope import placement
    from test_dispatched import dispatched_tiny

    plain = lmscope.Inspector(tiny_model("llama"))
    ins = lmscope.Inspector(dispatched_tiny("llama", "disk", tmp_path))
    cpu = torch.device("cpu")
    block = placement.weight_bytes(plain.parts.blocks[1])  # brought in for its forward
    plain_needs, needs = (
        plain.estimate_run(24, internals=True),
        ins.estimate_run(24, internals=True),
    )
    assert set(needs) == set(plain_needs) == {cpu}
    assert needs[cpu] == plain_needs[cpu] + block
    assert ins.layer_devices == [cpu] * 3 and ins.devices() == [cpu]
