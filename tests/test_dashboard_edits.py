"""Dashboard edits without a browser: `dash.edits` re-runs the prompt with those edits (equal to
`ins.run(..., edits=...)`), the attention grid then shows edited minus original, the lens tracks
the original's answer, clearing restores the original, bad edits change nothing, and the
control row's buttons do exactly what setting `dash.edits` does."""

from __future__ import annotations

import pytest
import torch

import lmscope
from _models import tiny_ids, tiny_inspector
from lmscope import edits
from lmscope.errors import InputError, OutOfRangeError
from lmscope.widgets.dashboard import Dashboard


@pytest.fixture(scope="module")
def ins():
    return tiny_inspector("llama")


@pytest.fixture
def dash(ins):
    return Dashboard(ins.run(tiny_ids(12)), inspector=ins, tab="Attention")


def _same_run(a, b) -> None:
    assert torch.equal(a.input_ids, b.input_ids)
    assert torch.equal(a.logits, b.logits)
    for layer in (1, a.n_layers - 1):
        assert torch.equal(a.resid_post(layer), b.resid_post(layer))
        assert torch.equal(a.mlp_activations(layer), b.mlp_activations(layer))
        assert torch.equal(a.attention(layer), b.attention(layer))
    assert [e.label for e in a.edits] == [e.label for e in b.edits]


def test_setting_edits_shows_the_edited_run_against_the_original(dash, ins):
    original = dash.trace
    edits = [lmscope.Ablate(0, head=1), lmscope.Ablate(1, neuron=5)]
    dash.edits = edits
    assert dash.edits == tuple(edits)
    assert dash.original is original
    _same_run(dash.trace, ins.run(tiny_ids(12), edits=edits))
    assert not torch.equal(dash.trace.logits, original.logits)  # the edits do something
    # the attention grid: edited minus original, named above the view
    grid = dash.views["Attention"].grid
    assert grid.mode == "diff" and grid._compare is original
    assert grid.edits == "edited: Ablate(0, head=1); Ablate(1, neuron=5)"
    # the lens of the edited run tracks the original's answer first
    lens = dash.view("Logit lens")
    answer = int(original.logits[-1].argmax())
    assert lens.results["post"].targets[0] == answer
    assert lens.table.edits.startswith("edited: ")
    p_orig = float(original.logits[-1].softmax(-1)[answer])
    p_edit = float(dash.trace.logits[-1].softmax(-1)[answer])
    assert f"{p_orig:.3f} → {p_edit:.3f}" in dash.edits_status.value
    assert not dash.clear_edits_button.disabled
    assert "edited: Ablate(0, head=1)" in dash.error_area.figure_title  # a saved figure's title

    dash.edits = []
    assert dash.edits == () and dash.trace is original
    assert dash.view("Attention").grid.mode == "single"
    assert dash.view("Attention").grid.edits == ""
    assert dash.edits_status.value == "" and dash.clear_edits_button.disabled
    assert "edited" not in dash.error_area.figure_title


def test_bad_edits_raise_and_change_nothing(dash):
    dash.edits = [lmscope.Ablate(1, head=0)]
    shown = dash.trace
    with pytest.raises(OutOfRangeError, match="head"):
        dash.edits = [lmscope.Ablate(1, head=99)]
    with pytest.raises(OutOfRangeError, match="layer"):
        dash.edits = [lmscope.Ablate(50, neuron=0)]
    with pytest.raises(InputError, match=r"lmscope\.Ablate and lmscope\.Patch objects, got dict"):
        dash.edits = [{"layer": 1, "head": 0}]
    with pytest.raises(InputError, match="takes a list"):
        dash.edits = "Ablate(1, head=0)"
    assert dash.trace is shown and [repr(e) for e in dash.edits] == ["Ablate(1, head=0)"]
    # from a button, the error lands in the error area, not as a traceback
    dash.selection = {"layer": 1}
    dash.neuron.max = 10**6
    dash.neuron.value = 10**6 - 1
    dash.ablate_neuron_button.click()
    assert "neuron" in dash.error and dash.trace is shown


def test_the_control_row_sets_the_same_edits(dash, ins):
    dash.selection = {"layer": 1, "head": 2}
    dash.ablate_head_button.click()
    assert [repr(e) for e in dash.edits] == ["Ablate(1, head=2)"]
    _same_run(dash.trace, ins.run(tiny_ids(12), edits=[lmscope.Ablate(1, head=2)]))
    assert dash.selection.as_dict() == {"token": 11, "layer": 1, "head": 2}  # kept
    dash.neuron.value = 7
    dash.ablate_neuron_button.click()  # adds to the edits
    both = [lmscope.Ablate(1, head=2), lmscope.Ablate(1, neuron=7)]
    assert [repr(e) for e in dash.edits] == [repr(e) for e in both]
    _same_run(dash.trace, ins.run(tiny_ids(12), edits=both))
    dash.clear_edits_button.click()
    assert dash.edits == () and dash.trace is dash.original


def test_a_new_run_starts_unedited_and_no_inspector_cannot_edit(dash, ins):
    dash.edits = lmscope.Ablate(0, head=0)  # one edit is accepted as is
    assert len(dash.edits) == 1
    new = ins.run(tiny_ids(8))
    dash.set_trace(new)  # what Run and Generate do with their trace
    assert dash.original is new and dash.trace is new
    assert dash.edits == () and not dash.trace.edits
    plain = Dashboard(dash.trace)
    assert plain.ablate_head_button.disabled and plain.ablate_neuron_button.disabled
    with pytest.raises(InputError, match="no inspector"):
        plain.edits = [lmscope.Ablate(0, head=0)]


def test_mean_ablation_from_the_control_averages_over_the_texts_set_from_python(dash, ins):
    dash.selection = {"layer": 1, "head": 2}
    assert [value for _, value in dash.ablation.options] == ["zero"]
    with pytest.raises(InputError, match="mean_texts"):
        dash.ablate_head(mode="mean")
    with pytest.raises(InputError, match="list of texts"):
        dash.mean_texts = "one text"
    texts = [tiny_ids(6, seed=5), tiny_ids(9, seed=6)]  # the tiny model has no tokenizer
    dash.mean_texts = texts
    assert dash.ablation.value == "mean"  # offered, and picked, once there are texts
    dash.ablate_head_button.click()
    dash.neuron.value = 7
    dash.ablate_neuron_button.click()
    assert [repr(e) for e in dash.edits] == [
        "Ablate(1, head=2, mode='mean')",
        "Ablate(1, neuron=7, mode='mean')",
    ]
    # by hand: each site's mean over every token of the texts
    runs = [ins.run(ids) for ids in texts]
    heads = torch.cat([edits.head_outputs(run, 1) for run in runs]).mean(0)
    neurons = torch.cat([run.mlp_activations(1) for run in runs]).mean(0)
    by_hand = [
        lmscope.Ablate(1, head=2, mode="mean", mean=heads[2]),
        lmscope.Ablate(1, neuron=7, mode="mean", mean=neurons[7:8]),
    ]
    reference = ins.run(tiny_ids(12), edits=by_hand)
    torch.testing.assert_close(dash.trace.logits, reference.logits, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(dash.trace.logits, dash.original.logits, atol=1e-3)
    dash.ablation.value = "zero"  # the menu decides what the next ablation writes
    dash.ablate_head(0, 1)
    assert repr(dash.edits[-1]) == "Ablate(0, head=1)"
    dash.mean_texts = []
    assert [value for _, value in dash.ablation.options] == ["zero"]
