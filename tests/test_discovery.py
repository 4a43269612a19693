"""Parts found from transformers' declarations, an explicit Layout, and the load-time proof."""

import copy

import pytest
import torch
from torch import nn

import lmscope
from _models import TINY_FAMILIES, hook_snapshot, tiny_ids, tiny_inspector, tiny_model
from lmscope.errors import UnsupportedArchitectureError

# what the hand-written table said before discovery replaced it (paths from the model / block)
_LLAMA = (
    "model.layers",
    "self_attn",
    "self_attn",
    "mlp",
    "mlp.down_proj",
    "model.norm",
    "self_attn.o_proj",
)
TABLE = {
    "gpt2": (
        "transformer.h",
        "attn",
        "attn",
        "mlp",
        "mlp.c_proj",
        "transformer.ln_f",
        "attn.c_proj",
    ),
    "gemma2": (
        "model.layers",
        "self_attn",
        "post_attention_layernorm",
        "post_feedforward_layernorm",
        "mlp.down_proj",
        "model.norm",
        "self_attn.o_proj",
    ),
    "gpt_neox": (
        "gpt_neox.layers",
        "attention",
        "attention",
        "mlp",
        "mlp.dense_4h_to_h",
        "gpt_neox.final_layer_norm",
        "attention.dense",
    ),
}


def _at(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_discovery_finds_what_the_old_table_named(family):
    blocks, attention, attn_out, mlp_out, mlp_down, final_norm, attn_proj = TABLE.get(
        family, _LLAMA
    )
    model, parts = tiny_model(family), tiny_inspector(family).parts
    assert parts.blocks == list(_at(model, blocks))
    assert parts.final_norm is _at(model, final_norm)
    assert parts.unembed is model.get_output_embeddings()
    for layer, block in enumerate(parts.blocks):
        assert parts.attentions[layer] is _at(block, attention)
        assert parts.attn_outs[layer] is _at(block, attn_out)
        assert parts.mlp_outs[layer] is _at(block, mlp_out)
        assert parts.mlp_downs[layer] is _at(block, mlp_down)
        assert parts.attn_projs[layer] is _at(block, attn_proj)
    assert parts.parallel_residual == (family == "gpt_neox")
    assert parts.proven and not parts.refused and not parts.attention_refused


class _Renamed(nn.Module):
    """A custom causal LM: Llama's modules under names no declaration or fallback knows."""

    def __init__(self, llama):
        super().__init__()
        self.config = llama.config
        self.llama = llama

    def get_output_embeddings(self):
        return self.llama.lm_head

    def get_input_embeddings(self):
        return self.llama.model.embed_tokens

    def forward(self, input_ids, **kwargs):
        return self.llama(input_ids=input_ids, **kwargs)


def test_explicit_layout_for_a_custom_model():
    llama = copy.deepcopy(tiny_model("llama"))
    custom = _Renamed(llama)
    layout = lmscope.Layout(blocks="llama.model.layers", final_norm="llama.model.norm")
    ins = lmscope.Inspector(custom, layout=layout)
    assert ins.parts.proven and not ins.parts.refused
    trace = ins.run(tiny_ids(12))
    reference = tiny_inspector("llama").run(tiny_ids(12))
    torch.testing.assert_close(trace.attn_out(1), reference.attn_out(1))
    torch.testing.assert_close(trace.attention(2), reference.attention(2))


def test_error_names_what_was_not_found_and_how_to_pass_it():
    class NoBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = copy.copy(tiny_model("llama").config)
            self.head = nn.Linear(4, 8)

        def get_output_embeddings(self):
            return self.head

    with pytest.raises(
        UnsupportedArchitectureError, match=r"no list of decoder blocks.*Layout\(blocks="
    ):
        lmscope.Inspector(NoBlocks())


def test_a_wrong_mapping_is_refused_by_the_proof_naming_the_identity():
    model = tiny_model("llama")
    ins = lmscope.Inspector(model, layout=lmscope.Layout(attn_out="input_layernorm"))
    assert "block 0's output is not its input plus" in ins.parts.refused["decomposition"]
    trace = ins.run(tiny_ids(12))
    with pytest.raises(UnsupportedArchitectureError, match="block 0's output"):
        trace.attn_out(0)
    with pytest.raises(UnsupportedArchitectureError, match="block 0's output"):
        trace.logit_lens(stage="mid")
    # what does not depend on the failed identity still works, and is still exact
    torch.testing.assert_close(
        trace.resid_pre(2), tiny_inspector("llama").run(tiny_ids(12)).resid_pre(2)
    )
    assert trace.logit_lens(stage="post").token_ids.shape[0] == 3


def test_a_pattern_that_does_not_reproduce_the_model_is_refused(monkeypatch):
    from lmscope import capture

    real = capture._eager_mask

    def unmasked(*args, **kwargs):  # as if lmscope got the mask wrong
        return torch.zeros_like(real(*args, **kwargs))

    monkeypatch.setattr(capture, "_eager_mask", unmasked)
    ins = lmscope.Inspector(tiny_model("qwen2"))
    monkeypatch.undo()
    assert set(ins.parts.attention_refused) == {0, 1, 2}
    with pytest.raises(
        UnsupportedArchitectureError, match="does not reproduce the model's own attention"
    ):
        ins.run(tiny_ids(12)).attention(1)


def test_proof_can_be_skipped_and_leaves_no_hooks():
    from transformers import AutoModelForCausalLM

    from _models import TINY_CONFIGS

    model = AutoModelForCausalLM.from_config(TINY_CONFIGS["gpt2"]()).eval()  # never run yet
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        before = hook_snapshot(model)
        unproven = lmscope.Inspector(model, prove=False)
        assert not calls and not unproven.parts.proven
        lmscope.Inspector(model)
        assert len(calls) == 1  # the proof is one forward
        # not even transformers' own recording hooks, which asking for hidden_states installs
        assert hook_snapshot(model) == before
        with torch.no_grad():  # and transformers still records them when asked
            out = model(input_ids=tiny_ids(6)[None], output_hidden_states=True)
        assert len(out.hidden_states) == 4
    finally:
        handle.remove()


def test_masked_lm_is_refused_in_words():
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(
        BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64)
    )
    with pytest.raises(UnsupportedArchitectureError, match="not a causal LM"):
        lmscope.Inspector(bert)
