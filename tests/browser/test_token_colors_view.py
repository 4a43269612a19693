"""The token-colors view in Chromium, rendered from a real widget's state with a Python round
trip for every change the view makes (pixels checked against the colors Python sent); then the
same widget live in JupyterLab and Notebook 7."""

from __future__ import annotations

import numpy as np
import pytest
from harness import mount, open_notebook, settle, shot, write_notebook

from _models import PROSE_THEN_CODE, default_inspector
from lmscope.widgets.token_colors import TokenColors

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def prose_code():
    return default_inspector().run(PROSE_THEN_CODE)


def colors_of(w: TokenColors) -> np.ndarray:
    """[rows, layers, seq, 3]: the spectral colors sent, every (row, layer) slice in order."""
    assert w.exact and len(w.color_slices) == len(w.streams) * w.n_layers
    env = w.colors
    return np.frombuffer(bytes(env["data"]), np.uint8).reshape(len(w.streams), w.n_layers, -1, 3)


def box(page, token: int) -> dict:
    return page.evaluate("(t) => document.querySelector('.lms-tc').tokenBox(t)", token)


def pixel(page, row: int, x: float, y: float) -> list[int]:
    """RGB at CSS px (x, y) of a row's canvas, y in text coordinates (scroll accounted)."""
    return page.evaluate(
        """([row, x, y]) => {
            const scroll = document.querySelectorAll('.lms-tc-scroll')[row];
            const c = scroll.querySelector('canvas');
            const dpr = c.width / c.clientWidth;
            const px = c.getContext('2d').getImageData(
                Math.round(x * dpr), Math.round((y - scroll.scrollTop) * dpr), 1, 1).data;
            return [px[0], px[1], px[2]];
        }""",
        [row, x, y],
    )


def hover_token(page, row: int, token: int) -> None:
    b = box(page, token)
    page.locator(".lms-tc-scroll canvas").nth(row).hover(
        position={"x": b["x"] + b["w"] / 2, "y": b["y"] + 3}
    )


@pytest.mark.real_model
def test_view_paints_python_colors_and_reflows_text(page, prose_code):
    w = TokenColors(prose_code, layer=15)
    mount(page, w)
    rgb = colors_of(w)
    for row in range(3):
        for token in (1, 10, 40, 80):
            b = box(page, token)
            got = pixel(page, row, b["x"] + 1, b["y"] + 1)
            assert np.abs(np.array(got) - rgb[row, 15, token]).max() <= 2, (row, token)
    # a newline starts a new line: "def" opens the code half at the left edge
    code = next(i for i, piece in enumerate(prose_code.token_texts) if piece.strip() == "def")
    assert box(page, code)["x"] == 4 and box(page, code)["y"] > box(page, code - 2)["y"]
    # the text stays within the view's width
    width = page.evaluate("document.querySelector('.lms-tc-scroll canvas').clientWidth")
    assert all(box(page, i)["x"] + box(page, i)["w"] <= width for i in range(prose_code.seq_len))
    shot(page, "token_colors_real.png")


@pytest.mark.real_model
def test_slider_hover_click_with_python_round_trip(page, prose_code):
    w = TokenColors(prose_code, layer=3, n_neighbors=4)
    mount(page, w)
    slider = page.locator(".lms-tc .lms-bar input[type=range]")
    slider.fill("20")
    settle(page)
    assert w.layer == 20 and w.neighbors_layer == 20
    assert page.locator(".lms-tc").get_attribute("data-layer") == "20"
    b = box(page, 30)
    assert (
        np.abs(np.array(pixel(page, 2, b["x"] + 1, b["y"] + 1)) - colors_of(w)[2, 20, 30]).max()
        <= 2
    )
    # hover a token in the MLP row: its neighbours at layer 20, from Python's table
    hover_token(page, 1, 30)
    info = page.locator(".lms-tc-info").text_content()
    expected = w.neighbor_table(20)[1, 30]
    assert "(#30)" in info and "MLP output at layer 20" in info
    for n in expected:
        assert f"(#{n})" in info
    # the neighbours are outlined: pixels at their top edge turn to the outline color
    n0 = box(page, int(expected[0]))
    assert (
        np.abs(
            np.array(pixel(page, 1, n0["x"] + 1, n0["y"] + 1)) - colors_of(w)[1, 20, expected[0]]
        ).max()
        > 30
    )
    shot(page, "token_colors_hover.png")
    # click selects (in Python), a second click clears
    page.locator(".lms-tc-scroll canvas").nth(1).click(
        position={"x": b["x"] + b["w"] / 2, "y": b["y"] + 3}
    )
    settle(page)
    assert w.token == 30
    page.locator(".lms-tc-scroll canvas").nth(1).click(
        position={"x": b["x"] + b["w"] / 2, "y": b["y"] + 3}
    )
    settle(page)
    assert w.token == -1


@pytest.mark.real_model
def test_play_steps_to_the_last_layer(page, prose_code):
    w = TokenColors(prose_code, layer=prose_code.n_layers - 4)
    w.play_interval = 40
    mount(page, w)
    page.locator(".lms-tc .lms-bar button").click()
    page.wait_for_function(
        f"document.querySelector('.lms-tc').dataset.layer === '{prose_code.n_layers - 1}'"
    )
    settle(page)
    assert w.layer == prose_code.n_layers - 1
    assert "play" in page.locator(".lms-tc .lms-bar button").text_content()  # stopped at the end


@pytest.mark.real_model
def test_dark_theme_screenshot(page, prose_code):
    w = TokenColors(prose_code, layer=10)
    mount(page, w)
    page.evaluate("document.body.style.background = '#111'")
    page.add_style_tag(
        content=":root { --jp-layout-color0: #111; --jp-ui-font-color0: #eee; "
        "--jp-ui-font-color1: #ddd; --jp-ui-font-color2: #aaa; --jp-border-color2: #333; }"
    )
    hover_token(page, 2, 12)
    assert page.locator(".lms-tc").get_attribute("data-hover") == "12"
    shot(page, "token_colors_dark.png")


# -- JupyterLab / Notebook 7 end to end -------------------------------------------------------
_CELLS = [
    "import lmscope\n"
    "ins = lmscope.Inspector.from_pretrained(device='cpu')\n"
    f"tr = ins.run({PROSE_THEN_CODE!r})",
    "w = lmscope.TokenColors(tr, layer=5)\nw",
]


@pytest.mark.e2e
@pytest.mark.real_model
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_jupyter_end_to_end(browser, jupyter_server, app):
    name = write_notebook(jupyter_server.root, "token_colors.ipynb", _CELLS)
    page = open_notebook(browser, jupyter_server, name, app)
    try:
        page.wait_for_function(
            "() => { const v = document.querySelector('.lms-tc');"
            " return v && v.tokenBox && v.tokenBox(5); }",
            timeout=120_000,
        )
    except Exception:
        shot(page, f"token_colors_jupyter_{app}_failed.png")
        raise
    root = page.locator(".lms-tc")
    root.scroll_into_view_if_needed()
    # move the slider: the kernel answers with that layer's neighbour table
    page.locator(".lms-tc .lms-bar input[type=range]").fill("12")
    assert root.get_attribute("data-layer") == "12"
    b = page.evaluate("document.querySelector('.lms-tc').tokenBox(20)")
    canvas = page.locator(".lms-tc-scroll canvas").nth(2)
    canvas.hover(position={"x": b["x"] + b["w"] / 2, "y": b["y"] + 3})
    page.wait_for_function(
        "() => /at layer 12:.*\\(#\\d+\\)/.test(document.querySelector('.lms-tc-info').textContent)",
        timeout=30_000,
    )
    canvas.click(position={"x": b["x"] + b["w"] / 2, "y": b["y"] + 3})
    shot(page, f"token_colors_jupyter_{app}.png")
    page.close()


def test_long_prompt_draws_the_first_pass_and_says_so(page, monkeypatch):
    import lmscope
    from _models import tiny_ids, tiny_model
    from lmscope import coloring
    from lmscope.widgets import token_colors

    monkeypatch.setattr(token_colors, "EAGER_TOKENS", 100)
    # no idle steps here (Playwright runs a loop in this thread): the work stays queued
    monkeypatch.setattr(
        TokenColors, "_start_steps", lambda self, steps: setattr(self, "_steps", steps)
    )
    # internals recomputed: the attention and MLP rows wait for block 1's rerun
    ins = lmscope.Inspector(tiny_model("llama"), trace_internals="recompute")
    tr = ins.run(tiny_ids(200, seed=5))
    w = TokenColors(tr, layer=1)
    mount(page, w)
    root = page.locator(".lms-tc")
    assert root.get_attribute("data-exact") == "0"
    assert "recomputing block 1" in root.locator(".lms-bar").text_content()
    titles = root.locator(".lms-tc-title")
    assert titles.all_text_contents() == [
        "attention output · to come",
        "MLP output · to come",
        "residual stream",
    ]

    def painted(row: int, stream: str, layer: int) -> bool:
        want = (coloring.first_pass_colors(tr, stream=stream, layer=layer).numpy() * 255).round()
        return np.abs(np.array(pixel(page, row, b["x"] + 1, b["y"] + 1)) - want[20]).max() <= 2

    b = box(page, 20)
    assert painted(2, "resid_post", 1)
    assert pixel(page, 1, b["x"] + 1, b["y"] + 1) == [224, 224, 224]  # plain until it comes
    w._next_step()  # the rerun: the other two rows arrive (the harness shows them remounted)
    mount(page, w)
    assert titles.all_text_contents() == ["attention output", "MLP output", "residual stream"]
    assert painted(0, "attn_out", 1) and painted(1, "mlp_out", 1)
    assert "spectral colors" in root.locator(".lms-bar").text_content()
    # the slider reaches a layer without colors: Python sends its residual row at once, the
    # other two wait for block 2's rerun, queued first
    page.locator(".lms-tc .lms-bar input[type=range]").fill("2")
    settle(page)
    assert [s for s in w.color_slices if s[1] == 2] == [[2, 2]]
    assert painted(2, "resid_post", 2)
    assert titles.all_text_contents()[:2] == ["attention output · to come", "MLP output · to come"]
    assert "recomputing block 2" in root.locator(".lms-bar").text_content()
    w._next_step()
    mount(page, w)
    assert painted(1, "mlp_out", 2) and painted(0, "attn_out", 2)
    shot(page, "token_colors_first_pass.png")


def test_scrolling_paints_each_row_once_a_frame(page):
    """A scrolled row takes the others along and every row is painted once per frame at the
    same position (each row's scroll event redrew all three rows: 9 paints a frame)."""
    import lmscope
    from _models import tiny_ids, tiny_model

    tr = lmscope.Inspector(tiny_model("llama")).run(tiny_ids(250, seed=3))
    w = TokenColors(tr, layer=1)
    page.set_viewport_size({"width": 360, "height": 800})  # narrow: the rows scroll
    mount(page, w)
    paints = page.evaluate(
        """async () => {
            const scrolls = [...document.querySelectorAll('.lms-tc-scroll')];
            const frame = () => new Promise((r) => requestAnimationFrame(r));
            let paints = 0;
            const clear = CanvasRenderingContext2D.prototype.clearRect;
            CanvasRenderingContext2D.prototype.clearRect = function (...args) {
                paints++;
                return clear.apply(this, args);
            };
            const end = scrolls[0].scrollHeight - scrolls[0].clientHeight;
            for (let i = 1; i <= 20; i++) {
                scrolls[i % 2].scrollTop = (end * i) / 20;  // by hand in two of the rows
                await frame();
            }
            await frame();
            await frame();
            CanvasRenderingContext2D.prototype.clearRect = clear;
            return paints;
        }"""
    )
    assert 3 <= paints <= 3 * 20, paints
    tops = page.evaluate("[...document.querySelectorAll('.lms-tc-scroll')].map((s) => s.scrollTop)")
    assert len(set(tops)) == 1 and tops[0] > 0
    # every row shows the end of the text, in its own colors
    rgb = colors_of(w)
    last = tr.seq_len - 1
    b = box(page, last)
    for row in range(3):
        got = pixel(page, row, b["x"] + 1, b["y"] + 1)
        assert np.abs(np.array(got) - rgb[row, 1, last]).max() <= 2, row
