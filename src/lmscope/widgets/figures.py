"""Figures from Python: a view's saved page (the one exporter) drawn in a headless Chromium,
where the same JS as the view's download control (`js/lib/figure.js`) turns it into SVG or
PNG bytes. Works with no view on screen and no network: a plain script, CI, a kernel.

Needs Playwright's Python package (`pip install 'lmscope[figures]'`) and a Chromium: the one
in `LMSCOPE_CHROMIUM`, else `/usr/bin/chromium`, else Playwright's own (`playwright install
chromium`). One browser is started on first use and kept until the process exits.
"""

from __future__ import annotations

import atexit
import base64
import concurrent.futures
import math
import os
import pathlib
import shutil
import struct
import tempfile
import zlib
from typing import Any

from lmscope.errors import InputError, LmscopeError, check_count
from lmscope.trace import Trace

THEMES = ("light", "dark")
_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
_TIMEOUT_MS = 60_000


class FigureError(LmscopeError):
    """A figure could not be made (no browser, no Playwright, a page that did not draw)."""


def figure_title(widget: Any) -> str:
    """What a figure says above the view: the model, the prompt's length and the run's edits."""
    trace = _find_trace(widget)
    if trace is None:
        return f"lmscope: {type(widget).__name__}"
    parts = [trace.model_name or "model", f"{trace.seq_len} tokens"]
    if getattr(trace, "edits", ()):
        parts.append(trace.edits_text)
    return f"{type(widget).__name__} · " + " · ".join(parts)


def _find_trace(widget: Any, depth: int = 0) -> Trace | None:
    for value in vars(widget).values():
        if isinstance(value, Trace):
            return value
        # a patching sweep: the run the view shows is the corrupted one
        if isinstance(getattr(value, "corrupted", None), Trace):
            return value.corrupted
    if depth < 3:
        for child in getattr(widget, "children", ()):
            found = _find_trace(child, depth + 1)
            if found is not None:
                return found
    return None


def _chromium() -> str | None:
    for candidate in (os.environ.get("LMSCOPE_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and (pathlib.Path(candidate).exists() or shutil.which(candidate)):
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


class _Browser:
    """One headless Chromium on its own thread (Playwright's sync API refuses to run inside a
    running asyncio loop, which every Jupyter kernel has)."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lmscope-fig")
        self._playwright = None
        self._browser = None

    def run(self, work, pixel_ratio: int = 1):
        return self._pool.submit(self._call, work, pixel_ratio).result()

    def _call(self, work, pixel_ratio: int):
        if self._browser is None:
            self._start()
        page = self._browser.new_page(
            device_scale_factor=pixel_ratio, viewport={"width": 1400, "height": 900}
        )
        try:
            return work(page)
        finally:
            page.close()

    def _start(self) -> None:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as err:
            raise FigureError(
                "save_png/save_svg need Playwright: pip install 'lmscope[figures]' "
                "(or pip install playwright), and a Chromium (apt-get install chromium, "
                "or python -m playwright install chromium)"
            ) from err
        self._playwright = sync_playwright().start()
        path = _chromium()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=path, args=_ARGS, headless=True
            )
        except Exception as err:
            self._playwright.stop()
            self._playwright = None
            where = (
                f"at {path}" if path else "(none found at $LMSCOPE_CHROMIUM or /usr/bin/chromium)"
            )
            raise FigureError(
                f"save_png/save_svg could not start Chromium {where}: {err}. Install one "
                "(apt-get install chromium, or python -m playwright install chromium) or point "
                "LMSCOPE_CHROMIUM at it"
            ) from err

    def close(self) -> None:
        def stop():
            if self._browser is not None:
                self._browser.close()
                self._playwright.stop()
            self._browser = self._playwright = None

        try:
            self._pool.submit(stop).result()
        except RuntimeError:
            return  # the interpreter is exiting: the driver and its Chromium go with it
        self._pool.shutdown()


_browser: _Browser | None = None


def _shared_browser() -> _Browser:
    global _browser
    if _browser is None:
        _browser = _Browser()
        atexit.register(_browser.close)
    return _browser


_DRAW = """
async ([opts, format]) => {
  const S = window.lmscopeStatic;
  const svg = S.figureSvg(document.getElementById("lms-export-root"), opts);
  if (format === "svg") return svg;
  return await S.blobBase64(await S.pngBlob(svg, opts));
}
"""

# every lmscope view drawn, and every widget the widget manager draws (bqplot figures)
_READY = """
() => {
  const views = [...document.querySelectorAll("[data-lmscope-view]")];
  if (!views.every((v) => v.dataset.rendered === "1")) return false;
  const wanted = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  const areas = [...document.querySelectorAll(".widget-subarea")];
  // each area holds its widget once the manager has created its view (the areas come first)
  if (areas.length < wanted || !areas.every((a) => a.childElementCount > 0)) return false;
  // a bqplot figure is drawn once its axes have ticks and its marks their shapes (its
  // plot area alone appears at once, before either)
  const figs = [...document.querySelectorAll(".bqplot")];
  return figs.every((f) => f.querySelector(".tick") && f.querySelector(".curve, .dot, .bar, .object_grp"));
}
"""


_SETTLED = """
() => {
  const count = document.querySelectorAll(".bqplot *").length;
  const same = window.lmsFigureCount === count;
  window.lmsFigureCount = count;
  return same;
}
"""


def _draw(widget: Any, fmt: str, opts: dict) -> str:
    from lmscope.widgets.export import render_html

    page_html = render_html(widget, opts.get("title"))
    with tempfile.TemporaryDirectory(prefix="lmscope-fig-") as tmp:
        page_file = pathlib.Path(tmp) / "figure.html"
        page_file.write_text(page_html, encoding="utf-8")

        def work(page):
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("http*://**", lambda route: route.abort())  # offline, whatever the page asks
            page.goto(page_file.as_uri())
            try:
                page.wait_for_function(_READY, timeout=_TIMEOUT_MS, polling=100)
            except Exception as err:
                raise FigureError(
                    f"the view's page did not finish drawing in {_TIMEOUT_MS // 1000} s"
                    + (f" (page errors: {'; '.join(errors)})" if errors else "")
                ) from err
            # bqplot adds legends and labels after its first marks: wait until its figures
            # stay the same for a poll
            page.wait_for_function(_SETTLED, timeout=_TIMEOUT_MS, polling=200)
            page.wait_for_timeout(150)  # bqplot's transitions settle
            return page.evaluate(_DRAW, [opts, fmt])

        return _shared_browser().run(work, _pixel_ratio(fmt, opts))


def _pixel_ratio(fmt: str, opts: dict) -> int:
    """The page's devicePixelRatio: the PNG's scale, so a canvas that stays an image (one
    without a vector drawing, a WebGL plot) has as many pixels as the PNG; 2 for an SVG."""
    if fmt == "png" and "width" not in opts and "height" not in opts:
        return max(1, min(4, math.ceil(opts["scale"])))
    return 2


def _options(widget, title, width, height, theme) -> dict:
    if theme not in THEMES:
        # a saved page has no theme of its own to be "current": the in-view control offers it
        raise InputError(
            f"theme must be one of {', '.join(map(repr, THEMES))} from Python, not {theme!r} "
            "(the current Jupyter theme: the PNG/SVG control above the view)"
        )
    opts: dict = {"title": figure_title(widget) if title is None else title, "theme": theme}
    if width is not None:
        opts["width"] = check_count("width", width)
    if height is not None:
        opts["height"] = check_count("height", height)
    return opts


def svg_bytes(widget, *, title=None, width=None, height=None, theme="light") -> bytes:
    return _draw(widget, "svg", _options(widget, title, width, height, theme)).encode("utf-8")


def png_bytes(
    widget, *, scale=2, width=None, height=None, dpi=None, title=None, theme="light"
) -> bytes:
    opts = _options(widget, title, width, height, theme)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 8:
        raise InputError(f"scale must be a number in (0, 8], not {scale!r}")
    opts["scale"] = scale
    data = base64.b64decode(_draw(widget, "png", opts))
    if dpi is not None:
        data = with_dpi(data, check_count("dpi", dpi))
    return data


def with_dpi(png: bytes, dpi: int) -> bytes:
    """The PNG with a pHYs chunk saying `dpi` (print size = pixels / dpi), after IHDR."""
    per_metre = round(dpi / 0.0254)
    body = b"pHYs" + struct.pack(">IIB", per_metre, per_metre, 1)
    chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def save_svg(widget, path, **options) -> pathlib.Path:
    target = pathlib.Path(path)
    target.write_bytes(svg_bytes(widget, **options))
    return target


def save_png(widget, path, **options) -> pathlib.Path:
    target = pathlib.Path(path)
    target.write_bytes(png_bytes(widget, **options))
    return target
