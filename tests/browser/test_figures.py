"""Figures from Python (`save_svg` / `save_png`): every public view and the dashboard's current
tab, offline, with no view on screen; markup in token strings stays text. The pictures are
written to test-output/figures/ for a person to look at."""

from __future__ import annotations

import base64
import math
import os
import pathlib
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import lmscope
from _models import tiny_ids, tiny_inspector
from _png import chunk_kinds, png_size, read_png

pytestmark = pytest.mark.browser

OUT = pathlib.Path(os.environ.get("LMSCOPE_FIGURES", "test-output/figures"))
SVG = "{http://www.w3.org/2000/svg}"
# what a figure is made of; anything else (an <img>, a <script>, a <b>) would be token markup
ALLOWED = {
    "svg",
    "g",
    "rect",
    "line",
    "text",
    "tspan",
    "image",
    "clipPath",
    "path",
    "defs",
    "circle",
    "polyline",
    "polygon",
    "ellipse",
    "style",
    "title",
    "marker",
    "use",
    "linearGradient",
    "stop",
    "mask",
    "pattern",
    "symbol",
}
HOSTILE = [
    "<img src=x onerror=window.pwned=1>",
    "<script>window.pwned=2</script>",
    "<b>bold</b>",
    '"><svg onload=window.pwned=3>',
    "&lt;escaped&gt;",
    " plain",
]


def _trace(n=14):
    trace = tiny_inspector("llama").run(tiny_ids(n))
    trace.tokens = [HOSTILE[i % len(HOSTILE)] for i in range(n)]
    trace.token_texts = list(trace.tokens)
    return trace


def _sweep():
    ins = tiny_inspector("llama")
    clean = tiny_ids(10)
    corrupted = clean.clone()
    corrupted[5] = 200
    top = ins.run(clean).logits[-1].topk(2).indices.tolist()
    return lmscope.patching(ins, clean, corrupted, answer=top[0], foil=top[1], progress=False)


VIEWS = {
    "attention_lines": lambda tr: lmscope.AttentionLines(tr, layer=1, head=0, threshold=0.0),
    "attention_grid": lambda tr: lmscope.AttentionGrid(tr, layer=1),
    "attention_explorer": lambda tr: lmscope.AttentionExplorer(tr),
    "logit_lens": lambda tr: lmscope.LogitLens(tr, top_k=3),
    "token_colors": lambda tr: lmscope.TokenColors(tr),
    "token_view": lambda tr: lmscope.TokenView(tr),
    "norm_plot": lambda tr: lmscope.NormPlot(tr),
    "attribution": lambda tr: lmscope.Attribution(tr, target=11),
    "patching": lambda tr: lmscope.Patching(_sweep()),
    "dashboard": lambda tr: lmscope.Dashboard(tr),
}
# views that write the prompt's token strings as text somewhere in the picture
SHOW_TOKENS = {
    "attention_lines",
    "attention_grid",
    "attention_explorer",
    "logit_lens",
    "token_colors",
    "token_view",
    "attribution",
    "dashboard",
}
# views whose canvases are redrawn as vector marks: no embedded image at all (the attention
# grid's heatmap cells stay images, its labels and weights text; a plot's blank WebGL layer
# is left out)
VECTOR = {"attention_lines", "token_colors", "attribution", "patching", "token_view", "logit_lens"}
# text a view draws on its canvas (or in a plot), found as SVG text
CANVAS_TEXT = {
    "logit_lens": ["input", "L0", "L2"],
    "attribution": ["MLP", "sum", "0", "1"],
    "patching": ["0", "1"],
    "token_colors": HOSTILE,
    "norm_plot": ["beta", "t-1", "t-2"],  # bqplot's betas plot, drawn before it is saved
}


# controls are left out of figures; the line under the title says what they were set to
CAPTIONS = {
    "attention_grid": ["show: all heads of a layer", "layer: 1", "mute first token: off"],
    "attention_lines": ["layer: 1", "head: 0", "whole words: off", "threshold: 0"],
    "logit_lens": ["decode: after each block"],
    "token_colors": ["layer 1 / 2"],
    "norm_plot": ["lags: 2", "mute first token: on"],
}

# ... and are not drawn themselves: a select's value, a button's label
NOT_DRAWN = {
    "attention_grid": ["all heads of a layer"],
    "attention_lines": ["probabilities"],
    "logit_lens": ["after each block"],
    "token_colors": ["▶ play"],
}


def _px(size: float) -> int:
    """Pixels as JS rounds them (Math.round: halves up; Python's round() goes to even)."""
    return math.floor(size + 0.5)


def _texts(root: ET.Element) -> str:
    return "\n".join("".join(e.itertext()) for e in root.iter(f"{SVG}text"))


def _check_svg(data: bytes, name: str) -> ET.Element:
    root = ET.fromstring(data)  # parses as XML
    assert root.tag == f"{SVG}svg"
    for node in root.iter():
        tag = node.tag.removeprefix(SVG)
        assert tag in ALLOWED, f"{name}: <{node.tag}> in the figure"
        assert not any(a.lower().startswith("on") for a in node.attrib), f"{name}: handler"
    texts = _texts(root)
    assert texts.strip(), f"{name}: no text in the SVG"
    return root


@pytest.fixture(scope="module")
def figures():
    """Each view's SVG and PNG, made once (one headless browser for the module)."""
    OUT.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, build in VIEWS.items():
        view = build(_trace())
        svg = view.save_svg(OUT / f"{name}.svg").read_bytes()
        png = view.save_png(OUT / f"{name}.png", scale=2).read_bytes()
        made[name] = (view, svg, png)
    return made


@pytest.mark.parametrize("name", list(VIEWS))
def test_every_view_saves_svg_and_png(figures, page, name):
    _, svg, png = figures[name]
    root = _check_svg(svg, name)
    w, h = (float(v) for v in root.get("viewBox").split()[2:])
    assert png_size(png) == (_px(w * 2), _px(h * 2))
    texts = _texts(root)
    # the title: the view, the model's length and (for the dashboard) the current tab's view
    title = texts.splitlines()[0]
    assert "LlamaForCausalLM" in title and f"{10 if name == 'patching' else 14} tokens" in title
    if name in SHOW_TOKENS:
        # markup, as text (a plot's legend cuts a long token at 24 characters, hence the head)
        assert any(tok[:12] in texts for tok in HOSTILE[:4]), f"{name}: no token strings as text"
    if name in VECTOR:  # canvases redrawn as marks: text that stays text, a sharp PNG
        assert not list(root.iter(f"{SVG}image")), f"{name}: a canvas embedded as an image"
    lines = {line.strip() for line in texts.splitlines()}
    if name in {"attention_lines", "attention_grid"}:  # cut as on screen (text-overflow)
        assert any(line.startswith("<") and line.endswith("…") for line in lines), name
    if name in CAPTIONS:
        caption = texts.splitlines()[1].split(" · ")
        assert all(part in caption for part in CAPTIONS[name]), caption
    for control_text in NOT_DRAWN.get(name, []):
        assert control_text not in lines, f"{name}: a control drawn ({control_text!r})"
    for text in CANVAS_TEXT.get(name, []):
        assert text.strip() in lines, f"{name}: {text!r} is not a <text>"
    pixels = read_png(page, png)
    colours = np.unique(pixels.reshape(-1, 4), axis=0)
    assert len(colours) > 20, f"{name}: {len(colours)} colours"
    assert tuple(pixels[3, 3]) == (255, 255, 255, 255)  # light background
    title_band = pixels[10:44, 10:300, :3]
    assert title_band.min() < 60  # dark title text


def test_markup_in_tokens_stays_text(figures, page):
    _, svg, _ = figures["token_colors"]
    texts = _texts(ET.fromstring(svg))
    for tok in HOSTILE[:4]:
        assert tok in texts  # the markup, literally, as text
    # opened as a document, the figure runs nothing
    path = OUT / "token_colors.svg"
    page.goto(path.resolve().as_uri())
    page.wait_for_timeout(100)
    assert page.evaluate("window.pwned") is None


def test_heatmap_cell_is_where_it_is_drawn(figures, page):
    """The grid's first heatmap: query 0 attends only to key 0, its darkest blue, at the
    image's top-left corner."""
    _, svg, png = figures["attention_grid"]
    first = next(ET.fromstring(svg).iter(f"{SVG}image"))
    x, y = float(first.get("x")), float(first.get("y"))
    r, g, b, _ = read_png(page, png)[int(y * 2) + 3, int(x * 2) + 3].astype(int)
    assert b > 150 and b - r > 60, (r, g, b)


def test_token_colour_is_where_it_is_drawn(figures, page):
    """TokenColors' first token, drawn on its canvas: in the SVG a rect in the token's colour at
    the selected layer (as Python computed it), in the PNG that colour at that place."""
    view, svg, png = figures["token_colors"]
    groups = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("clip-path")]
    first = next(g[0] for g in groups if len(g) and g[0].tag == f"{SVG}rect")  # canvas marks
    expected = view.colors_at(view.streams[0], view.layer)[0].tolist()  # as Python sent it
    fill = [int(first.get("fill")[i : i + 2], 16) for i in (1, 3, 5)]  # "#rrggbb"
    assert max(abs(a - b) for a, b in zip(fill, expected, strict=True)) <= 1, (fill, expected)
    x, y = float(first.get("x")), float(first.get("y"))
    pixel = read_png(page, png)[int(y * 2) + 3, int(x * 2) + 3, :3].astype(int)
    assert max(abs(a - b) for a, b in zip(pixel, fill, strict=True)) <= 2, (pixel, fill)


def test_column_labels_stand_as_on_screen(figures, page):
    """Patching's column labels are vertical text (each token under its column, read upwards,
    its end at the heatmap): in the figure each is one <text> turned -90 degrees, centred on
    its column, and their ends line up under the heatmap whatever their lengths."""
    view, svg, _ = figures["patching"]
    tokens = view.result.corrupted.tokens
    page.set_content(f"<html><body style='margin:0'>{svg.decode()}</body></html>")
    boxes = page.evaluate(
        """() => [...document.querySelectorAll('text[transform]')].map(t => {
          const r = t.getBoundingClientRect();
          return [t.textContent, t.getAttribute('transform'), r.left, r.top, r.right, r.bottom];
        })"""
    )
    labels = [b for b in boxes if b[0] in tokens]
    assert [b[0] for b in labels] == tokens and all(b[1].startswith("rotate(-90 ") for b in labels)
    tops = [b[3] for b in labels]
    assert max(tops) - min(tops) < 1.5, tops  # ends aligned (they stood at two heights)
    assert len({len(t) for t in tokens}) > 1  # labels of different lengths
    centres = np.diff([(b[2] + b[4]) / 2 for b in labels])
    assert centres.min() > 0 and centres.max() - centres.min() < 1.5, centres  # one per column


def test_annotated_heatmap_weights_are_text():
    """A short prompt's heatmaps write each weight in its cell on the canvas: in the figure
    those weights are <text>, the first query's 1.00 (it attends to itself alone) among them,
    over the cells' image."""
    trace = _trace(6)
    view = lmscope.AttentionGrid(trace, layer=1)
    OUT.mkdir(parents=True, exist_ok=True)
    root = ET.fromstring(view.save_svg(OUT / "attention_grid_annotated.svg").read_bytes())
    view.save_png(OUT / "attention_grid_annotated.png", scale=3)  # sharp digits: to look at
    lines = [line.strip() for line in _texts(root).splitlines()]
    assert lines.count("1.00") >= trace.n_heads  # row 0 of every head
    assert sum(1 for line in lines if re.fullmatch(r"\.\d\d", line)) > 20
    assert list(root.iter(f"{SVG}image"))


def test_canvases_left_as_images_have_the_pictures_pixels(figures):
    """A picture too dense for marks (NormPlot's strips of every point) stays an image, drawn
    at 2 device pixels per CSS pixel for the SVG (the PNG's scale for a PNG), so it is as sharp
    as the text around it at 2x."""
    _, svg, _ = figures["norm_plot"]
    # the strips' points come first (their grid lines and rings are vector marks); bqplot's
    # own canvases after them draw at 1x whatever the page's pixel ratio
    for image in list(ET.fromstring(svg).iter(f"{SVG}image"))[:1]:
        data = base64.b64decode(image.get("href").split(",", 1)[1])
        assert png_size(data)[0] >= 2 * float(image.get("width")) - 1, png_size(data)


def _image_pixels_per_css_px(svg: bytes) -> list[float]:
    """For each embedded image: its PNG's pixels per CSS pixel of the box it fills."""
    ratios = []
    for image in ET.fromstring(svg).iter(f"{SVG}image"):
        data = base64.b64decode(image.get("href").split(",", 1)[1])
        ratios.append(png_size(data)[0] / float(image.get("width")))
    return ratios


def test_control_draws_the_strips_points_at_the_figures_scale(page):
    """On a screen of one device pixel per CSS pixel, the view's own control draws NormStrips'
    points (blended pixels, too many for marks) at the figure's scale, not at the screen's:
    2 px per CSS px in an SVG, 3 in a 3x PNG (a 3x PNG of a 1x picture is blurry)."""
    from harness import mount

    strips = lmscope.NormPlot(_trace()).strips
    mount(page, strips)
    page.locator(".lms-ns[data-points]").wait_for()
    assert page.evaluate("devicePixelRatio") == 1
    with page.expect_download() as got:
        page.click(".lms-figure-control button[data-format=svg]")
    svg = pathlib.Path(got.value.path()).read_bytes()
    ratios = _image_pixels_per_css_px(svg)
    assert len(ratios) == 1 and ratios[0] >= 2 - 0.01, ratios  # the points' one image
    page.select_option(".lms-figure-control select[title='PNG scale']", "3")
    with page.expect_download() as got:
        page.click(".lms-figure-control button[data-format=png]")
    png = pathlib.Path(got.value.path()).read_bytes()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "norm_strips_control_3x.png").write_bytes(png)
    # blended at 3x, a point's disk (radius 6.3 px) is one flat colour inside: many pixels of
    # exactly its colour; a 1x disk (radius 2.1 px) scaled up is a smooth blur, fewer
    pixels = read_png(page, png)[..., :3].reshape(-1, 3)
    inked = pixels[(pixels.max(axis=1) - pixels.min(axis=1)) > 60]  # the points' colours
    _, counts = np.unique(inked, axis=0, return_counts=True)
    assert counts.max() > 800, counts.max()  # 1,134 here; 518 when drawn at the screen's 1x


def test_a_canvas_too_dense_for_marks_is_drawn_at_the_figures_scale(page, tmp_path):
    """A canvas with more marks than a figure takes is embedded as an image: its drawing is
    painted again at the figure's pixel ratio, not copied at the screen's."""
    from lmscope.widgets.export import render_html
    from lmscope.widgets.figures import _READY

    path = tmp_path / "colors.html"
    path.write_text(render_html(lmscope.TokenColors(_trace())), encoding="utf-8")
    page.goto(path.as_uri())
    page.wait_for_function(_READY, timeout=60_000)
    svg = page.evaluate(
        "() => lmscopeStatic.figureSvg(document.getElementById('lms-export-root'),"
        " {maxMarks: 3, pixelRatio: 3})"
    )
    ratios = _image_pixels_per_css_px(svg.encode())
    assert ratios and all(abs(r - 3) < 0.02 for r in ratios), ratios  # the screen's is 1


def test_size_and_dpi_options(tmp_path, page):
    view = lmscope.AttentionLines(_trace(), layer=1, head=0)
    svg = ET.fromstring(view.save_svg(tmp_path / "a.svg", width=500).read_bytes())
    assert svg.get("width") == "500"
    png = view.save_png(tmp_path / "a.png", width=640, dpi=300).read_bytes()
    assert png_size(png)[0] == 640
    assert b"pHYs" in chunk_kinds(png)
    with pytest.raises(ValueError, match="scale"):
        view.save_png(tmp_path / "b.png", scale=0)
    with pytest.raises(TypeError, match="scale"):
        view.save_png(tmp_path / "b.png", scael=2)


def test_dark_theme_from_python(tmp_path, page):
    """Light by default, dark on request, from Python as from the control; the current Jupyter
    theme is the control's alone (a saved page has none), and asking Python for it says so."""
    view = lmscope.TokenColors(_trace())
    png = view.save_png(OUT / "token_colors_dark.png", scale=1, theme="dark").read_bytes()
    pixels = read_png(page, png)
    assert tuple(pixels[3, 3, :3]) == (17, 17, 17)  # JupyterLab dark's background
    assert pixels[8:30, 8:300, :3].max() > 200  # a light title on it
    svg = view.save_svg(tmp_path / "dark.svg", theme="dark").read_text()
    assert 'fill="#ffffff"' in svg and "#111111" in svg
    with pytest.raises(ValueError, match="control"):
        view.save_svg(tmp_path / "x.svg", theme="current")
    # a plot's text its stylesheet paints black is light on dark (bqplot's titles, labels)
    svg = lmscope.NormPlot(_trace()).save_svg(OUT / "norm_plot_dark.svg", theme="dark")
    title = next(
        e for e in ET.fromstring(svg.read_bytes()).iter(f"{SVG}text") if "~ b0" in (e.text or "")
    )
    style = title.get("style").replace(" ", "")
    assert re.search(r"fill:(#ffffff|rgb\(255,255,255\))", style), style


def test_missing_browser_says_what_to_install(tmp_path, monkeypatch):
    from lmscope.widgets import figures

    monkeypatch.setattr(figures, "_browser", None)
    monkeypatch.setenv("LMSCOPE_CHROMIUM", str(tmp_path / "no-such-chromium"))
    monkeypatch.setattr(figures, "_chromium", lambda: str(tmp_path / "no-such-chromium"))
    view = lmscope.TokenView(_trace())
    with pytest.raises(figures.FigureError, match="apt-get install chromium"):
        view.save_svg(tmp_path / "x.svg")


@pytest.mark.parametrize(
    "name", ["attention_lines", "attention_grid", "token_view", "token_colors"]
)
def test_download_control_draws_what_python_saves(figures, page, name):
    """The in-view control: the same drawing as save_svg (same title, same texts), and a PNG
    at the chosen scale."""
    from harness import mount

    view, python_svg, _ = figures[name]
    view._repr_mimebundle_()  # what Jupyter calls to show it: sets figure_title
    mount(page, view)
    page.wait_for_timeout(150)
    with page.expect_download() as got:
        page.click(".lms-figure-control button[data-format=svg]")
    svg = pathlib.Path(got.value.path()).read_bytes()
    (OUT / f"{name}_control.svg").write_bytes(svg)
    mine, theirs = _check_svg(svg, name), ET.fromstring(python_svg)
    assert _texts(mine).splitlines()[0] == _texts(theirs).splitlines()[0]  # the title
    assert sorted(_texts(mine).split()) == sorted(_texts(theirs).split())
    page.select_option(".lms-figure-control select[title='PNG scale']", "3")
    with page.expect_download() as got:
        page.click(".lms-figure-control button[data-format=png]")
    png = pathlib.Path(got.value.path()).read_bytes()
    (OUT / f"{name}_control.png").write_bytes(png)
    w, h = (float(v) for v in mine.get("viewBox").split()[2:])
    assert png_size(png) == (_px(w * 3), _px(h * 3))
    assert got.value.suggested_filename.endswith(".png")
    # for print: 300 dpi at the size on screen, written into the file
    page.select_option(".lms-figure-control select[title='PNG scale']", "print")
    with page.expect_download() as got:
        page.click(".lms-figure-control button[data-format=png]")
    png = pathlib.Path(got.value.path()).read_bytes()
    assert png_size(png) == (_px(w * 300 / 96), _px(h * 300 / 96))
    assert b"pHYs" in chunk_kinds(png)
    assert read_png(page, png).shape[1] == png_size(png)[0]  # the chunk left the PNG valid


_JUPYTER_CELLS = [
    "import lmscope\n"
    "from _models import tiny_ids, tiny_inspector\n"
    "tr = tiny_inspector('llama').run(tiny_ids(14))\n"
    f"tr.tokens = [{HOSTILE!r}[i % {len(HOSTILE)}] for i in range(14)]\n"
    "tr.token_texts = list(tr.tokens)\n"
    "view = lmscope.TokenColors(tr)\n"
    "view",
    "dash = lmscope.Dashboard(tr)\ndash",
]


def _download(page, selector: str) -> tuple[bytes, str]:
    with page.expect_download() as got:
        page.click(selector)
    return pathlib.Path(got.value.path()).read_bytes(), got.value.suggested_filename


@pytest.mark.e2e
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_download_control_in_jupyter(browser, jupyter_server, app):
    """A person's click on the view's PNG and SVG buttons in a live JupyterLab / Notebook 7
    downloads a valid PNG at the chosen scale and an SVG with the (hostile) tokens as text;
    in Lab's dark theme "theme" draws the figure dark, "light" (the default) light."""
    from harness import run_notebook, shot

    page = run_notebook(browser, jupyter_server, _JUPYTER_CELLS, app, wait_for=".lms-tc canvas")
    control = ".lms-view .lms-figure-control"
    try:
        page.wait_for_function(
            "() => document.querySelector('.lms-tc')?.tokenBox?.(0)", timeout=60_000
        )
        page.hover(".lms-tc")
        shot(page, f"figure_control_{app}.png")
        svg, svg_name = _download(page, f"{control} button[data-format=svg]")
        png, png_name = _download(page, f"{control} button[data-format=png]")
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"jupyter_{app}_{svg_name}").write_bytes(svg)
        (OUT / f"jupyter_{app}_{png_name}").write_bytes(png)
        assert svg_name.startswith("TokenColors") and svg_name.endswith(".svg"), svg_name
        root = _check_svg(svg, "TokenColors in Jupyter")
        lines = {line.strip() for line in _texts(root).splitlines()}
        assert all(tok.strip() in lines for tok in HOSTILE)  # the tokens, literally, as text
        assert not list(root.iter(f"{SVG}image"))
        w, h = (float(v) for v in root.get("viewBox").split()[2:])
        assert png_size(png) == (_px(w * 2), _px(h * 2))  # 2x, the control's default
        pixels = read_png(page, png)
        assert len(np.unique(pixels.reshape(-1, 4), axis=0)) > 20
        assert tuple(pixels[3, 3]) == (255, 255, 255, 255)  # light by default
        if app == "lab":
            page.evaluate(
                "() => window.jupyterapp.commands.execute('apputils:change-theme',"
                " {theme: 'JupyterLab Dark'})"
            )
            page.wait_for_function(
                "() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000
            )
            page.wait_for_timeout(500)  # the views redraw in the new colours
            page.select_option(f"{control} select[title=colours]", "current")
            dark, _ = _download(page, f"{control} button[data-format=png]")
            (OUT / "jupyter_lab_dark_theme.png").write_bytes(dark)
            assert read_png(page, dark)[3, 3, :3].max() < 80  # the dark theme's background
            page.select_option(f"{control} select[title=colours]", "light")
            light, _ = _download(page, f"{control} button[data-format=png]")
            assert tuple(read_png(page, light)[3, 3]) == (255, 255, 255, 255)
            shot(page, "figure_control_lab_dark.png")
        _dashboard_control(page, app)
    except Exception:
        shot(page, f"figure_control_{app}_failed.png")
        raise
    finally:
        if app == "lab":  # the theme is a server setting: later tests on this server start light
            page.evaluate(
                "() => window.jupyterapp.commands.execute('apputils:change-theme',"
                " {theme: 'JupyterLab Light'})"
            )
            page.wait_for_function(
                "() => document.body.dataset.jpThemeLight === 'true'", timeout=30_000
            )
        page.close()


_TAB_DRAWN = {"Attention": ".widget-tab .lms-ag canvas", "Logit lens": ".widget-tab .bqplot .tick"}


def _dashboard_control(page, app: str) -> None:
    """The dashboard's own control (the first in it: its error area, above the tabs) saves
    the tab on show, titled by it; after a click on another tab, that tab. In Lab this runs
    in the dark theme: the Logit lens tab's bqplot plots come out light."""
    control = page.locator(".lms-dashboard .lms-figure-control").first
    control.wait_for(timeout=60_000)
    for tab in ("Tokens", "Attention", "Logit lens"):
        if tab != "Tokens":
            page.locator(".widget-tab .lm-TabBar-tab", has_text=tab).click()
            page.locator(_TAB_DRAWN[tab]).filter(visible=True).first.wait_for()
        expected = f"Dashboard: {tab} · LlamaForCausalLM · 14 tokens"
        for _ in range(50):  # the kernel retitles the figure when the tab changes
            with page.expect_download() as got:
                control.locator("button[data-format=svg]").click()
            svg = pathlib.Path(got.value.path()).read_bytes()
            title = _texts(_check_svg(svg, f"dashboard {tab}")).splitlines()[0]
            if title == expected:
                break
            page.wait_for_timeout(200)
        assert title == expected
        (OUT / f"jupyter_{app}_dashboard_{tab}.svg").write_bytes(svg)
        if tab == "Attention":  # the tab's heatmaps, not the Tokens tab's chips
            assert list(ET.fromstring(svg).iter(f"{SVG}image"))
        if tab == "Logit lens":
            _plots_are_light(page, control, svg, app)


_ORANGE = np.array([255, 165, 0])  # bqplot's titles and axis labels in Jupyter's dark theme


def _plots_are_light(page, control, svg: bytes, app: str) -> None:
    """A light figure's bqplot plots: dark titles and labels (not the dark theme's orange,
    which bqplot's stylesheet sets on the page, not on the plot), on a white plot area."""
    heading = next(
        e for e in ET.fromstring(svg).iter(f"{SVG}text") if "softmax at layer" in (e.text or "")
    )
    fill = re.search(r"fill:\s*rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)", heading.get("style"))
    assert fill and max(float(v) for v in fill.groups()) < 100, heading.get("style")
    with page.expect_download() as got:
        control.locator("button[data-format=png]").click()
    png = pathlib.Path(got.value.path()).read_bytes()
    (OUT / f"jupyter_{app}_dashboard_lens.png").write_bytes(png)
    pixels = read_png(page, png)[..., :3].astype(int)
    orange = (np.abs(pixels - _ORANGE).max(axis=-1) < 10).sum()
    assert orange == 0, f"{orange} orange pixels"
    # a pixel of the first plot's area, between its grid lines (from the SVG: the plot's
    # place, its plot group's offset, its area's size), is light at 2x
    plot = next(e for e in ET.fromstring(svg).iter(f"{SVG}svg") if e.get("x") is not None)
    group = plot.find(f"{SVG}g")
    area = next(e for e in group if "plotarea_background" in (e.get("class") or ""))
    tx, ty = (float(v) for v in re.findall(r"[-\d.]+", group.get("transform"))[:2])
    x = float(plot.get("x")) + tx + 0.6 * float(area.get("width"))
    y = float(plot.get("y")) + ty + 0.35 * float(area.get("height"))
    assert pixels[int(y * 2), int(x * 2)].min() > 200, pixels[int(y * 2), int(x * 2)]


# each bqplot plot's title and legend against its own figure (the <svg> it is drawn in), and
# each legend entry against the legend's box: [what, left, right, figure left, figure right]
_PLOT_BOXES = """(root) => [...root.querySelectorAll('text.mainheading')].flatMap((title) => {
  // the figure's viewport (a nested <svg>'s client box is its content's, not its own)
  const svg = title.closest('svg'), m = svg.getScreenCTM();
  const fig = { left: m.e, right: m.e + svg.width.baseVal.value * m.a };
  const row = (what, e) => {
    const r = e.getBoundingClientRect();
    return [what, e.textContent, r.left, r.right, fig.left, fig.right];
  };
  const legend = title.closest('svg').querySelector('.g_legend');
  const box = legend?.querySelector('rect');
  const entries = [...(legend?.querySelectorAll('text') || [])].map((t) => {
    const r = t.getBoundingClientRect(), b = box.getBoundingClientRect();
    return ['entry', t.textContent, r.left, r.right, b.left, b.right];
  });
  return [row('title', title), ...(box ? [row('legend', legend)] : []), ...entries];
})"""


def _lens_with_long_labels():
    """A lens whose plots' title and legends carry the hostile tokens (at most 34 characters):
    a target tracked at the last position (a <script> token), two more positions compared."""
    return lmscope.LogitLens(_trace(), top_k=3, targets=[179, 5], compare_positions=[1, 3])


def _fits(boxes: list) -> None:
    assert {b[0] for b in boxes} == {"title", "legend", "entry"}, boxes
    for what, text, left, right, lo, hi in boxes:
        assert lo - 1 <= left and right <= hi + 1, (
            f"{what} {text!r}: {left:.0f}-{right:.0f} px out of {lo:.0f}-{hi:.0f}"
        )


def test_lens_plot_titles_and_legends_fit_their_plots(page, tmp_path):
    """Long token text in the lens plots' titles and legends is cut with an ellipsis (text,
    never markup) so that each title and legend box stays inside its own plot, on screen and in
    the figure (before: the title ran past both edges, the softmax legend 134 px left of its
    plot, over the other plot)."""
    from lmscope.widgets.export import render_html
    from lmscope.widgets.figures import _READY

    view = _lens_with_long_labels()
    svg = view.save_svg(OUT / "logit_lens_long_labels.svg").read_bytes()
    root = _check_svg(svg, "lens")
    view.save_png(OUT / "logit_lens_long_labels.png", scale=2)
    page.set_content(f"<html><body style='margin:0'>{svg.decode()}</body></html>")
    boxes = page.evaluate(f"({_PLOT_BOXES})(document)")
    _fits(boxes)
    # cut as text: the markup's head stays, literally, then an ellipsis
    title = next(b[1] for b in boxes if b[0] == "title")
    assert title.startswith("targets at position 13 (<script>") and title.endswith("…)"), title
    entries = [b[1] for b in boxes if b[0] == "entry"]
    assert "13: <script>windo…" in entries and '3: "><svg onload=…' in entries, entries
    assert not root.findall(f".//{SVG}script")
    page.set_viewport_size({"width": 640, "height": 900})  # two plots of ~300 px side by side
    saved = tmp_path / "lens.html"
    saved.write_text(render_html(view), encoding="utf-8")
    page.goto(saved.as_uri())
    page.wait_for_function(_READY, timeout=60_000)
    page.wait_for_timeout(300)  # bqplot lays its legends out after the marks
    _fits(page.evaluate(f"({_PLOT_BOXES})(document)"))
