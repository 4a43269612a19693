"""The calling rules every public view and analysis follows (docs/widget-platform.md): the trace
is the only positional argument, a misspelled option is a TypeError naming the closest valid
one, and a value the browser sets passes the same checks as one set from Python."""

from __future__ import annotations

import inspect

import pytest

import lmscope
from _models import tiny_ids, tiny_inspector
from lmscope import attention, attribution, coloring, lens, stats
from lmscope.widgets.base import LmscopeComposite, LmscopeWidget
from lmscope.widgets.dashboard import Selection

WIDGETS = [
    lmscope.TokenView,
    lmscope.AttentionLines,
    lmscope.AttentionGrid,
    lmscope.AttentionExplorer,
    lmscope.Attribution,
    lmscope.LogitLens,
    lmscope.TokenColors,
    lmscope.NormPlot,
    lmscope.Dashboard,
]
ANALYSES = [
    lens.logit_lens,
    lens.distribution,
    coloring.token_colors,
    coloring.token_neighbors,
    stats.log_norms,
    stats.norm_regression,
    attention.pattern,
    attention.grid,
    attention.grid_difference,
    attribution.attribution,
]
# one option each takes, misspelled as a person might, and the name the error must suggest
TYPOS = {
    "TokenView": ("tokn", "token"),
    "AttentionLines": ("layr", "layer"),
    "AttentionGrid": ("mode_", "mode"),
    "AttentionExplorer": ("heads", "head"),
    "Attribution": ("targt", "target"),
    "LogitLens": ("targts", "targets"),
    "TokenColors": ("stream", "streams"),
    "NormPlot": ("lag", "lags"),
    "Dashboard": ("inspektor", "inspector"),
    "logit_lens": ("postions", "positions"),
    "distribution": ("posit", "position"),
    "token_colors": ("strem", "stream"),
    "token_neighbors": ("n_neighbours", "n_neighbors"),
    "log_norms": ("streams", "stream"),
    "norm_regression": ("lag", "lags"),
    "pattern": ("layer_ends", "layer_end"),
    "grid": ("mute_sinks", "mute_sink"),
    "grid_difference": ("sizes", "size"),
    "attribution": ("positon", "position"),
}


@pytest.fixture(scope="module")
def trace():
    return tiny_inspector("llama").run(tiny_ids(12))


def _name(thing) -> str:
    return thing.__name__


@pytest.mark.parametrize("thing", WIDGETS + ANALYSES, ids=_name)
def test_everything_after_the_subject_is_keyword_only(thing):
    params = list(inspect.signature(thing).parameters.values())
    if params[0].name == "self":
        params = params[1:]
    # a difference takes two traces; an attribution the trace and what it attributes
    subjects = 2 if thing in (attention.grid_difference, attribution.attribution) else 1
    for p in params[:subjects]:
        assert p.kind == p.POSITIONAL_OR_KEYWORD, (thing, p)
    for p in params[subjects:]:
        assert p.kind == p.KEYWORD_ONLY, (thing, p.name)


@pytest.mark.parametrize("thing", WIDGETS + ANALYSES, ids=_name)
def test_a_misspelled_option_names_the_closest_valid_one(thing, trace):
    typo, meant = TYPOS[_name(thing)]
    subjects = {attention.grid_difference: (trace, trace), attribution.attribution: (trace, 5)}
    subjects = subjects.get(thing, (trace,))
    with pytest.raises(TypeError, match=f"unknown option '{typo}'; did you mean '{meant}'"):
        thing(*subjects, **{typo: 1})
    with pytest.raises(TypeError, match="keyword option"):
        thing(*subjects, 1, 2)


def test_a_0_1_name_says_what_it_became(trace):
    with pytest.raises(TypeError, match="did you mean 'top_k'"):
        lmscope.LogitLens(trace, k=3)
    with pytest.raises(TypeError, match="did you mean 'n_neighbors'"):
        lmscope.TokenColors(trace, k=3)
    with pytest.raises(TypeError, match="did you mean 'token'"):
        lmscope.NormPlot(trace, selected_token=3)
    with pytest.raises(TypeError, match="did you mean 'mute_sink'"):
        lmscope.NormPlot(trace, include_first=True)
    with pytest.raises(TypeError, match="did you mean 'stage'"):
        trace.logit_lens(view="mid")


# (view, trait the browser may set, a bad value, the words of the error)
BROWSER_VALUES = [
    (lambda tr: lmscope.TokenView(tr), "token", 12, r"0\.\.11"),
    (lambda tr: lmscope.AttentionLines(tr), "layer", 3, r"0\.\.2"),
    (lambda tr: lmscope.AttentionLines(tr), "layer_end", -9, r"0\.\.2"),
    (lambda tr: lmscope.AttentionLines(tr), "head", 4, r"0\.\.3"),
    (lambda tr: lmscope.AttentionLines(tr), "head", "median", "mean, max"),
    (lambda tr: lmscope.AttentionLines(tr), "threshold", 1.5, r"0\.\.1"),
    (lambda tr: lmscope.AttentionLines(tr), "top_k", 0, ">= 1"),
    (lambda tr: lmscope.AttentionGrid(tr), "layer", 5, r"0\.\.2"),
    (lambda tr: lmscope.AttentionGrid(tr), "head", 9, r"0\.\.3"),
    (lambda tr: lmscope.AttentionGrid(tr), "mode", "diff", "second trace"),
    (lambda tr: lmscope.LogitLens(tr).table, "stage", "pre", "post, mid, both"),
    (lambda tr: lmscope.LogitLens(tr).table, "token", 40, r"0\.\.11"),
    (lambda tr: lmscope.LogitLens(tr).table, "layer", 3, r"0\.\.2"),
    (lambda tr: lmscope.LogitLens(tr, targets=[3]).table, "target", 1, r"0\.\.0"),
    (lambda tr: lmscope.TokenColors(tr), "layer", 3, r"0\.\.2"),
    (lambda tr: lmscope.Attribution(tr, target=3), "head", 4, r"0\.\.3"),
    (lambda tr: lmscope.Attribution(tr, target=3), "token", 12, r"0\.\.11"),
    (lambda tr: lmscope.TokenColors(tr), "token", 12, r"0\.\.11"),
    (lambda tr: lmscope.Attribution(tr, target=5), "layer", 3, r"0\.\.2"),
    (lambda tr: lmscope.Attribution(tr, target=5), "foil", 999, r"0\.\.319"),
]


@pytest.mark.parametrize(("make", "name", "bad", "words"), BROWSER_VALUES)
def test_values_from_the_browser_are_checked(make, name, bad, words, trace):
    view = make(trace)
    assert isinstance(view, LmscopeWidget)
    before = getattr(view, name)
    view.set_state({name: bad})  # what a message from the browser does
    assert getattr(view, name) == before
    assert view.error and __import__("re").search(words, view.error), view.error
    with pytest.raises(ValueError, match=words):  # and the same check from Python
        setattr(view, name, bad)


@pytest.mark.parametrize(
    ("make", "name", "bad"),
    [
        (lambda tr: lmscope.LogitLens(tr), "token", 12),
        (lambda tr: lmscope.NormPlot(tr), "token", 12),
        (lambda tr: lmscope.NormPlot(tr), "lags", 9),
        (lambda tr: lmscope.AttentionExplorer(tr), "head", 4),
        (lambda tr: lmscope.Dashboard(tr).selection, "layer", 3),
    ],
)
def test_composites_and_the_selection_check_their_traits(make, name, bad, trace):
    composite = make(trace)
    assert isinstance(composite, LmscopeComposite | Selection)
    with pytest.raises(ValueError):
        setattr(composite, name, bad)


def test_every_composite_reports_in_the_shared_error_area(trace):
    lens_view = lmscope.LogitLens(trace)
    assert lens_view.children[-1] is lens_view.error_area
    lens_view.error = "InputError: something"
    assert lens_view.error_area.error == "InputError: something"


def test_selection_reads_and_writes_the_same_type(trace):
    dash = lmscope.Dashboard(trace)
    other = lmscope.Dashboard(trace)
    other.selection = {"token": 3, "layer": 1, "head": 2}
    dash.selection = other.selection  # a Selection, as `dash.selection` reads
    assert isinstance(dash.selection, Selection)
    assert dash.selection.as_dict() == {"token": 3, "layer": 1, "head": 2}
    dash.selection = {"head": 0}  # or a dict of some of its names
    assert dash.selection.as_dict() == {"token": 3, "layer": 1, "head": 0}
