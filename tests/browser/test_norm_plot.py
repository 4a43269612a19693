"""NormPlot: the composite's Python side, its saved page rendered offline in Chromium (bqplot drawn
by Jupyter's HTML widget manager, token text in tooltips as text), and the live view in
JupyterLab and Notebook 7 (a click on a point selects its token in the kernel)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import shot

from _models import default_inspector, tiny_ids, tiny_inspector
from lmscope.errors import InputError
from lmscope.stats import norm_regression
from lmscope.widgets.norm_plot import NormPlot, emptiest_corner

HOSTILE = (
    "Hungarian rock <b>bold</b> & <img src=x onerror=alert(1)> has been part of the popular "
    "music of Hungary since the early 1960s; the first major bands were Illés and Omega."
)


def test_composite_draws_fit_and_selection():
    tr = tiny_inspector("llama").run(tiny_ids(40))
    w = NormPlot(tr)
    L = tr.n_layers
    assert w.selected_token == 39  # the last token, like the other views
    pos = w.shown_positions()
    assert pos.tolist() == list(range(1, 40))  # first token left out
    assert len(w._strip.y) == L * 39
    np.testing.assert_allclose(w._strip.y[39:78], w.log_norms()[1, 1:])
    layer_of_point = np.repeat(np.arange(L), 39)
    assert (np.abs(w._strip.x - layer_of_point) <= 0.3).all()  # jittered around its layer
    assert w._strip.names[0] == f"#1 {tr.tokens[1]}"
    # the betas plot is the regression; filled markers exactly where p < 0.05
    ref = norm_regression(tr, "attn_out", 2)
    np.testing.assert_allclose(w._beta_lines[0].y, ref.betas[:, 0].numpy())
    sig = np.flatnonzero(ref.pvalues[:, 1].numpy() < 0.05)
    np.testing.assert_array_equal(w._beta_sig[1].x, sig)
    assert len(w._beta_sig[1].x) + len(w._beta_ns[1].x) == L
    assert not w._beta_lines[2].visible
    # a click in the strips (bqplot's `selected`) selects that point's token, ringed in every layer
    w._strip.selected = [39 + 7]  # layer 1, 8th drawn token
    assert w.selected_token == 8 and w._strip.selected is None
    np.testing.assert_allclose(w._ring.y, w.log_norms()[:, 8])
    assert w.status.value.startswith(f"token 8: {tr.tokens[8]}")
    # histograms count every shown token in every layer
    assert w._hist.y.shape[0] == L and (w._hist.y.sum(1) == 39).all()
    # stream / lags / first token follow the controls
    w._widgets["stream"].value = "mlp_out"
    w._widgets["lags"].value = 3
    assert (w.stream, w.lags) == ("mlp_out", 3)
    np.testing.assert_allclose(w._beta_lines[2].y, norm_regression(tr, "mlp_out", 3).betas[:, 2])
    assert "mlp_out" in w.beta_fig.title and w._beta_lines[2].visible
    w.include_first = True
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
    assert w.selected_token == int(pos[5])


def test_bad_arguments_are_clear_errors():
    tr = tiny_inspector("llama").run(tiny_ids(12))
    with pytest.raises(InputError, match="stream must be one of attn_out, mlp_out, resid_post"):
        NormPlot(tr, stream="resid")
    with pytest.raises(InputError, match=r"lags must be in 1\.\.4 .* got 5"):
        NormPlot(tr, lags=5)
    with pytest.raises(InputError, match="max_points"):
        NormPlot(tr, max_points=0)
    with pytest.raises(IndexError, match=r"valid: 0\.\.11"):
        NormPlot(tr, selected_token=12)


@pytest.mark.browser
@pytest.mark.real_model
def test_saved_page_renders_offline_with_text_tooltips(browser, tmp_path):
    ins = default_inspector()
    tr = ins.run(HOSTILE)
    w = NormPlot(tr)
    path = w.save_html(tmp_path / "norms.html")
    page = browser.new_page(viewport={"width": 1200, "height": 820})
    network: list[str] = []
    errors: list[str] = []

    def only_files(route):
        if route.request.url.startswith("file:"):
            return route.continue_()
        network.append(route.request.url)
        return route.abort()

    page.route("**/*", only_files)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    strips = page.locator(".bqplot").first
    strips.locator(".dot").first.wait_for(timeout=60_000)
    k = len(w.shown_positions())
    # every drawn token in every layer, plus the selected token's ring in every layer
    assert strips.locator(".dot").count() == tr.n_layers * k + tr.n_layers
    assert "attention output norms by layer" in strips.text_content()
    # hover the token with markup in it: the tooltip shows it as text, no element is created
    markup = next(i for i, s in enumerate(tr.tokens) if "<" in s)
    j = int(np.flatnonzero(w.shown_positions() == markup)[0])
    strips.locator(".dot").nth(5 * k + j).dispatch_event("mouseover")
    tip = page.locator(".bqplot_tooltip_div").filter(has_text="log norm")
    tip.wait_for()
    assert f"#{markup} {tr.tokens[markup]}" in tip.text_content()
    assert page.locator(".bqplot_tooltip_div b, .bqplot_tooltip_div img").count() == 0
    # the betas figure: one filled marker per significant layer and lag
    betas = page.locator(".bqplot").nth(2)
    n_sig = int(w.regression.significant().sum())
    assert n_sig > 0
    assert "filled: p < 0.05" in betas.text_content()
    betas.locator(".dot").nth(tr.n_layers - 1).wait_for()
    # filled markers are the p < 0.05 ones, hollow the rest; all lags' markers are drawn
    assert betas.locator(".dot").count() == 2 * tr.n_layers
    shot(page, "norm_plot_offline.png")
    assert not network, network  # nothing fetched: require.js, manager and bqplot are inline
    assert not errors, errors
    page.close()


# -- live in JupyterLab / Notebook 7 ----------------------------------------------------------
_CELLS = [
    "import lmscope\n"
    "ins = lmscope.Inspector.from_pretrained(device='cpu')\n"
    f"tr = ins.run({HOSTILE!r})\n"
    "w = lmscope.NormPlot(tr)\nw",
]


@pytest.mark.browser
@pytest.mark.e2e
@pytest.mark.real_model
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_live_click_selects_token_and_stream_switches(browser, jupyter_server, app):
    from harness import open_notebook, write_notebook

    name = write_notebook(jupyter_server.root, f"norms_{app}.ipynb", _CELLS)
    page = open_notebook(browser, jupyter_server, name, app)
    strips = page.locator(".bqplot").first
    try:
        strips.locator(".dot").nth(100).wait_for(timeout=120_000)
        status = page.get_by_text("token ", exact=False).filter(has_text="across layers")
        status.wait_for(timeout=30_000)
        before = status.text_content()
        # a click on layer 3's 5th drawn token: the kernel selects it and answers with the status
        tr = default_inspector().run(HOSTILE)
        pos = NormPlot(tr).shown_positions()
        strips.locator(".dot").nth(3 * len(pos) + 4).dispatch_event("click")
        expected = f"token {int(pos[4])}: {tr.tokens[int(pos[4])]}"
        page.get_by_text(expected, exact=False).wait_for(timeout=30_000)
        assert status.text_content() != before
        # the stream selector: the kernel redraws the strips and the fit for the MLP output
        page.get_by_role("button", name="MLP output").click()
        page.get_by_text("MLP output norms by layer").wait_for(timeout=30_000)
        page.get_by_text("log ‖mlp_out‖[t]", exact=False).wait_for(timeout=30_000)
        shot(page, f"norm_plot_{app}.png")
    except Exception:
        shot(page, f"norm_plot_{app}_failed.png")
        raise
    finally:
        page.close()
