"""Dashboard without a browser: the shared selection reaches every view through Python, the
prompt box runs, generates and reports errors, and the export holds every lmscope view."""

from __future__ import annotations

import ipywidgets as ipw
import pytest

import lmscope
from _models import default_inspector, tiny_ids, tiny_inspector
from lmscope.errors import OutOfRangeError
from lmscope.widgets.dashboard import TABS, Dashboard


@pytest.fixture(scope="module")
def tiny_dash():
    trace = tiny_inspector("llama").run(tiny_ids(12))
    return Dashboard(trace).build_all()


def _views(dash):
    attention = dash.views["Attention"]
    return (
        dash.views["Tokens"],
        attention.grid,
        attention.lines,
        dash.views["Logit lens"],
        dash.views["Colors"],
        dash.views["Norms"],
    )


def test_views_build_lazily_per_tab():
    trace = tiny_inspector("gpt2").run(tiny_ids(8))
    dash = Dashboard(trace)
    assert list(dash.views) == ["Tokens"]
    dash.tabs.selected_index = TABS.index("Colors")
    assert list(dash.views) == ["Tokens", "Colors"]
    assert dash.tabs.children[TABS.index("Colors")].children == (dash.views["Colors"],)
    # no inspector: the prompt box shows the text but cannot run
    assert dash.run_button.disabled and dash.prompt.disabled
    with pytest.raises(ValueError, match="no inspector"):
        dash.run("hello")


def test_selection_from_python_reaches_every_view(tiny_dash):
    tokens, grid, lines, lens, colors, norms = _views(tiny_dash)
    tiny_dash.selection = {"token": 3, "layer": 1, "head": 2}
    assert tiny_dash.selection.as_dict() == {"token": 3, "layer": 1, "head": 2}
    assert tokens.token == colors.token == norms.token == 3
    assert lens.token == lens.table.token == 3
    assert lens.layer == lens.table.layer == 1
    assert (grid.layer, grid.head) == (1, 2)
    assert (lines.layer, lines.layer_end, lines.head) == (1, 1, 2)
    assert "token 3" in tiny_dash.status.value and "head 2" in tiny_dash.status.value


def test_a_view_selection_moves_the_others(tiny_dash):
    tokens, grid, lines, lens, colors, norms = _views(tiny_dash)
    colors.token = 5  # what a click in the browser sets
    assert tiny_dash.selection.token == 5
    assert tokens.token == lens.table.token == norms.token == 5
    norms.token = 7
    assert tokens.token == colors.token == 7
    grid.layer, grid.head = 0, 1
    assert (lines.layer, lines.head) == (0, 1)
    lens.table.layer = 2
    assert tiny_dash.selection.layer == 2 and grid.layer == 2 and lines.layer == 2


def test_selection_rejects_bad_values(tiny_dash):
    before = tiny_dash.selection.as_dict()
    with pytest.raises(OutOfRangeError, match=r"valid: 0\.\.11"):
        tiny_dash.selection = {"token": 12}
    with pytest.raises(OutOfRangeError, match="layer"):
        tiny_dash.selection = {"layer": 99}
    with pytest.raises(TypeError, match="unknown option 'position'"):
        tiny_dash.selection = {"position": 1}
    assert tiny_dash.selection.as_dict() == before


def test_save_html_holds_every_lmscope_view(tiny_dash, tmp_path):
    page = tiny_dash.save_html(tmp_path / "dash.html").read_text()
    # tokens, grid, lines, lens table, attribution, colors, norm strips: seven views (empty
    # error areas draw nothing)
    assert page.count("data-lmscope-view=") == 7
    views = ("TokenView", "AttentionGrid", "AttentionLines", "LogitLensTable", "Attribution")
    for bundle in (*views, "TokenColors", "NormStrips"):
        assert f'id="lms-code-{bundle}"' in page
    # the bqplot figures (lens line and scatter, two norm plots) are drawn, not noted
    assert "widget stood here" not in page
    assert page.count('type="application/vnd.jupyter.widget-view+json"') >= 4
    assert ">Norms<" in page


@pytest.mark.real_model
def test_prompt_box_runs_generates_and_reports_errors():
    ins = default_inspector()
    dash = ins.show("The capital of France is")
    first = dash.trace
    assert dash.selection.token == first.seq_len - 1
    assert dash.selection.layer == first.n_layers - 1

    dash.prompt.value = "   "
    dash.run_button.click()
    assert dash.error.startswith("InputError: the prompt is empty")
    assert dash.trace is first and not dash.run_button.disabled

    dash.prompt.value = "I love you"
    dash.run_button.click()
    assert dash.error == ""
    assert dash.trace.text == "I love you" and dash.trace is not first
    assert dash.views["Tokens"].tokens == list(dash.trace.tokens)
    assert dash.selection.token == dash.trace.seq_len - 1

    dash.max_new_tokens.value = 3
    dash.generate_button.click()
    assert dash.error == ""
    tr = dash.trace
    assert tr.seq_len == tr.prompt_length + 3 and tr.text.startswith("I love you")
    assert dash.prompt.value == tr.text
    assert "3 generated" in dash.status.value
    assert dash.progress.layout.visibility == "hidden"

    dash.prompt.value = "x " * 9000  # past the model's context
    dash.run_button.click()
    assert "InputError" in dash.error and "Traceback" not in dash.error
    assert dash.trace is tr


def test_dashboard_is_a_widget_layout():
    trace = tiny_inspector("gpt2").run(tiny_ids(6))
    dash = Dashboard(trace, tab="Attention")
    assert isinstance(dash, ipw.VBox) and list(dash.views) == ["Attention"]
    assert isinstance(dash.views["Attention"], lmscope.AttentionExplorer)
    assert dash.tabs.titles == TABS
    with pytest.raises(ValueError, match="tab must be one of"):
        Dashboard(trace, tab="Heads")
