"""NormPlot in Chromium: its saved page rendered offline (bqplot drawn by Jupyter's HTML widget
manager, token text in tooltips as text), and the live view in JupyterLab and Notebook 7 (a click
on a point selects its token in the kernel). Its Python side: tests/test_norm_plot.py."""

from __future__ import annotations

import numpy as np
import pytest
from harness import shot

from _models import default_inspector
from lmscope.widgets.norm_plot import NormPlot

HOSTILE = (
    "Hungarian rock <b>bold</b> & <img src=x onerror=alert(1)> has been part of the popular "
    "music of Hungary since the early 1960s; the first major bands were Illés and Omega."
)


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
