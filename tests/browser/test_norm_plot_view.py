"""NormPlot in Chromium: its saved page rendered offline (the strips on a canvas, the histograms
and betas drawn by bqplot through Jupyter's HTML widget manager, token text in tooltips as text),
and the live view in JupyterLab and Notebook 7 (a click on a point selects its token in the
kernel). Its Python side: tests/test_norm_plot.py; at 4,096 tokens: test_long_prompt_views.py."""

from __future__ import annotations

import numpy as np
import pytest
from harness import hover_norm_point, shot

from _models import default_inspector
from lmscope.widgets.norm_plot import NormPlot

HOSTILE = (
    "Hungarian rock <b>bold</b> & <img src=x onerror=alert(1)> has been part of the popular "
    "music of Hungary since the early 1960s; the first major bands were Illés and Omega."
)


# the layer where `position`'s point stands clear of every other drawn point (by 1 px), so a
# mouse on it can only mean that token
_CLEAR_LAYER = """
(position) => {
  const box = document.querySelector('.lms-ns');
  const n = box.layerCount();
  for (let layer = 0; layer < n; layer++) {
    const p = box.pointAt(layer, position);
    if (!Number.isFinite(p.y)) continue;
    let clear = true;
    for (const q of box.drawnPositions()) {
      if (q === position) continue;
      for (let l = 0; l < n && clear; l++) {
        const o = box.pointAt(l, q);
        if (Math.hypot(o.x - p.x, o.y - p.y) < 1) clear = false;
      }
      if (!clear) break;
    }
    if (clear) return layer;
  }
  return -1;
}
"""


def clear_layer(page, position: int) -> int:
    layer = page.evaluate(_CLEAR_LAYER, position)
    assert layer >= 0, f"token {position}'s point overlaps another in every layer"
    return layer


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
    strips = page.locator(".lms-ns")
    page.wait_for_function("Number(document.querySelector('.lms-ns')?.dataset.points) > 0")
    # every token but the muted first one, in every layer, drawn on the canvas
    assert int(strips.get_attribute("data-points")) == tr.n_layers * (tr.seq_len - 1)
    assert "attention output norms by layer" in strips.text_content()
    # hover the token with markup in it: the tooltip shows it as text, no element is created
    markup = next(i for i, s in enumerate(tr.tokens) if "<" in s)
    layer = clear_layer(page, markup)
    hover_norm_point(page, layer, markup)
    tip = strips.locator(".lms-tip")
    assert strips.get_attribute("data-hover") == f"{layer}:{markup}"
    assert f"#{markup} {tr.tokens[markup]}" in tip.text_content()
    shown = float(np.float32(w.log_norms()[layer, markup]))  # the float32 the page holds
    assert f"log norm {shown:.3f}" in tip.text_content()
    assert page.locator(".lms-tip b, .lms-tip img").count() == 0
    # a click selects the token locally (the ring follows; the kernel would update the status)
    page.mouse.down()
    page.mouse.up()
    assert strips.get_attribute("data-selected") == str(markup)
    # the betas figure: one filled marker per significant layer and lag
    betas = page.locator(".bqplot").nth(1)
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
    strips = page.locator(".lms-ns")
    try:
        page.wait_for_function(
            "Number(document.querySelector('.lms-ns')?.dataset.points) > 100", timeout=120_000
        )
        status = page.get_by_text("token ", exact=False).filter(has_text="across layers")
        status.wait_for(timeout=30_000)
        before = status.text_content()
        # a click on layer 3's point of token 5: the kernel selects it and answers with the status
        tr = default_inspector().run(HOSTILE)
        strips.scroll_into_view_if_needed()
        hover_norm_point(page, clear_layer(page, 5), 5)
        page.mouse.down()
        page.mouse.up()
        expected = f"token 5: {tr.tokens[5]}"
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
