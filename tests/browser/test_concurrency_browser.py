"""Concurrency as a person meets it in the browser: selections changed faster than the kernel
answers, and a new prompt submitted while a view is still fetching. Views must end on the data
of their own trace and latest selection, and say so while an answer is on its way."""

from __future__ import annotations

import pytest
from harness import (
    cell_output,
    mount,
    open_notebook,
    run_cell,
    settle,
    shot,
    widget_errors,
    write_notebook,
)

from _models import default_inspector, tiny_ids, tiny_inspector
from lmscope.widgets.attention_lines import AttentionLines

pytestmark = pytest.mark.browser


def test_lines_of_an_earlier_selection_are_marked_pending(page):
    tr = tiny_inspector("llama").run(tiny_ids(20))
    w = AttentionLines(tr, layer=1, head=0, threshold=0.0)
    mount(page, w)
    root = page.locator("#root")
    assert root.get_attribute("data-slice") == "1-1:0"
    assert root.get_attribute("data-pending") == ""
    # the browser changed the head but the kernel has not answered yet
    page.evaluate("() => window.__lmsModel.set('head', 3)")
    assert root.get_attribute("data-pending") == "head"
    assert "updating" in page.locator(".lms-al-status").text_content()
    assert page.locator(".lms-al.pending").count() == 1
    shot(page, "attention_lines_pending.png")
    page.evaluate("() => window.__lmsModel.save_changes()")
    settle(page)
    assert root.get_attribute("data-slice") == "1-1:3"
    assert root.get_attribute("data-pending") == ""
    assert "updating" not in page.locator(".lms-al-status").text_content()


def test_rapid_control_changes_end_on_the_last_selection(page):
    tr = tiny_inspector("llama").run(tiny_ids(30))
    w = AttentionLines(tr, layer=0, head=0, threshold=0.0, top_k=30)
    mount(page, w)
    # 40 changes in one task, each saved without waiting for the kernel's answer
    page.evaluate(
        """() => {
          const [layer, , head] = document.querySelectorAll('.lms-al .lms-bar select');
          for (let i = 0; i < 40; i++) {
            layer.value = String(i % 3);
            layer.dispatchEvent(new Event('change'));
            head.value = String((i * 7) % 4);
            head.dispatchEvent(new Event('change'));
          }
        }"""
    )
    settle(page)
    last_layer, last_head = 39 % 3, (39 * 7) % 4
    root = page.locator("#root")
    assert (w.layer, w.head) == (last_layer, last_head)
    # layer_end only ever moved up to meet layer: the range the controls show is what is drawn
    assert (w.lines["of"]["layer"], w.lines["of"]["layer_end"], w.lines["of"]["head"]) == (
        0,
        2,
        last_head,
    )
    assert root.get_attribute("data-slice") == f"0-2:{last_head}"
    assert page.locator(".lms-al .lms-bar select").nth(1).input_value() == "2"
    assert root.get_attribute("data-pending") == ""
    assert int(root.get_attribute("data-lines-total")) == len(w.lines["value"]["data"]) // 2
    assert w.error == ""


# -- JupyterLab / Notebook 7 -------------------------------------------------------------------
FIRST = "The quick brown fox jumps over the lazy dog because it wanted to see the river."
SECOND = "Warsaw is the capital of Poland; Budapest is the capital of"
THIRD = "I love you. I hate you. Which one did you mean?"
_CELLS = [
    "import lmscope\n"
    "ins = lmscope.Inspector.from_pretrained(device='cpu')\n"
    f"dash = ins.show({FIRST!r}, tab='Attention')\n"
    "dash",
    "lines = dash.views['Attention'].lines\n"
    "print('state', dash.selection, lines.lines['of']['layer'], lines.lines['of']['head'],"
    " repr(dash.error))",
    "tv = dash.view('Tokens')\n"
    "print('tokens', len(tv.tokens), tv._next_tokens(3)[0]['tokens'][0][0].strip(),"
    " repr(tv.error), repr(dash.error))",
]


def _tab(page, title: str) -> None:
    page.locator(".widget-tab .lm-TabBar-tab", has_text=title).click()


@pytest.mark.e2e
@pytest.mark.real_model
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_rapid_clicks_and_a_new_prompt_mid_fetch_in_jupyter(browser, jupyter_server, app):
    name = write_notebook(jupyter_server.root, f"concurrency_{app}.ipynb", _CELLS)
    page = open_notebook(browser, jupyter_server, name, app)
    try:
        cells = page.locator(".lms-ag-cell")
        cells.nth(8).wait_for(timeout=120_000)
        # rapid clicks on every head's heatmap, then one more: the last click wins everywhere
        page.evaluate(
            """() => {
              const cells = [...document.querySelectorAll('.lms-ag-cell')];
              for (const c of cells) c.click();
              for (const c of cells.slice().reverse()) c.click();
              cells[2].click();
            }"""
        )
        lines = page.locator("[data-slice]").filter(visible=True)
        page.wait_for_function(
            "() => { const n = [...document.querySelectorAll('[data-slice]')]"
            ".find((e) => e.offsetParent); return n && n.dataset.slice === '29-29:2'"
            " && n.dataset.pending === ''; }",
            timeout=60_000,
        )
        assert int(lines.get_attribute("data-lines-drawn")) > 0
        last = len(default_inspector().encode(FIRST)) - 1
        run_cell(page, 1)
        cell_output(page, 1).filter(
            has_text=f"state Selection(token={last}, layer=29, head=2) 29 2 ''"
        ).wait_for(timeout=30_000)
        shot(page, f"concurrency_{app}_rapid.png")

        # a new prompt while the token view's first hover is still being answered, then one
        # submitted before a hover on the view it replaces: both requests end harmlessly
        _tab(page, "Tokens")
        page.locator(".lms-token").nth(3).wait_for(timeout=60_000)
        prompt = page.locator(".lms-dashboard textarea")
        run = page.locator(".lms-dashboard button", has_text="Run")
        prompt.fill(SECOND)
        page.evaluate(
            """() => {
              const chip = document.querySelector('.lms-token[data-i="1"]');
              chip.dispatchEvent(new PointerEvent('pointerenter'));
            }"""
        )
        run.click()
        page.locator(".lms-token", has_text="Budapest").wait_for(timeout=60_000)
        prompt.fill(THIRD)
        run.click()
        page.evaluate(
            """() => {
              const chip = document.querySelector('.lms-token[data-i="2"]');
              chip?.dispatchEvent(new PointerEvent('pointerenter'));
            }"""
        )
        page.locator(".lms-token", has_text="hate").first.wait_for(timeout=60_000)
        n_third = len(default_inspector().encode(THIRD))
        chips = page.locator(".lms-token").filter(visible=True)
        assert chips.count() == n_third
        assert "Budapest" not in (page.locator(".lms-tokens").filter(visible=True).text_content())
        # the new view's own first hover fetches the new trace's predictions
        chips.nth(0).dispatch_event("pointerenter")
        view = page.locator(".lms-tokens").filter(visible=True).locator("xpath=..")
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-prefetched]')].some("
            "(e) => e.offsetParent && e.dataset.prefetched === '1')",
            timeout=30_000,
        )
        first_next = chips.nth(0).get_attribute("data-next").strip()
        run_cell(page, 2)
        cell_output(page, 2).filter(has_text=f"tokens {n_third} {first_next} '' ''").wait_for(
            timeout=30_000
        )
        assert view.count() >= 1
        assert page.locator(".lms-dashboard .widget-label", has_text="Error").count() == 0
        assert widget_errors(page) == []
        shot(page, f"concurrency_{app}_new_prompt.png")
    except Exception:
        shot(page, f"concurrency_{app}_failed.png")
        raise
    finally:
        page.close()
