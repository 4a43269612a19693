"""Memory budget: refuse with an estimate and a remedy instead of dying."""

import pytest
import torch

import lmscope
from _models import default_inspector, hook_snapshot, tiny_ids, tiny_model
from lmscope import memory
from lmscope.errors import MemoryBudgetError


def test_parse_and_print_sizes():
    assert memory.parse_size("6GB") == 6_000_000_000
    assert memory.parse_size("512MiB") == 512 * 2**20
    assert memory.parse_size(1234) == 1234
    assert memory.human(1_500_000) == "1.5 MB"
    with pytest.raises(ValueError, match="6GB"):
        memory.parse_size("lots")


def test_run_over_budget_is_refused_and_inspector_stays_usable():
    ins = lmscope.Inspector(tiny_model("llama"), memory_budget="10KB")
    with pytest.raises(
        MemoryBudgetError, match=r"needs about .* but the memory budget is 10\.0 KB"
    ):
        ins.run(tiny_ids(64))
    ins.memory_budget = None
    assert ins.run(tiny_ids(64)).seq_len == 64


def test_environment_variable_sets_the_budget(monkeypatch):
    monkeypatch.setenv("LMSCOPE_MEMORY_BUDGET", "1KB")
    ins = lmscope.Inspector(tiny_model("gpt2"))
    with pytest.raises(MemoryBudgetError, match="shorter text"):
        ins.run(tiny_ids(16))


def test_pattern_over_budget_is_refused():
    ins = lmscope.Inspector(tiny_model("llama"))
    trace = ins.run(tiny_ids(64))
    trace.memory_budget = 1000
    with pytest.raises(MemoryBudgetError, match="attention pattern of layer 1"):
        trace.attention(1)


@pytest.mark.real_model
def test_estimate_is_in_the_right_range():
    ins = default_inspector()
    estimate = ins.estimate_run_bytes(1024)
    # 30 layers x 1024 x (4*576 + 1536) floats + logits 1024 x 49152: ~0.68 GB
    assert 0.5e9 < estimate < 1.0e9


def test_out_of_memory_mid_run_is_a_clear_error_and_the_inspector_stays_usable():
    # the allocator's own exception type, raised half way through the model as CUDA would
    model = tiny_model("llama")
    ins = lmscope.Inspector(model)
    hooks_before = hook_snapshot(model)

    def out_of_memory(*_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    bomb = model.model.layers[1].register_forward_pre_hook(out_of_memory)
    try:
        with pytest.raises(
            MemoryBudgetError, match=r"ran out of memory capturing 64 tokens"
        ) as err:
            ins.run(tiny_ids(64))
        assert "shorter text" in str(err.value) and "still usable" in str(err.value)
        assert err.value.__cause__ is None  # no torch traceback chained under the message
    finally:
        bomb.remove()
    assert hook_snapshot(model) == hooks_before  # lmscope's capture hooks were removed
    trace = ins.run(tiny_ids(64))
    assert trace.seq_len == 64 and trace.resid_post(1).shape[0] == 64
