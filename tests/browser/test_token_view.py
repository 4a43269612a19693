"""TokenView (the demonstrator view of the widget platform) in a real browser: selection both
ways, one bulk request, errors under the view, theme variables, the static HTML export with the
network blocked, and JupyterLab / Notebook 7 end to end."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch
from harness import cell_output, mount, run_cell, settle, shot, widget_errors

from _models import tiny_ids, tiny_inspector
from lmscope.widgets.tokens import TokenView

pytestmark = pytest.mark.browser


def _token_view(hostile: bool = False):
    trace = tiny_inspector("gpt2").run(tiny_ids(8))
    if hostile:
        trace.tokens = ["<img src=x onerror=window.pwned=1>", "<b>bold</b>", *trace.tokens[2:]]
    return trace, TokenView(trace)


def test_demonstrator_renders_selects_and_answers(page):
    trace, view = _token_view()
    mount(page, view)
    chips = page.locator(".lms-token")
    assert chips.count() == 8
    assert chips.nth(4).locator(".lms-token-id").text_content() == str(int(trace.input_ids[4]))
    chips.nth(4).click()
    settle(page)
    assert view.token == 4  # the click reached Python
    assert page.locator(".lms-token.selected").count() == 1
    assert "after token 4" in page.locator(".lms-tokens-info").text_content()
    assert view.predictions[0].split()[0] in page.locator(".lms-tokens-info").text_content()
    shot(page, "platform_tokens.png")


def test_demonstrator_prefetches_in_one_request(page):
    trace, view = _token_view()
    calls = []
    original = view._next_tokens  # the instance attribute wins over the class's handler
    view._next_tokens = lambda **kw: (calls.append(kw), original(**kw))[1]
    mount(page, view)
    page.locator(".lms-token").nth(2).hover()
    page.locator("[data-prefetched='1']").wait_for(timeout=10_000)
    page.locator(".lms-token").nth(5).hover()
    settle(page)
    assert calls == [{"top_k": 3}]  # one bulk fetch, not one per hover
    probs = torch.softmax(trace.logits[4].float(), dim=-1)
    best = int(torch.argmax(probs))
    chip = page.locator(".lms-token").nth(4)
    assert chip.get_attribute("data-next") == f"#{best}"
    assert f"next: #{best} {probs[best].item() * 100:.1f}%" in chip.get_attribute("title")


def test_failed_request_shows_under_the_view(page):
    fake = SimpleNamespace(tokens=["a", "b", "c"], input_ids=torch.tensor([1, 2, 3]))
    mount(page, TokenView(fake))
    page.locator(".lms-token").nth(1).hover()
    page.locator(".lms-error", has_text="kept no logits").wait_for(timeout=10_000)
    assert page.locator(".lms-view").get_attribute("data-prefetched").startswith("failed:")


def test_token_text_is_never_markup(page):
    _, view = _token_view(hostile=True)
    mount(page, view)
    assert page.locator(".lms-token img, .lms-token b").count() == 0
    assert page.locator(".lms-token-text").first.text_content().startswith("<img")
    assert page.evaluate("window.pwned") is None


def test_errors_show_under_the_view(page):
    _, view = _token_view()
    mount(page, view)
    view.error = "IndexError: layer 40 is out of range"
    mount(page, view)
    box = page.locator(".lms-error")
    assert box.text_content() == "IndexError: layer 40 is out of range"
    assert box.is_visible()
    # styled by the shared stylesheet (`_css`): a red rule on the left, not bare text
    assert (
        page.evaluate("getComputedStyle(document.querySelector('.lms-error')).borderLeftWidth")
        == "3px"
    )
    shot(page, "platform_error.png")
    view.error = ""
    mount(page, view)
    assert page.locator(".lms-error").is_hidden()


_DARK = """:root { --jp-ui-font-color1: rgb(224, 224, 224); --jp-ui-font-color2: rgb(170, 170, 170);
  --jp-layout-color0: #111111; --jp-border-color2: rgb(80, 80, 80); }
body { background: #111111; }"""


def test_views_follow_jupyterlab_theme_variables(page):
    _, view = _token_view()
    mount(page, view)
    color = "getComputedStyle(document.querySelector('.lms-tokens-info')).color"
    light = page.evaluate(color)
    page.add_style_tag(content=_DARK)
    assert page.evaluate(color) == "rgb(170, 170, 170)" != light
    assert page.evaluate("getComputedStyle(document.querySelector('.lms-view')).color") == (
        "rgb(224, 224, 224)"
    )
    shot(page, "platform_tokens_dark.png")


def test_save_html_renders_offline(browser, tmp_path):
    trace, view = _token_view(hostile=True)
    view.token = 3
    path = view.save_html(tmp_path / "tokens.html")
    page = browser.new_page()
    requests = []

    def block(route):
        requests.append(route.request.url)
        route.abort()

    page.route(lambda url: not url.startswith(("file:", "blob:", "data:")), block)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.locator("[data-rendered='1']").wait_for(timeout=10_000)
    assert page.locator(".lms-token").count() == trace.seq_len
    assert page.locator(".lms-token.selected .lms-token-id").text_content() == str(
        int(trace.input_ids[3])
    )
    assert page.locator(".lms-token img").count() == 0
    # a change that needs Python says so instead of failing silently
    page.locator(".lms-token").nth(5).click()
    # and so does the request for more data that the first hover sent
    note = page.locator(".lms-static-note").text_content()
    assert "changing token" in note and "fetching 'next_tokens' data" in note
    assert "needs a running kernel" in note
    shot(page, "platform_static_export.png")
    page.close()
    assert not requests and not errors


def _text_luminance(page) -> float:
    rgb = page.evaluate(
        "getComputedStyle(document.querySelector('.lms-tokens-info')).color.match(/\\d+/g)"
    )
    return sum(w * int(c) for w, c in zip((0.2126, 0.7152, 0.0722), rgb, strict=False)) / 255


def _check_dark_theme(page) -> None:
    """Lab's dark theme reaches the view through --jp-* variables, live."""
    change = "(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})"
    assert _text_luminance(page) < 0.5
    try:
        page.evaluate(change, "JupyterLab Dark")
        page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
        page.wait_for_timeout(300)
        assert _text_luminance(page) > 0.5
        shot(page, "platform_tokens_lab_dark.png")
    finally:
        # the theme is a user setting: later Lab tests must start light again
        page.evaluate(change, "JupyterLab Light")
        page.wait_for_function("document.body.dataset.jpThemeLight === 'true'")


_CELLS = [
    "import sys\n"
    "import lmscope\n"
    "from lmscope import TokenView\n"
    "ins = lmscope.Inspector.from_pretrained(device='cpu')\n"
    "view = TokenView(ins.run('The capital of France is Paris.'))\n"
    "view",
    "print('selected:', view.token, 'tokens:', len(view.tokens), 'kernel:', sys.prefix)",
    "view.token = 2 if view.token == 5 else view.token",
]


@pytest.mark.e2e
@pytest.mark.real_model
@pytest.mark.parametrize("front_end", ["jupyter_lab", "notebook7"])
def test_demonstrator_in_jupyter(browser, request, front_end):
    jupyter = request.getfixturevalue(front_end)
    page = jupyter.run(browser, _CELLS, name=f"tokens_{jupyter.app}.ipynb", wait_for=".lms-token")
    try:
        chips = page.locator(".lms-token")
        assert chips.nth(0).locator(".lms-token-text").text_content() == "The"
        # a click in the view changes the Python trait
        chips.nth(5).click()
        page.locator(".lms-token.selected[data-i='5']").wait_for()
        run_cell(page, 1)
        printed = cell_output(page, 1).filter(has_text="selected: 5")
        printed.wait_for(timeout=30_000)
        # the notebook ran in this project's venv, not some other python3 kernel
        assert f"kernel: {sys.prefix}" in printed.text_content()
        assert f"tokens: {chips.count()} " in printed.text_content()
        # a Python trait change redraws the view, and Python's answer arrives with it
        run_cell(page, 2)
        page.locator(".lms-token.selected[data-i='2']").wait_for(timeout=30_000)
        page.locator(".lms-tokens-info", has_text="after token 2").wait_for(timeout=30_000)
        page.locator(".lms-view").first.scroll_into_view_if_needed()
        shot(page, f"platform_tokens_{jupyter.app}.png")
        if jupyter.app == "lab":
            _check_dark_theme(page)
    except Exception:
        shot(page, f"platform_tokens_{jupyter.app}_failed.png")
        raise
    finally:
        page.close()
    assert not widget_errors(page)
