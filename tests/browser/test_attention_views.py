"""The attention views in Chromium: rendered from a real widget's state, with every change the
view makes sent back to the Python widget and its answer pushed into the page, as a kernel would.
Then the same widgets in a real JupyterLab, driven with the mouse."""

from __future__ import annotations

import pytest
from harness import mount, open_notebook, settle, shot, write_notebook

from _models import default_inspector, tiny_ids, tiny_inspector
from lmscope.widgets.attention_grid import AttentionGrid
from lmscope.widgets.attention_lines import AttentionLines

pytestmark = pytest.mark.browser


def test_lines_draw_hover_and_follow_controls(page):
    tr = tiny_inspector("llama").run(tiny_ids(24))
    w = AttentionLines(tr, layer=1, head=2, threshold=0.0, top_k=24)
    mount(page, w)
    root = page.locator("#root")
    assert int(root.get_attribute("data-lines-total")) == len(w.lines["query"]["data"]) // 2
    assert int(root.get_attribute("data-lines-drawn")) > 0
    # the status line and the labels are text a person can read
    assert page.locator(".lms-al-tok.q").first.text_content() == tr.tokens[0]
    # hover a query token: its lines are isolated and its keys tinted
    page.locator('.lms-al-tok.q[data-i="5"]').hover()
    assert root.get_attribute("data-focus") == "q5"
    assert "attends to" in page.locator(".lms-al-status").text_content()
    tinted = page.locator(".lms-al-tok.k").evaluate_all(
        "ns => ns.filter(n => n.style.background).map(n => Number(n.dataset.i))"
    )
    assert tinted and max(tinted) <= 5  # causal: query 5 sees keys 0..5 only
    shot(page, "attention_lines_hover.png")
    # select another head: Python answers with that head's lines
    page.locator(".lms-al .lms-bar select").nth(2).select_option("3")
    settle(page)
    assert w.head == 3
    # raise the threshold: fewer lines, in the page and from Python
    before = int(root.get_attribute("data-lines-total"))
    page.locator('.lms-al .lms-bar input[type="range"]').fill("0.2")
    page.locator('.lms-al .lms-bar input[type="range"]').dispatch_event("change")
    settle(page)
    assert w.threshold == pytest.approx(0.2)
    assert int(root.get_attribute("data-lines-total")) < before
    # all heads by max, fused words
    page.locator(".lms-al .lms-bar select").nth(2).select_option("max")
    settle(page)
    assert w.head == "max"


def test_lines_scroll_long_columns(page):
    tr = tiny_inspector("llama").run(tiny_ids(200))
    w = AttentionLines(tr, layer=0, head=0)
    mount(page, w)
    shown = page.locator(".lms-al-tok.q:visible").count()
    assert 20 < shown < 60  # only the rows in the window exist as labels
    page.locator(".lms-al-scroll").evaluate("n => { n.scrollTop = 150 * 18; }")
    page.wait_for_timeout(100)
    indices = page.locator(".lms-al-tok.q:visible").evaluate_all("ns => ns.map(n => +n.dataset.i)")
    assert 150 in indices and 0 not in indices


def test_grid_hover_click_and_compare(page):
    ins = tiny_inspector("llama")
    a, b = ins.run(tiny_ids(16, seed=1)), ins.run(tiny_ids(16, seed=2))
    g = AttentionGrid(a, layer=1, compare=b)
    mount(page, g)
    root = page.locator("#root")
    assert root.get_attribute("data-cells") == str(2 * a.n_heads)
    canvas = page.locator(".lms-ag-cell canvas").nth(2)
    canvas.hover(position={"x": 5, "y": 90})
    tip = page.locator(".lms-ag .lms-tip").text_content()
    assert "L1 H2" in tip and "weight" in tip
    page.locator(".lms-ag-cell").nth(2).click()
    settle(page)
    assert (g.layer, g.head) == (1, 2)
    shot(page, "attention_grid_side.png")
    page.locator(".lms-ag .lms-bar select").nth(3).select_option("diff")
    settle(page)
    assert g.mode == "diff" and root.get_attribute("data-cells") == str(a.n_heads)
    page.locator(".lms-ag .lms-bar select").first.select_option("head")
    settle(page)
    assert root.get_attribute("data-cells") == str(a.n_layers)


def test_short_prompt_grid_is_annotated(page):
    ins = tiny_inspector("gpt2")
    tr = ins.run(tiny_ids(6))
    mount(page, AttentionGrid(tr, layer=0))
    root = page.locator("#root")
    assert root.get_attribute("data-annotated") == "true"
    key = page.locator(".lms-ag-key").first.text_content()
    assert all(t in key for t in tr.tokens)
    # drawn at screen resolution with text in it: far more colours than 21 flat cells give
    canvas = page.locator(".lms-ag-cell canvas").first
    colours, width, css = canvas.evaluate(
        """c => {
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
            return [seen.size, c.width, c.getBoundingClientRect().width];
        }"""
    )
    assert width == round(css) and colours > 60
    # past ANNOTATE_MAX tokens: plain heatmaps, no key
    mount(page, AttentionGrid(ins.run(tiny_ids(16)), layer=0))
    assert root.get_attribute("data-annotated") == "false"
    assert page.locator(".lms-ag-key").count() == 0


@pytest.mark.real_model
def test_real_model_views_screenshots(page):
    ins = default_inspector()
    a, b = ins.run("I love you"), ins.run("I hate you")
    lines = AttentionLines(ins.run("The cat sat on the mat because it was tired."), layer=5, head=1)
    mount(page, lines)
    page.locator('.lms-al-tok.q[data-i="8"]').hover()
    shot(page, "attention_lines_real.png")
    grid = AttentionGrid(a, layer=5, compare=b, mute_sink=True)
    mount(page, grid)
    shot(page, "attention_grid_love_hate.png")


# -- JupyterLab / Notebook 7 end to end -------------------------------------------------------
_NOTEBOOK_CELLS = [
    "from ipywidgets import VBox\n"
    "import lmscope\n"
    "from lmscope.widgets.attention_grid import AttentionGrid\n"
    "from lmscope.widgets.attention_lines import AttentionLines\n"
    "ins = lmscope.Inspector.from_pretrained(device='cpu')\n"
    "tr = ins.run('The cat sat on the mat because it was tired.')",
    "lines = AttentionLines(tr, layer=5, head=1)\n"
    "grid = AttentionGrid(tr, layer=4).link(lines)\n"
    "VBox([grid, lines])",
]


@pytest.mark.e2e
@pytest.mark.real_model
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_jupyter_end_to_end(browser, jupyter_server, app):
    name = write_notebook(jupyter_server.root, f"attention_{app}.ipynb", _NOTEBOOK_CELLS)
    page = open_notebook(browser, jupyter_server, name, app)
    try:
        page.locator(".lms-al-stage").wait_for(timeout=120_000)
    except Exception:
        shot(page, f"attention_jupyter_{app}_failed.png")
        raise
    status = page.locator(".lms-al-status")
    # hover a token: its lines are isolated and described
    page.locator('.lms-al-tok.q[data-i="8"]').hover()
    assert "attends to" in status.text_content()
    view = page.locator(".lms-al").locator("xpath=..")
    total = lambda: int(view.get_attribute("data-lines-total"))  # noqa: E731
    before = total()
    # select head "max over heads": the kernel answers with new lines
    page.locator(".lms-al .lms-bar select").nth(2).select_option("max")
    page.wait_for_function(
        f"() => document.querySelector('.lms-al').parentNode.dataset.linesTotal !== '{before}'",
        timeout=30_000,
    )
    # raise the threshold: fewer lines
    before = total()
    slider = page.locator('.lms-al .lms-bar input[type="range"]')
    slider.fill("0.3")
    slider.dispatch_event("change")
    page.wait_for_function(
        f"() => +document.querySelector('.lms-al').parentNode.dataset.linesTotal < {before}",
        timeout=30_000,
    )
    # click a heatmap: the line diagram opens that layer and head
    page.locator('.lms-ag-cell[data-head="7"]').click()
    page.wait_for_function(
        "() => { const s = document.querySelectorAll('.lms-al .lms-bar select');"
        " return s[0].value === '4' && s[2].value === '7'; }",
        timeout=30_000,
    )
    page.locator('.lms-ag-cell[data-head="7"] canvas').hover(position={"x": 60, "y": 60})
    assert "L4 H7" in page.locator(".lms-ag .lms-tip").text_content()
    shot(page, f"attention_jupyter_{app}.png")
    page.close()


def test_explorer_saved_page_stacks_its_views(page, tmp_path):
    """The line diagram starts below the grid's last row of heatmaps (a flex column once sized
    the grid before its canvases took their width, and drew the lines over its second row)."""
    import lmscope

    tr = tiny_inspector("llama").run(tiny_ids(14))  # 4 heads: the grid wraps to two rows
    path = lmscope.AttentionExplorer(tr).save_html(tmp_path / "explorer.html")
    page.goto(path.as_uri())
    page.locator(".lms-al svg line, .lms-al canvas").first.wait_for(timeout=10_000)
    grid_bottom = page.evaluate(
        "Math.max(...[...document.querySelectorAll('.lms-ag-cell canvas')]"
        ".map((c) => c.getBoundingClientRect().bottom))"
    )
    lines_top = page.evaluate("document.querySelector('.lms-al').getBoundingClientRect().top")
    shot(page, "attention_explorer_static_export.png")
    assert grid_bottom <= lines_top


def test_attention_views_say_in_words_why_rows_do_not_sum_to_one_and_what_is_not_shown(page):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    import sweep_models

    import lmscope

    model, _, _ = sweep_models.build("gpt_oss")
    mount(page, AttentionLines(lmscope.Inspector(model).run(tiny_ids(12) % 500), layer=0))
    note = page.locator(".lms-model-note")
    assert note.is_visible() and "rows sum to less than one" in note.text_content()
    shot(page, "attention_sinks_note.png")
    model, _, _ = sweep_models.build("jamba")
    mount(page, AttentionGrid(lmscope.Inspector(model).run(tiny_ids(12) % 500), by="head"))
    assert "not shown: layer 0 has no attention" in note.text_content()
    assert page.locator(".lms-ag-label").all_text_contents() == ["L1 H0"]
    mount(page, AttentionGrid(tiny_inspector("llama").run(tiny_ids(12))))
    assert not page.locator(".lms-model-note").is_visible()
