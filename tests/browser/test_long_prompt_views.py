"""Every view at 4,096 tokens in Chromium (issue 20): it drew, a hover gives the right token's
feedback, scrolling reaches the last token. A tiny llama with room for 4,096 positions keeps it
cheap; no timings here (those are in benchmarks/bench_long_browser.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf
from harness import hover_norm_point, mount, settle, shot

import lmscope
from _models import _DECODER

pytestmark = pytest.mark.browser
N = 4096
LAST = N - 1


@pytest.fixture(scope="module")
def long_trace():
    torch.manual_seed(0)
    config = tf.LlamaConfig(**(_DECODER | {"max_position_embeddings": N}))
    model = tf.AutoModelForCausalLM.from_config(config).eval()
    ids = torch.randint(3, 320, (N,), generator=torch.Generator().manual_seed(4))
    trace = lmscope.Inspector(model).run(ids)
    assert trace.seq_len == N
    return trace


def scroll_to_end(page, selector: str, axis: str = "Top") -> None:
    page.locator(selector).first.evaluate(
        f"n => {{ n.scroll{axis} = n.scroll{'Height' if axis == 'Top' else 'Width'}; }}"
    )
    page.wait_for_timeout(100)  # the view redraws on its next frame


# -- norm plot: every point on a canvas ------------------------------------------------------
_SELF_HIT = """
([layer, positions]) => {
  // the first of `positions` whose point, at `layer`, is the one the index finds under itself
  const box = document.querySelector('.lms-ns');
  for (const p of positions) {
    const at = box.pointAt(layer, p);
    if (box.hitAt(at.x, at.y) === layer * box.seqLength() + p) return p;
  }
  return -1;
}
"""


def test_norm_strips_draw_every_point_and_hover_any_token(page, long_trace):
    plot = lmscope.NormPlot(long_trace)
    mount(page, plot.strips)
    strips = page.locator(".lms-ns")
    page.wait_for_function("Number(document.querySelector('.lms-ns')?.dataset.points) > 0")
    assert int(strips.get_attribute("data-points")) == long_trace.n_layers * (N - 1)
    # hover a point the mouse can only mean (the last token's, else the highest outlier's)
    layer = 1
    norms = plot.log_norms()[layer]
    order = [LAST, *np.argsort(-norms[1:])[:50] + 1]
    token = page.evaluate(_SELF_HIT, [layer, [int(p) for p in order]])
    assert token > 0
    hover_norm_point(page, layer, token)
    assert strips.get_attribute("data-hover") == f"{layer}:{token}"
    tip = strips.locator(".lms-tip").text_content()
    assert f"#{token} {long_trace.tokens[token]}" in tip
    assert f"log norm {float(np.float32(norms[token])):.3f}" in tip
    # a click selects it in Python, which answers with the status line
    page.mouse.down()
    page.mouse.up()
    settle(page)
    assert plot.token == token and plot.status.value.startswith(f"token {token}:")
    assert strips.get_attribute("data-selected") == str(token)
    shot(page, "long_norm_strips.png")


# -- token colours: a canvas of the text, drawn only where it is visible ----------------------
def test_token_colors_scroll_to_the_last_token_and_hover_it(page, long_trace):
    w = lmscope.TokenColors(long_trace)
    mount(page, w)
    scroll_to_end(page, ".lms-tc-scroll")
    b = page.evaluate(f"document.querySelector('.lms-tc').tokenBox({LAST})")
    top = page.locator(".lms-tc-scroll").first.evaluate("n => n.scrollTop")
    view_h = page.locator(".lms-tc-scroll canvas").first.evaluate("n => n.clientHeight")
    assert top <= b["y"] and b["y"] + b["h"] <= top + view_h  # the last token is in view
    page.locator(".lms-tc-scroll canvas").first.hover(
        position={"x": b["x"] + b["w"] / 2, "y": b["y"] - top + 3}
    )
    assert page.locator(".lms-tc").get_attribute("data-hover") == str(LAST)
    assert f"(#{LAST})" in page.locator(".lms-tc-info").text_content()
    shot(page, "long_token_colors.png")


# -- line diagram: lines and labels of the scroll window only ---------------------------------
def test_lines_scroll_to_the_last_token_and_hover_it(page, long_trace):
    w = lmscope.AttentionLines(long_trace, layer=1, head=0)
    mount(page, w)
    root = page.locator("#root")
    assert int(root.get_attribute("data-lines-drawn")) > 0
    scroll_to_end(page, ".lms-al-scroll")
    label = page.locator(f'.lms-al-tok.q[data-i="{LAST}"]')
    assert label.is_visible()
    label.hover()
    assert root.get_attribute("data-focus") == f"q{LAST}"
    assert "attends to" in page.locator(".lms-al-status").text_content()
    assert int(root.get_attribute("data-lines-drawn")) > 0
    shot(page, "long_attention_lines.png")


# -- logit lens: only the visible columns are drawn -------------------------------------------
_LENS_SCROLL = """() => {
  const s = document.querySelector('.lms-ll-scroll');
  return new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() =>
    done({left: s.scrollLeft, last: Number(s.closest('.lms-ll').dataset.last)}))));
}"""


def test_lens_table_scrolls_to_the_last_position_and_hovers_it(page, long_trace):
    lens = lmscope.LogitLens(long_trace, top_k=3)
    mount(page, lens.table)
    root = page.locator(".lms-ll")
    assert root.get_attribute("data-cols") == str(N)
    # it opens on the selected (last) position, in view, the first column whole
    opened = page.evaluate(_LENS_SCROLL)
    assert opened["left"] > 0 and opened["left"] % 66 == 0 and opened["last"] == LAST
    # and keeps it so when the page narrows under it (a saved page restyled by the widget
    # manager: the view kept its old scroll and lost the selected column off its right edge)
    page.locator("#root").evaluate("n => { n.style.width = '517px'; }")
    narrowed = page.evaluate(_LENS_SCROLL)
    assert narrowed["left"] % 66 == 0 and narrowed["last"] == LAST
    page.locator("#root").evaluate("n => { n.style.width = ''; }")
    page.locator(".lms-ll-scroll").evaluate("n => { n.scrollLeft = 0; }")
    page.wait_for_timeout(100)
    assert int(root.get_attribute("data-first")) == 0
    scroll_to_end(page, ".lms-ll-scroll", axis="Left")
    assert int(root.get_attribute("data-last")) == LAST
    canvas = page.locator(".lms-ll-canvas")
    left = page.locator(".lms-ll-scroll").evaluate("n => n.scrollLeft")
    # hover the last layer's row (the top row, below the target row when the table has one)
    # in the last column (58 px of layer names, then 66 px a column)
    target_rows = int(root.get_attribute("data-rows")) - long_trace.n_layers
    canvas.hover(position={"x": 58 + LAST * 66 - left + 33, "y": 19 * target_rows + 8})
    assert root.get_attribute("data-hover") == f"post:{long_trace.n_layers - 1}:{LAST}"
    post = lens.results["post"]  # filled as columns are decoded: -1 where not yet
    best = int(post.token_ids[-1, LAST, 0])
    assert best >= 0 and post.token_strings[best] in page.locator(".lms-ll .lms-tip").text_content()
    shot(page, "long_logit_lens.png")


# -- token view: chips for the lines in its scroll window only --------------------------------
def test_token_view_scrolls_to_the_last_token_hovers_and_selects_it(page, long_trace):
    w = lmscope.TokenView(long_trace)
    mount(page, w)
    chips = page.locator(".lms-token")
    assert 0 < chips.count() < 1000  # the window's lines, not 4,096 chips
    assert chips.first.locator(".lms-token-text").text_content() == long_trace.tokens[0]
    scroll_to_end(page, ".lms-tokens-row")
    last = page.locator(f'.lms-token[data-i="{LAST}"]')
    assert last.is_visible()
    assert last.locator(".lms-token-id").text_content() == str(int(long_trace.input_ids[LAST]))
    # hovering fetches every position's next tokens once; the last chip's tooltip shows them
    last.hover()
    page.locator("[data-prefetched='1']").wait_for(timeout=30_000)
    assert "next: " in last.get_attribute("title")
    last.click()
    settle(page)
    assert w.token == LAST and last.get_attribute("class") == "lms-token selected"
    assert f"after token {LAST}" in page.locator(".lms-tokens-info").text_content()
    shot(page, "long_token_view.png")
