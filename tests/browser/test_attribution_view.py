"""The Attribution view in Chromium: the grid from a real widget's state, hover values, a click
on a head answered by Python with its source-position shares; then in JupyterLab and Notebook 7."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from harness import mount, open_notebook, settle, shot, write_notebook

from _models import default_inspector, tiny_ids, tiny_inspector
from lmscope.widgets.attribution import Attribution

pytestmark = pytest.mark.browser


def _cell_center(page, kind_index: int, layer: int):
    """Client coordinates of a grid cell, from the layout the view drew with."""
    return page.evaluate(
        """([column, layer]) => {
            const c = document.querySelector('.lms-attr canvas');
            const box = c.getBoundingClientRect();
            return [column, layer, box.left, box.top];
        }""",
        [kind_index, layer],
    )


def _click_head(page, widget, layer: int, head: int, *, hover_only: bool = False):
    from math import floor

    n_layers, n_heads = widget.n_layers, widget.n_heads
    cell_w = max(8, min(30, floor(560 / n_heads)))
    cell_h = max(6, min(16, floor(640 / n_layers)))
    x, y = 28 + head * cell_w + cell_w / 2, 18 + layer * cell_h + cell_h / 2
    canvas = page.locator(".lms-attr canvas")
    if hover_only:
        canvas.hover(position={"x": x, "y": y})
    else:
        canvas.click(position={"x": x, "y": y})


def test_grid_hover_and_click_shows_sources(page):
    tr = tiny_inspector("gpt2").run(tiny_ids(12))
    w = Attribution(tr, target=11, foil=7)
    mount(page, w)
    root = page.locator("#root")
    head = page.locator(".lms-attr-head").text_content()
    assert 'logit("#11") \u2212 logit("#7")' in head and f"after token {tr.seq_len - 1}" in head
    assert "unexplained" in page.locator(".lms-attr-parts").text_content()
    _click_head(page, w, 1, 2, hover_only=True)
    value = float(w.result.heads[1, 2])
    tip = page.locator(".lms-attr .lms-tip").text_content()
    assert tip.startswith("L1 H2: ") and f"{abs(value):.3f}" in tip
    _click_head(page, w, 1, 2)
    settle(page)
    assert (w.layer, w.head) == (1, 2)
    assert root.get_attribute("data-selected") == "1,2"
    assert root.get_attribute("data-sources") == str(tr.seq_len)
    chips = page.locator(".lms-attr-src")
    shares = chips.evaluate_all("ns => ns.map(n => +n.dataset.share)")
    assert sum(shares) == pytest.approx(value, abs=1e-4)
    assert chips.first.text_content() == tr.tokens[0]  # token text, as text
    assert "L1 H2" in page.locator(".lms-attr-sources-title").text_content()
    shot(page, "attribution_tiny.png")


def test_blocks_not_split_yet_are_grey_until_a_click_splits_one(page, monkeypatch):
    """A long prompt's first state (here forced at 24 tokens): every block's share from the
    stream, its heads and MLP still to come; a click on a head splits its block at once."""
    from lmscope.widgets import attribution as attribution_widget

    monkeypatch.setattr(attribution_widget, "SPLIT_AT_ONCE", 8)
    tr = tiny_inspector("llama").run(tiny_ids(24))
    with ThreadPoolExecutor(1) as pool:  # no running loop there: nothing is split while idle
        w = pool.submit(lambda: Attribution(tr, target=11, foil=7)).result()
    assert w.result.pending == (0, 1, 2)
    mount(page, w)
    root = page.locator("#root")
    assert root.get_attribute("data-exact") == "false"
    assert "0 of 3 blocks" in page.locator(".lms-attr-status").text_content()
    assert "blocks not split yet" in page.locator(".lms-attr-parts").text_content()
    shot(page, "attribution_pending.png")
    _click_head(page, w, 1, 2, hover_only=True)
    block = float(w.result.blocks[1])
    tip = page.locator(".lms-attr .lms-tip").text_content()
    assert tip.startswith("L1 H2: not split yet (block 1: ") and f"{abs(block):.3f}" in tip
    _click_head(page, w, 1, 2)
    settle(page)
    assert w.result.pending == (0, 2) and root.get_attribute("data-sources") == str(tr.seq_len)
    assert "1 of 3 blocks" in page.locator(".lms-attr-status").text_content()
    _click_head(page, w, 1, 2, hover_only=True)
    tip = page.locator(".lms-attr .lms-tip").text_content()
    assert f"{abs(float(w.result.heads[1, 2])):.3f}" in tip and "not split" not in tip


def test_an_impossible_foil_is_shown_not_raised(page):
    tr = tiny_inspector("llama").run(tiny_ids(12))
    w = Attribution(tr, target=11)
    w.foil = 11  # set before mounting: the state the page gets carries the error
    mount(page, w)
    assert "same token" in page.locator(".lms-error").text_content()


@pytest.mark.real_model
def test_a_long_prompts_sources_show_the_largest_in_order(page):
    """400 tokens: a head's row draws its 255 largest earlier sources and the attributed token
    (not 400 chips), in position order, with the left-out tokens marked and their share said."""
    ins = default_inspector()
    ids = torch.randint(100, 20_000, (400,), generator=torch.Generator().manual_seed(4))
    tr = ins.run(ids)
    w = Attribution(tr, target=int(tr.logits[-1].argmax()), layer=5, head=1)
    mount(page, w)
    root = page.locator("#root")
    assert root.get_attribute("data-sources") == "256"
    chips = page.locator(".lms-attr-src")
    positions = chips.evaluate_all("ns => ns.map(n => +n.dataset.position)")
    shares = chips.evaluate_all("ns => ns.map(n => +n.dataset.share)")
    assert positions == sorted(positions) and positions[-1] == tr.seq_len - 1
    sources = w.result.sources(5, 1)
    earlier = sources[:-1].abs().argsort(descending=True)[:255].sort().values.tolist()
    assert positions[:-1] == earlier
    assert shares == pytest.approx(sources[positions].tolist(), abs=1e-5)
    assert chips.last.get_attribute("class").split() == ["lms-attr-src", "at"]
    assert page.locator(".lms-attr-gap").count() > 0
    assert "255 of 399 earlier tokens" in page.locator(".lms-attr-sources-title").text_content()
    shot(page, "attribution_long_sources.png")


@pytest.mark.real_model
def test_real_model_screenshot(page):
    tr = default_inspector().run("Paris is the capital of France, and Warsaw is the capital of")
    w = Attribution(tr, target=" Poland", foil=" Warsaw")
    mount(page, w)
    _click_head(page, w, 24, 4)
    settle(page)
    assert (w.layer, w.head) == (24, 4)
    assert "\u00b7Warsaw" in page.locator(".lms-attr-src").nth(8).text_content()
    shot(page, "attribution_poland.png")


_NOTEBOOK_CELLS = [
    "import lmscope\n"
    "ins = lmscope.Inspector.from_pretrained(device='cpu')\n"
    "tr = ins.run('Paris is the capital of France, and Warsaw is the capital of')",
    "view = lmscope.Attribution(tr, target=' Poland', foil=' Warsaw')\nview",
    "print('selected', view.layer, view.head, round(float(view.result.sources(24, 4).sum()), 3))",
]


@pytest.mark.e2e
@pytest.mark.real_model
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_jupyter_end_to_end(browser, jupyter_server, app):
    from harness import cell_output, run_cell

    name = write_notebook(jupyter_server.root, f"attribution_{app}.ipynb", _NOTEBOOK_CELLS)
    page = open_notebook(browser, jupyter_server, name, app)
    try:
        page.locator(".lms-attr canvas").wait_for(timeout=120_000)
    except Exception:
        shot(page, f"attribution_jupyter_{app}_failed.png")
        raise
    assert "Poland" in page.locator(".lms-attr-head").text_content()

    class Shape:  # the default model's grid
        n_layers, n_heads = 30, 9

    _click_head(page, Shape, 24, 4)
    page.wait_for_function(
        "() => document.querySelectorAll('.lms-attr-src').length > 0", timeout=30_000
    )
    assert "L24 H4" in page.locator(".lms-attr-sources-title").text_content()
    run_cell(page, 2)  # the kernel has the head the click selected
    cell_output(page, 2).filter(has_text="selected 24 4").wait_for(timeout=30_000)
    shot(page, f"attribution_jupyter_{app}.png")
    page.close()


_DASHBOARD_CELLS = [
    "import lmscope\n"
    "ins = lmscope.Inspector.from_pretrained(device='cpu')\n"
    "dash = ins.show('Paris is the capital of France, and Warsaw is the capital of',"
    " tab='Attribution')\n"
    "dash",
    "view, lens = dash.views['Attribution'], dash.views.get('Logit lens')\n"
    "top = lens and int(lens.results['post'].token_ids[dash.selection.layer, view.token, 0])\n"
    "print('asked', view.token, view.target == top, dash.selection)",
]


@pytest.mark.e2e
@pytest.mark.real_model
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_dashboard_links_attribution_in_jupyter(browser, jupyter_server, app):
    from harness import cell_output, click_lens_cell, run_cell

    def tab(title: str) -> None:
        page.locator(".widget-tab .lm-TabBar-tab", has_text=title).click()

    name = write_notebook(jupyter_server.root, f"attribution_dash_{app}.ipynb", _DASHBOARD_CELLS)
    page = open_notebook(browser, jupyter_server, name, app)
    try:
        page.locator(".lms-attr canvas").wait_for(timeout=120_000)
        # a click on head 4 of layer 24: its sources, and the shared selection moves
        _click_head(page, type("Shape", (), {"n_layers": 30, "n_heads": 9}), 24, 4)
        page.locator(".lms-attr-sources-title button").wait_for(timeout=30_000)
        shot(page, f"attribution_dashboard_{app}.png")
        # "open in attention view": the attention tab shows that head in the line diagram
        page.locator(".lms-attr-sources-title button").click()
        page.wait_for_function(
            "() => { const s = document.querySelectorAll('.lms-al .lms-bar select');"
            " return s.length > 2 && s[0].value === '24' && s[2].value === '4'; }",
            timeout=120_000,
        )
        shot(page, f"attribution_dashboard_{app}_attention.png")
        # a click on a lens cell (position 3) attributes that cell's top token there
        tab("Logit lens")
        canvas = page.locator(".lms-ll-canvas")
        canvas.wait_for(timeout=120_000)
        click_lens_cell(page, 3, 4)
        # the kernel has heard the click once the dashboard's status line names the token
        page.locator(".lms-dashboard .widget-label", has_text="token 3 ").wait_for(timeout=60_000)
        run_cell(page, 1)
        cell_output(page, 1).filter(has_text="asked 3 True").wait_for(timeout=60_000)
        tab("Attribution")
        page.locator(".lms-attr-head", has_text="after token 3").wait_for(timeout=30_000)
        shot(page, f"attribution_dashboard_{app}_from_lens.png")
    except Exception:
        shot(page, f"attribution_dashboard_{app}_failed.png")
        raise
    finally:
        page.close()
