"""NormPlot without a browser: the composite's figures hold the norms and the regression,
selection and controls, clear errors for bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from _models import tiny_ids, tiny_inspector
from lmscope.errors import InputError
from lmscope.stats import norm_regression
from lmscope.widgets.norm_plot import NormPlot, emptiest_corner


def test_composite_draws_fit_and_selection():
    tr = tiny_inspector("llama").run(tiny_ids(40))
    w = NormPlot(tr)
    L = tr.n_layers
    assert w.token == 39  # the last token, like the other views
    pos = w.shown_positions()
    assert pos.tolist() == list(range(1, 40))  # first token left out
    assert len(w._strip.y) == L * 39
    np.testing.assert_allclose(w._strip.y[39:78], w.log_norms()[1, 1:])
    layer_of_point = np.repeat(np.arange(L), 39)
    assert (np.abs(w._strip.x - layer_of_point) <= 0.3).all()  # jittered around its layer
    assert w._strip.names[0] == f"#1 {tr.tokens[1]}"
    # the betas plot is the regression; filled markers exactly where p < 0.05
    ref = norm_regression(tr, stream="attn_out", lags=2)
    np.testing.assert_allclose(w._beta_lines[0].y, ref.betas[:, 0].numpy())
    sig = np.flatnonzero(ref.pvalues[:, 1].numpy() < 0.05)
    np.testing.assert_array_equal(w._beta_sig[1].x, sig)
    assert len(w._beta_sig[1].x) + len(w._beta_ns[1].x) == L
    assert not w._beta_lines[2].visible
    # a click in the strips (bqplot's `selected`) selects that point's token, ringed in every layer
    w._strip.selected = [39 + 7]  # layer 1, 8th drawn token
    assert w.token == 8 and w._strip.selected is None
    np.testing.assert_allclose(w._ring.y, w.log_norms()[:, 8])
    assert w.status.value.startswith(f"token 8: {tr.tokens[8]}")
    # histograms count every shown token in every layer
    assert w._hist.y.shape[0] == L and (w._hist.y.sum(1) == 39).all()
    # stream / lags / first token follow the controls
    w._widgets["stream"].value = "mlp_out"
    w._widgets["lags"].value = 3
    assert (w.stream, w.lags) == ("mlp_out", 3)
    np.testing.assert_allclose(
        w._beta_lines[2].y, norm_regression(tr, stream="mlp_out", lags=3).betas[:, 2]
    )
    assert "mlp_out" in w.beta_fig.title and w._beta_lines[2].visible
    w.mute_sink = False
    assert len(w._strip.y) == L * 40 and (w._hist.y.sum(1) == 40).all()


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


def test_many_tokens_are_subsampled_and_say_so():
    tr = tiny_inspector("gpt2").run(tiny_ids(240))
    w = NormPlot(tr, max_points=300)
    pos = w.shown_positions()
    assert len(pos) == 100 and 0 not in pos and (np.diff(pos) > 0).all()
    assert len(w._strip.y) == 300
    assert "100 of 239 tokens drawn" in w.strip_fig.title
    assert w._hist.y.sum(1).tolist() == [239.0] * tr.n_layers  # histograms use every token
    w._strip.selected = [5]
    assert w.token == int(pos[5])


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
