"""Token strings are untrusted: every view shows markup-like tokens as text and runs no script."""

from __future__ import annotations

import pytest
from harness import mount

from _models import tiny_ids, tiny_inspector
from lmscope.widgets.attention_grid import AttentionGrid
from lmscope.widgets.attention_lines import AttentionLines
from lmscope.widgets.logit_lens import LogitLens
from lmscope.widgets.token_colors import TokenColors
from lmscope.widgets.tokens import TokenView

pytestmark = pytest.mark.browser

HOSTILE = [
    "<img src=x onerror=window.pwned=1>",
    "<script>window.pwned=2</script>",
    "<b>bold</b>",
    '"><svg onload=window.pwned=3>',
    "&lt;escaped&gt;",
    "\u202eevil",
]


def _hostile_trace(n: int = 12):
    trace = tiny_inspector("llama").run(tiny_ids(n))
    trace.tokens = [HOSTILE[i % len(HOSTILE)] for i in range(n)]
    trace.token_texts = list(trace.tokens)
    return trace


VIEWS = {
    "tokens": lambda tr: TokenView(tr),
    "attention_lines": lambda tr: AttentionLines(tr, layer=1, head=0, threshold=0.0),
    "attention_grid": lambda tr: AttentionGrid(tr, layer=1),
    "logit_lens": lambda tr: LogitLens(tr, top_k=3).table,
    "token_colors": lambda tr: TokenColors(tr),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_markup_in_tokens_stays_text(page, name):
    trace = _hostile_trace()
    mount(page, VIEWS[name](trace))
    page.wait_for_timeout(200)
    injected = page.locator("#root img, #root script, #root b, #root svg")
    assert injected.count() == 0
    assert page.evaluate("window.pwned") is None
    # where the view shows token labels as DOM text, the markup is visible literally
    text = page.locator("#root").text_content()
    if "<img" in text:
        assert "<img src=x onerror=window.pwned=1>" in text
