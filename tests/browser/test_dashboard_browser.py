"""The quickstart notebook end to end in JupyterLab and Notebook 7: run all cells, open every
tab (each view draws), click in one view and see the selection move in the others and in
Python; plus the dashboard's static export rendered offline."""

from __future__ import annotations

import pathlib
import shutil

import pytest
from harness import cell_output, click_lens_cell, open_notebook, run_cell, shot

from _models import tiny_ids, tiny_inspector
from lmscope.widgets.dashboard import Dashboard

pytestmark = pytest.mark.browser
QUICKSTART = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"
SELECTION_CELL = 4  # `dash.selection` (markdown cells count)


def _tab(page, title: str):
    tab = page.locator(".widget-tab .lm-TabBar-tab", has_text=title)
    tab.click()
    return tab


def _selection_printed(page, text: str) -> None:
    run_cell(page, SELECTION_CELL)
    cell_output(page, SELECTION_CELL).filter(has_text=text).wait_for(timeout=120_000)


@pytest.mark.e2e
@pytest.mark.real_model
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_quickstart_dashboard_in_jupyter(browser, jupyter_server, app):
    name = f"quickstart_{app}.ipynb"
    shutil.copy(QUICKSTART, jupyter_server.root / name)
    page = open_notebook(browser, jupyter_server, name, app)
    try:
        # the last cell set token 12 from Python: the token view shows it
        page.locator(".lms-token.selected[data-i='12']").wait_for(timeout=120_000)

        # a click on a token chip moves the shared selection
        page.locator(".lms-token[data-i='5']").click()
        page.locator(".lms-token.selected[data-i='5']").wait_for()
        _selection_printed(page, "Selection(token=5, layer=20, head=3)")

        # token colors, built on first open, start on that token; a click there comes back
        _tab(page, "Colors")
        info = page.locator(".lms-tc-info")
        info.filter(has_text="(#5)").wait_for(timeout=120_000)
        page.wait_for_function(
            "() => { const v = document.querySelector('.lms-tc');"
            " return v && v.tokenBox && v.tokenBox(8); }"
        )
        box = page.evaluate("document.querySelector('.lms-tc').tokenBox(8)")
        page.locator(".lms-tc-scroll canvas").first.click(
            position={"x": box["x"] + box["w"] / 2, "y": box["y"] + 3}
        )
        info.filter(has_text="(#8)").wait_for(timeout=30_000)
        shot(page, f"dashboard_{app}_colors.png")
        _tab(page, "Tokens")
        page.locator(".lms-token.selected[data-i='8']").wait_for(timeout=30_000)

        # the logit lens: a click on a cell selects its position and layer everywhere
        _tab(page, "Logit lens")
        canvas = page.locator(".lms-ll-canvas")
        canvas.wait_for(timeout=120_000)
        page.locator(".widget-tab .bqplot").filter(visible=True).first.wait_for(timeout=60_000)
        click_lens_cell(page, 3, 4)
        _selection_printed(page, "Selection(token=3,")
        shot(page, f"dashboard_{app}_lens.png")
        page.locator(".lms-dashboard").screenshot(
            path=f"test-output/screenshots/dashboard_{app}_lens_view.png"
        )
        _tab(page, "Tokens")
        page.locator(".lms-token.selected[data-i='3']").wait_for(timeout=30_000)

        # attention: one heatmap per head of the selected layer; a click picks the head
        _tab(page, "Attention")
        cells = page.locator(".lms-ag-cell")
        cells.nth(8).wait_for(timeout=120_000)
        assert cells.count() == 9
        page.locator('.lms-ag-cell[data-head="6"]').click()
        _selection_printed(page, "head=6)")
        page.wait_for_function(
            "() => Number(document.querySelector('[data-lines-drawn]')?.dataset.linesDrawn) > 0"
        )
        shot(page, f"dashboard_{app}_attention.png")

        # norms: the strips draw their points, the histograms (bqplot) their lines
        _tab(page, "Norms")
        page.locator(".widget-tab .lms-ns[data-points]").filter(visible=True).wait_for(
            timeout=120_000
        )
        page.locator(".widget-tab .bqplot .dot").filter(visible=True).first.wait_for(
            timeout=120_000
        )
        shot(page, f"dashboard_{app}_norms.png")

        _tab(page, "Tokens")
        page.locator(".lms-dashboard").scroll_into_view_if_needed()
        assert page.locator(".lms-dashboard .widget-label", has_text="Error").count() == 0
        page.locator(".lms-dashboard").screenshot(
            path=f"test-output/screenshots/dashboard_{app}.png"
        )
    except Exception:
        shot(page, f"dashboard_{app}_failed.png")
        raise
    finally:
        page.close()


def test_dashboard_export_renders_offline(browser, tmp_path):
    trace = tiny_inspector("llama").run(tiny_ids(10))
    dash = Dashboard(trace)
    dash.selection = {"token": 4}
    path = dash.save_html(tmp_path / "dash.html")
    page = browser.new_page()
    requests: list[str] = []

    def block(route):
        requests.append(route.request.url)
        route.abort()

    page.route(lambda url: not url.startswith(("file:", "blob:", "data:")), block)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.locator("[data-rendered='1']").nth(5).wait_for(timeout=20_000)
    assert page.locator(".lms-token.selected[data-i='4']").count() == 1
    assert page.locator(".lms-attr canvas").count() == 1  # the attribution grid, offline too
    assert page.locator(".lms-ag-cell").count() == trace.n_heads
    assert page.locator(".lms-ll-canvas").count() == 1
    assert "(#4)" in page.locator(".lms-tc-info").text_content()
    labels = page.locator(".lms-export-label").all_text_contents()
    assert labels == ["Tokens", "Attention", "Logit lens", "Attribution", "Colors", "Norms"]
    # the bqplot figures are drawn by the inlined widget manager: lens plots and norm plots
    # (histograms, betas); the norm strips are a canvas view
    page.locator(".bqplot").nth(3).locator(".dot").first.wait_for(timeout=30_000)
    assert page.locator(".bqplot").count() == 4
    assert int(page.locator(".lms-ns").get_attribute("data-points")) == 3 * 9
    shot(page, "dashboard_static_export.png")
    page.close()
    assert not requests and not errors


def test_an_edited_dashboard_shows_its_edits_and_the_difference(browser, tmp_path):
    import lmscope

    ins = tiny_inspector("llama")
    dash = Dashboard(ins.run(tiny_ids(10)), inspector=ins, tab="Attention")
    dash.selection = {"layer": 2, "head": 1}
    dash.edits = [lmscope.Ablate(0, head=1), lmscope.Ablate(1, neuron=3)]
    path = dash.save_html(tmp_path / "edited.html")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.locator("[data-rendered='1']").nth(5).wait_for(timeout=20_000)
    # every lmscope view names the edits above it; the grid is one difference panel
    notes = page.locator(".lms-edits").filter(visible=True)
    assert notes.count() >= 6  # tokens, grid, lines, lens, attribution, colors, norms
    assert set(notes.all_text_contents()) == {"edited: Ablate(0, head=1); Ablate(1, neuron=3)"}
    title = page.locator(".lms-ag-title").filter(visible=True)
    assert title.count() == 1 and "(edited)  −  " in title.text_content()
    assert page.locator(".lms-ag-cell").count() == ins.parts.n_heads
    shot(page, "dashboard_edited_export.png")
    page.close()
    assert not errors
