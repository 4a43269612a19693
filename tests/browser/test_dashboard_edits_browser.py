"""The dashboard's edit controls clicked in a live kernel, in JupyterLab and in Notebook 7: select a head in the
attention grid, ablate it (zero), then a neuron of a later layer (mean over texts set from Python), and see the
grid switch to the difference against the original, the lens name the edits, and `dash.edits`
in Python hold both."""

from __future__ import annotations

import pytest
from harness import cell_output, open_notebook, run_cell, shot, widget_errors, write_notebook

pytestmark = pytest.mark.browser

_CELLS = [
    "import lmscope\n"
    "ins = lmscope.Inspector.from_pretrained(device='cpu')\n"
    "dash = lmscope.Dashboard(ins.run('I flew to France last week and visited its capital,'),\n"
    "    inspector=ins, tab='Attention')\n"
    "dash.selection = {'layer': 20, 'head': 0}\n"
    "dash.mean_texts = ['The cat sat on the mat.', 'Berlin is a large city in Germany.']\n"
    "dash",
    "print('edits:', dash.edits, dash.selection)",
]
EDITS_CELL = 1


def _button(page, text: str):
    return page.locator(".lms-dashboard button", has_text=text)


@pytest.mark.e2e
@pytest.mark.real_model
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_ablate_buttons_edit_the_run_in_jupyter(browser, jupyter_server, app):
    name = write_notebook(jupyter_server.root, f"dashboard_edits_{app}.ipynb", _CELLS)
    page = open_notebook(browser, jupyter_server, name, app)
    try:
        cells = page.locator(".lms-ag-cell")
        cells.nth(8).wait_for(timeout=180_000)
        page.locator('.lms-ag-cell[data-head="4"]').click()  # select head 4 of layer 20
        run_cell(page, EDITS_CELL)
        cell_output(page, EDITS_CELL).filter(has_text="head=4)").wait_for(timeout=120_000)

        menu = page.locator(".lms-dashboard .widget-dropdown select")
        menu.select_option(label="zero")
        _button(page, "ablate selected head").click()
        status = page.locator(".lms-dashboard .widget-label", has_text="1 edit(s) · last token")
        status.wait_for(timeout=60_000)
        grid_mode = page.locator(".lms-ag select").first
        page.wait_for_function(
            "() => [...document.querySelectorAll('.lms-ag select')].some(s => s.value === 'diff')",
            timeout=120_000,
        )
        note = page.locator(".lms-edits").filter(visible=True).first
        assert note.text_content() == "edited: Ablate(20, head=4)"
        assert grid_mode.is_visible()
        # layer 20's own patterns are computed before its heads are mixed: unchanged; a later
        # layer's differ from the original's
        legend = page.locator(".lms-ag-legend")
        assert legend.text_content().endswith("full colour = ±1.000")  # all zero: the default
        page.locator(".lms-ag select").nth(1).select_option("22")
        page.wait_for_function(
            "() => !document.querySelector('.lms-ag-legend').textContent.endsWith('±1.000')",
            timeout=60_000,
        )
        shot(page, f"dashboard_edits_{app}_head.png")

        # a mean ablation of a neuron of the layer now selected, with the texts set from Python
        menu.select_option(label="mean of 2 text(s)")
        _button(page, "ablate neuron").click()
        page.locator(".lms-dashboard .widget-label", has_text="2 edit(s) · last token").wait_for(
            timeout=120_000
        )
        run_cell(page, EDITS_CELL)
        printed = cell_output(page, EDITS_CELL).filter(has_text="mode='mean'")
        printed.wait_for(timeout=120_000)
        assert "(Ablate(20, head=4), Ablate(22, neuron=0, mode='mean'))" in printed.text_content()

        # the lens of the edited run names both edits
        page.locator(".widget-tab .lm-TabBar-tab", has_text="Logit lens").click()
        page.locator(".lms-ll-canvas").wait_for(timeout=120_000)
        lens_note = page.locator(".lms-edits").filter(visible=True).first
        lens_note.filter(has_text="neuron=0").wait_for(timeout=120_000)
        assert lens_note.text_content() == (
            "edited: Ablate(20, head=4); Ablate(22, neuron=0, mode='mean')"
        )
        assert page.locator(".lms-dashboard .widget-label", has_text="Error").count() == 0
        assert not widget_errors(page)
        page.locator(".lms-dashboard").screenshot(
            path=f"test-output/screenshots/dashboard_edits_{app}_lens.png"
        )
    except Exception:
        shot(page, f"dashboard_edits_{app}_failed.png")
        raise
    finally:
        page.close()
