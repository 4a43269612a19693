"""NormPlot without a browser: the composite's figures hold the norms and the regression,
selection and controls, clear errors for bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from _models import tiny_ids, tiny_inspector, tiny_model
from lmscope import Inspector, capture
from lmscope.errors import InputError
from lmscope.stats import norm_regression
from lmscope.trace import VIEW_STREAMS
from lmscope.widgets.norm_plot import NormPlot, emptiest_corner
from lmscope.widgets.traits import WireArray


def _drawn(w):
    """The strips' synced state as the browser reads it: positions, [L, drawn] values, x."""
    pos = WireArray.to_numpy(w.strips.positions)
    norms = WireArray.to_numpy(w.strips.norms)
    return pos, norms[:, pos], w.strips.point_x()


def test_composite_draws_fit_and_selection():
    tr = tiny_inspector("llama").run(tiny_ids(40))
    w = NormPlot(tr)
    L = tr.n_layers
    assert w.token == 39  # the last token, like the other views
    pos = w.shown_positions()
    assert pos.tolist() == list(range(1, 40))  # first token left out
    drawn, values, x = _drawn(w)
    assert drawn.tolist() == pos.tolist() and values.shape == (L, 39)
    np.testing.assert_allclose(values[1], w.log_norms()[1, 1:], rtol=1e-6)  # float32 exact
    layer_of_point = np.arange(L)[:, None]
    assert (np.abs(x - layer_of_point) <= 0.3 + 1e-9).all()  # jittered around its layer
    np.testing.assert_allclose(x - layer_of_point, w.jitter[:, 1:], atol=0.6 / 255)
    assert w.strips.tokens == list(tr.tokens)  # the tooltip's names, as text
    assert w.strips.title == "attention output norms by layer"
    # the betas plot is the regression; filled markers exactly where p < 0.05
    ref = norm_regression(tr, stream="attn_out", lags=2)
    np.testing.assert_allclose(w._beta_lines[0].y, ref.betas[:, 0].numpy())
    sig = np.flatnonzero(ref.pvalues[:, 1].numpy() < 0.05)
    np.testing.assert_array_equal(w._beta_sig[1].x, sig)
    assert len(w._beta_sig[1].x) + len(w._beta_ns[1].x) == L
    assert not w._beta_lines[2].visible
    # a click in the strips sets the view's `token` (as the browser does): the composite's
    # selection follows, and back (the view rings that token in every layer itself)
    w.strips.set_state({"token": 8})
    assert w.token == 8
    assert w.status.value.startswith(f"token 8: {tr.tokens[8]}")
    w.token = 9
    assert w.strips.token == 9
    w.strips.set_state({"token": 40})  # out of range from the browser: refused, shown
    assert w.strips.token == 9 and "40" in w.strips.error
    # histograms count every shown token in every layer
    assert w._hist.y.shape[0] == L and (w._hist.y.sum(1) == 39).all()
    # their count axis ticks whole numbers, each once, up to the tallest bin (bqplot's own
    # ticks under a small count are fractions: 'd' printed them as 0 0 1 1 2 2)
    ticks = np.asarray(w.hist_fig.axes[1].tick_values)
    assert (ticks == ticks.round()).all() and len(set(ticks.astype(int))) == len(ticks)
    assert ticks[0] == 0 and ticks[-1] >= w._hist.y.max() and len(ticks) <= 9
    assert w._hist.scales["y"].max == ticks[-1]
    # stream / lags / first token follow the controls
    w._widgets["stream"].value = "mlp_out"
    w._widgets["lags"].value = 3
    assert (w.stream, w.lags) == ("mlp_out", 3)
    np.testing.assert_allclose(
        w._beta_lines[2].y, norm_regression(tr, stream="mlp_out", lags=3).betas[:, 2]
    )
    assert "mlp_out" in w.beta_fig.title and w._beta_lines[2].visible
    # the figure holds the shown lags' marks only (the zero line, and per lag a line and the
    # filled and hollow points)
    assert len(w.beta_fig.marks) == 1 + 3 * 3 and w._beta_lines[3] not in w.beta_fig.marks
    assert w.strips.y_label == "log ‖mlp_out‖" and w.strips.title.startswith("MLP output")
    w.mute_sink = False
    assert _drawn(w)[1].shape == (L, 40) and (w._hist.y.sum(1) == 40).all()


def test_a_recomputing_trace_builds_the_plot_without_rerunning_a_block(monkeypatch):
    """The norms were recorded during the run: every stream the plot offers, no block rerun."""
    kept = Inspector(tiny_model("llama"), trace_internals="keep").run(tiny_ids(40))
    redone = Inspector(tiny_model("llama"), trace_internals="recompute").run(tiny_ids(40))
    assert not redone.internals_kept
    reruns = []
    monkeypatch.setattr(capture, "rerun_block", lambda *a, **k: reruns.append(a[1]))
    monkeypatch.setattr(capture, "block_attention_call", lambda *a, **k: reruns.append(a[1]))
    w = NormPlot(redone)
    for stream in VIEW_STREAMS:
        w.stream = stream
        np.testing.assert_array_equal(w.log_norms(), NormPlot(kept, stream=stream).log_norms())
    assert reruns == [] and not redone._recomputed


def test_beta_legend_goes_to_the_emptiest_corner():
    rising = np.linspace(0, 1, 30)[:, None]  # last layers top right, first bottom left
    assert emptiest_corner(rising, 0, 1) == "top-left"
    assert emptiest_corner(1 - rising, 0, 1) == "top-right"
    assert emptiest_corner(np.full((30, 2), 0.9), 0, 1) == "bottom-right"
    assert emptiest_corner(np.full((30, 1), np.nan), 0, 1) == "top-right"
    # the widget places its legend where its own betas leave room
    w = NormPlot(tiny_inspector("llama").run(tiny_ids(40)))
    y = w._zero.scales["y"]
    betas = np.stack([w._beta_lines[j].y for j in range(w.lags)], 1)
    assert w.beta_fig.legend_location == emptiest_corner(betas, y.min, y.max)


def test_every_point_is_drawn_unless_max_points_asks_for_a_subsample():
    tr = tiny_inspector("gpt2").run(tiny_ids(240))
    every = NormPlot(tr)
    assert _drawn(every)[0].tolist() == list(range(1, 240))
    assert "drawn" not in every.strips.title
    w = NormPlot(tr, max_points=300)
    pos = w.shown_positions()
    assert len(pos) == 100 and 0 not in pos and (np.diff(pos) > 0).all()
    assert _drawn(w)[0].tolist() == pos.tolist()
    assert "100 of 239 tokens drawn" in w.strips.title
    assert w._hist.y.sum(1).tolist() == [239.0] * tr.n_layers  # histograms use every token


def test_bad_arguments_are_clear_errors():
    tr = tiny_inspector("llama").run(tiny_ids(12))
    with pytest.raises(InputError, match="stream must be one of attn_out, mlp_out, resid_post"):
        NormPlot(tr, stream="resid")
    with pytest.raises(InputError, match=r"lags must be in 1\.\.4 .* got 5"):
        NormPlot(tr, lags=5)
    with pytest.raises(InputError, match="max_points"):
        NormPlot(tr, max_points=0)
    with pytest.raises(IndexError, match=r"valid: 0\.\.11"):
        NormPlot(tr, token=12)
