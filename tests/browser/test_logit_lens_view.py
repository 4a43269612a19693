"""The logit-lens table in Chromium, rendered from a real widget's state with a Python round trip
for every change the view makes; plus the composite's plots and HTML export."""

from __future__ import annotations

import pytest
from harness import mount, settle, shot

from _models import default_inspector, tiny_ids, tiny_inspector
from lmscope import lens
from lmscope.widgets.logit_lens import LogitLens

pytestmark = pytest.mark.browser
CELL_W, CELL_H, GUTTER = 66, 19, 58
QA = "Q: What is the capital of France?\nA: Paris\nQ: What is the capital of Poland?\nA:"


def test_table_draws_hovers_and_focuses(page):
    ins = default_inspector()
    tr = ins.run(QA)
    w = LogitLens(tr, top_k=5, targets=[" Warsaw", " Paris"], tokenizer=ins.tokenizer)
    mount(page, w.table)
    root = page.locator(".lms-ll")
    assert root.get_attribute("data-rows") == str(1 + tr.n_layers)  # target row + layers
    assert root.get_attribute("data-cols") == str(tr.seq_len)
    # hover the last layer at the last position: the model's own top-k with probabilities
    canvas = page.locator(".lms-ll-canvas")
    scroll_left = page.locator(".lms-ll-scroll").evaluate("n => n.scrollLeft")
    x = GUTTER + (tr.seq_len - 1) * CELL_W - scroll_left + 20
    canvas.hover(position={"x": x, "y": CELL_H + 8})
    assert root.get_attribute("data-hover") == f"post:{tr.n_layers - 1}:{tr.seq_len - 1}"
    tip = page.locator(".lms-ll .lms-tip").text_content()
    best = w.results["post"].tokens[-1][-1]
    assert best[0] in tip and best[1] in tip and "after block" in tip
    shot(page, "logit_lens_hover.png")
    # click a cell in layer 20 at position 5: Python hears the focus, the plots follow
    page.locator(".lms-ll-scroll").evaluate("n => { n.scrollLeft = 0; }")
    canvas.click(
        position={"x": GUTTER + 5 * CELL_W + 20, "y": (1 + tr.n_layers - 1 - 20) * CELL_H + 8}
    )
    settle(page)
    assert (w.token, w.layer) == (5, 20)
    assert w.scatter_fig.title == "softmax at layer 20 (post)"
    # interleave both stages: twice the layer rows
    page.locator(".lms-ll .lms-bar select").first.select_option("both")
    settle(page)
    assert w.table.stage == "both" and list(w.results) == ["post", "mid"]
    assert root.get_attribute("data-rows") == str(1 + 2 * tr.n_layers)
    shot(page, "logit_lens_both.png")


def test_long_prompt_scrolls_and_draws_only_visible_columns(page):
    tr = tiny_inspector("gpt2").run(tiny_ids(250))
    w = LogitLens(tr, top_k=3)
    mount(page, w.table)
    root = page.locator(".lms-ll")
    first, last = int(root.get_attribute("data-first")), int(root.get_attribute("data-last"))
    assert last - first < 20 and last == 249  # focused on the last position, scrolled there
    # Python synced the columns around the focus only; scrolling asks for the ones in view
    assert int(w.columns["post"].done.sum()) == 32
    page.locator(".lms-ll-scroll").evaluate(f"n => {{ n.scrollLeft = {100 * CELL_W}; }}")
    page.wait_for_timeout(100)
    assert int(root.get_attribute("data-first")) == 100
    page.wait_for_function("() => document.querySelector('.lms-ll').dataset.pending === ''")
    assert w.columns["post"].done[100 : last - first + 101].all()
    assert not w.columns["post"].done[:50].any()  # nor more than a screen either side
    # hover a cell that arrived by request: the eager lens' top-k at that position
    canvas = page.locator(".lms-ll-canvas")
    canvas.hover(position={"x": GUTTER + 3 * CELL_W + 20, "y": 8})
    assert root.get_attribute("data-hover") == f"post:{tr.n_layers - 1}:103"
    tip = page.locator(".lms-ll .lms-tip").text_content()
    eager = lens.logit_lens(tr, top_k=3, positions=[103]).tokens[-1][0]
    assert all(s in tip for s in eager) and "decoding" not in tip
    shot(page, "logit_lens_long.png")


def test_save_html_renders_offline(browser, tmp_path):
    tr = tiny_inspector("gpt2").run(tiny_ids(8))
    w = LogitLens(tr, top_k=2, targets=[3])
    path = tmp_path / "lens.html"
    w.save_html(str(path))
    html = path.read_text()
    assert "widget stood here" not in html  # the plots are drawn too, by the widget manager
    page = browser.new_page()
    blocked = []
    page.route(
        lambda url: not url.startswith(("file:", "blob:", "data:")),
        lambda r: (blocked.append(r.request.url), r.abort()),
    )
    page.goto(path.as_uri())
    page.locator("[data-rendered='1'] canvas").first.wait_for(timeout=10_000)
    # both plots drawn by the page's widget manager: the target line and the softmax points
    page.wait_for_function(
        "document.querySelectorAll('.bqplot.figure path.line').length > 0"
        " && document.querySelectorAll('.bqplot.figure .dot').length >= 100",
        timeout=30_000,
    )
    shot(page, "logit_lens_static_export.png")
    page.close()
    assert not blocked


_CELLS = [
    "import lmscope\n"
    "ins = lmscope.Inspector.from_pretrained(device='cpu')\n"
    "tr = ins.run('Q: What is the capital of France?\\nA: Paris\\nQ: What is the capital of Poland?\\nA:')\n"
    "lens = lmscope.LogitLens(tr, top_k=5, targets=[' Warsaw'])\n"
    "lens",
    "print('focus:', lens.token, lens.layer)",
    "lens.layer = 3",
]


@pytest.mark.e2e
@pytest.mark.real_model
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_logit_lens_in_jupyter(browser, jupyter_server, app):
    from harness import cell_output, open_notebook, run_cell, write_notebook

    name = write_notebook(jupyter_server.root, f"lens_{app}.ipynb", _CELLS)
    page = open_notebook(browser, jupyter_server, name, app)
    try:
        canvas = page.locator(".lms-ll-canvas")
        canvas.wait_for(timeout=120_000)
        page.locator(".bqplot").first.wait_for(timeout=60_000)  # the target line and the scatter
        root = page.locator(".lms-ll")
        n_layers = 30
        # click layer 20 at position 5: the kernel hears the focus
        page.locator(".lms-ll-scroll").evaluate("n => { n.scrollLeft = 0; }")
        canvas.click(
            position={"x": GUTTER + 5 * CELL_W + 20, "y": (1 + n_layers - 1 - 20) * CELL_H + 8}
        )
        run_cell(page, 1)
        cell_output(page, 1).filter(has_text="focus: 5 20").wait_for(timeout=30_000)
        # a Python change of the focused layer reaches the scatter's title
        run_cell(page, 2)
        page.get_by_text("softmax at layer 3", exact=False).first.wait_for(timeout=30_000)
        assert root.get_attribute("data-cols") is not None
        shot(page, f"logit_lens_jupyter_{app}.png")
    except Exception:
        shot(page, f"logit_lens_jupyter_{app}_failed.png")
        raise
    finally:
        page.close()
