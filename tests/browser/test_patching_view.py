"""The Patching view in Chromium: the sweep's heatmap from a real widget's state, hover values,
and a click that Python answers with the patched run; then in JupyterLab and Notebook 7 on the
default model."""

from __future__ import annotations

import pytest
from harness import mount, open_notebook, settle, shot, widget_errors, write_notebook

import lmscope
from _models import tiny_ids, tiny_inspector

pytestmark = pytest.mark.browser


def _sweep(site="resid_pre"):
    ins = tiny_inspector("llama")
    clean = tiny_ids(12)
    corrupted = clean.clone()
    corrupted[5] = 200
    top = ins.run(clean).logits[-1].topk(2).indices.tolist()
    return lmscope.patching(
        ins, clean, corrupted, answer=top[0], foil=top[1], site=site, progress=False
    )


def test_heatmap_hover_and_click_apply_one_patch(page):
    result = _sweep()
    view = lmscope.Patching(result, top_k=4)
    mount(page, view)
    root = page.locator("#root")
    assert (root.get_attribute("data-rows"), root.get_attribute("data-cols")) == ("3", "12")
    labels = page.locator(".lms-pt-col").evaluate_all("ns => ns.map(n => n.textContent)")
    assert labels == result.corrupted.tokens  # token strings as text under the columns
    # the differing position at layer 0 is fully red (effect 1), the cell before it white
    canvas = page.locator(".lms-pt-map canvas").first
    box = canvas.bounding_box()
    w = (box["width"] - 34) / 12
    h = box["height"] / 3

    def pixel(row, col):
        x, y = 34 + (col + 0.5) * w, (row + 0.5) * h
        return canvas.evaluate(
            "(c, [x, y]) => { const d = window.devicePixelRatio || 1;"
            " return Array.from(c.getContext('2d').getImageData(x * d, y * d, 1, 1).data); }",
            [x, y],
        )

    assert pixel(0, 5)[:3] == [178, 24, 43] and pixel(0, 4)[:3] == [255, 255, 255]
    canvas.hover(position={"x": 34 + 5.5 * w, "y": 0.5 * h})
    status = page.locator(".lms-pt-status").text_content()
    assert status.startswith("layer 0 · ") and "effect 1.000" in status
    assert f"clean '{result.clean.tokens[5]}'" in status
    assert "Click a cell" in page.locator(".lms-pt-side").text_content()
    canvas.click(position={"x": 34 + 7.5 * w, "y": 1.5 * h})
    settle(page)
    assert (view.layer, view.token, view.head) == (1, 7, -1)
    assert root.get_attribute("data-compared") == view.patch_label
    assert "layer=1" in view.patch_label and "position=7" in view.patch_label
    rows = page.locator(".lms-pt-row")
    assert rows.count() == 2 * 4
    assert rows.first.locator("span").first.text_content() == view.top_tokens[0][0]
    after = result.rerun(1, 7).logits[-1].softmax(-1).topk(4)
    assert view.top_tokens[1] == result.corrupted.token_strings(after.indices.tolist())
    shot(page, "patching_click.png")


def test_head_sweep_labels_heads_and_refuses_a_bad_selection(page):
    result = _sweep("head")
    view = lmscope.Patching(result)
    mount(page, view)
    labels = page.locator(".lms-pt-col").evaluate_all("ns => ns.map(n => n.textContent)")
    assert labels == ["H0", "H1", "H2", "H3"]
    view.select(2, 3)
    assert view.patch_label.startswith("Patch(site='head', layer=2, head=3")
    with pytest.raises(lmscope.LmscopeError, match="token 3 is not in this sweep"):
        view.token = 3  # a head sweep has no position selection
    shot(page, "patching_heads.png")


_CELLS = [
    "import lmscope\n"
    "ins = lmscope.Inspector.from_pretrained(device='cpu')\n"
    "sweep = lmscope.patching(ins, 'I flew to France last week and visited its capital,',\n"
    "    'I flew to Germany last week and visited its capital,', answer=' Paris', foil=' Berlin',\n"
    "    layers=range(0, 30, 3), progress=False)\n"
    "view = lmscope.Patching(sweep)\n"
    "view",
]


@pytest.mark.e2e
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_patching_in_jupyter(browser, jupyter_server, app):
    name = write_notebook(jupyter_server.root, f"patching_{app}.ipynb", _CELLS)
    page = open_notebook(browser, jupyter_server, name, app)
    try:
        page.locator(".lms-pt-map canvas").first.wait_for(timeout=180_000)
        canvas = page.locator(".lms-pt-map canvas").first
        box = canvas.bounding_box()
        w, h = (box["width"] - 34) / 11, box["height"] / 10
        canvas.hover(position={"x": 34 + 3.5 * w, "y": 0.5 * h})
        status = page.locator(".lms-pt-status").text_content()
        assert "Germany' (position 3, clean '·France')" in status and "effect 1.000" in status
        canvas.click(position={"x": 34 + 3.5 * w, "y": 0.5 * h})
        page.locator(".lms-pt-tops").wait_for(timeout=60_000)
        patched = page.locator(".lms-pt-row").nth(1).text_content()
        assert "Paris" in patched  # the layer-0 patch of ' France' restores the clean answer
        assert not widget_errors(page)
        shot(page, f"patching_jupyter_{app}.png")
    except Exception:
        shot(page, f"patching_jupyter_{app}_failed.png")
        raise


def test_a_view_of_an_edited_run_shows_its_edits_above_it(page):
    from lmscope.widgets.attention_grid import AttentionGrid

    ins = tiny_inspector("llama")
    mount(page, AttentionGrid(ins.run(tiny_ids(12), edits=[lmscope.Ablate(1, head=2)])))
    note = page.locator(".lms-edits")
    assert note.text_content() == "edited: Ablate(1, head=2)" and note.is_visible()
    shot(page, "edited_grid.png")
    mount(page, AttentionGrid(ins.run(tiny_ids(12))))
    assert not page.locator(".lms-edits").is_visible()
