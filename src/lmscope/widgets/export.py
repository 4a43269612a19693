"""Saved pages: one self-contained HTML file per view, layout or dashboard; no CDN, no kernel.

A layout is walked as it is shown: boxes holding lmscope views become flex rows or columns,
labels become text, an lmscope view is drawn by `static/static_runtime.js` (a minimal anywidget model over the saved
state, binary buffers base64 in the page), and every other widget (a bqplot figure, a control)
by Jupyter's own HTML widget manager (vendored in `static/vendor`, with bqplot's and bqscales'
built JS read from their installed packages), placed where it stood. The widget manager is
inlined only when the page has such widgets, so a page of lmscope views stays small.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import os
import pathlib
import re
import sys
from typing import Any

import ipywidgets
from ipywidgets.widgets.widget import _remove_buffers

from lmscope.errors import LmscopeError
from lmscope.widgets.base import STATIC, ErrorArea, LmscopeWidget

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ margin: 16px; font: 13px system-ui, sans-serif; color: #222; background: #fff; }}
.lms-export-note {{ margin: 8px 0; padding: 6px 8px; border: 1px dashed #bbb; color: #555; font-size: 12px; }}
.lms-export-title {{ font-weight: 600; margin: 0 0 8px; }}
#lms-export-root {{ display: inline-block; }}
{shared_css}
.lms-export-label {{ font-weight: 600; margin: 12px 0 2px; }}
.lms-export-row, .lms-export-column {{ display: flex; gap: 8px; flex-wrap: wrap; }}
/* a grid, not a flex column: the column sized each view before its canvases took their width,
   so the next view was drawn over the end of the one above */
.lms-export-column {{ display: grid; }}
/* a figure the widget manager draws sizes itself by percent of its box: give each a share */
.lms-export-row > .lms-export-widget {{ flex: 1 1 0; min-width: 320px; }}
</style>
</head>
<body>
<div class="lms-export-title">{title}</div>
<div id="lms-export-root">{blocks}</div>
{scripts}
<script>
{runtime}
</script>
<script type="module">
const {{ mount }} = window.lmscopeStatic;
const mounted = [...document.querySelectorAll("[data-lmscope-view]")].map((host) => {{
  const id = host.dataset.lmscopeView;
  const code = document.getElementById(`lms-code-${{host.dataset.bundle}}`).textContent;
  const saved = JSON.parse(document.getElementById(`lms-state-${{id}}`).textContent);
  return mount(host, code, saved.state, saved.buffers).catch((err) => {{
    host.textContent = `lmscope could not render this view: ${{err}}`;
  }});
}});
// the widget manager (megabytes of JS) starts once the lmscope views have painted (a frame
// has been drawn with them: the mark says when), so they are not kept waiting while it is
// compiled
await Promise.all(mounted);
await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
performance.mark("lmscope-views-painted");
for (const held of document.querySelectorAll("script.lms-deferred")) {{
  const script = document.createElement("script");
  script.textContent = held.textContent;
  held.replaceWith(script);
}}
</script>
</body>
</html>
"""


def _code_text(code: str) -> str:
    # a literal "</script" would end the inline element early; in JS "<\/" reads as "</"
    return re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE)


def _json_text(payload: str) -> str:
    # "<" occurs only inside JSON strings, where \u003c is the same character
    return payload.replace("<", "\\u003c")


class _Page:
    """What a walk over a layout collects: lmscope views and other widgets, in page order."""

    def __init__(self) -> None:
        self.views: list[LmscopeWidget] = []
        self.others: list[ipywidgets.Widget] = []

    def block(self, widget: Any) -> str:
        if isinstance(widget, ErrorArea) and not widget.error:
            return ""  # an empty error area draws nothing
        if isinstance(widget, LmscopeWidget):
            self.views.append(widget)
            bundle = html.escape(type(widget).__name__)
            style = _size_style(widget)
            return (
                f'<div data-lmscope-view="{len(self.views) - 1}" data-bundle="{bundle}"{style}>'
                "</div>"
            )
        if isinstance(widget, ipywidgets.Box) and _holds_a_view(widget):
            inner = "".join(self.block(child) for child in widget.children)
            direction = "row" if isinstance(widget, ipywidgets.HBox) else "column"
            return f'<div class="lms-export-{direction}">{inner}</div>'
        if isinstance(widget, ipywidgets.Label):
            # a section title (class "lms-section") or a status line: text, never markup
            kind = "lms-export-label" if "lms-section" in widget._dom_classes else "lms-note"
            return f'<div class="{kind}">{html.escape(widget.value)}</div>'
        self.others.append(widget)
        spec = {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}
        # Jupyter's HTML widget manager draws the widget where this tag stands (in the box
        # around it). The box holds the widget's height until then, so the views painted
        # first are not pushed around (and redrawn) when it comes.
        height = _reserved_height(widget)
        style = f' style="min-height: {height}px"' if height else ""
        return (
            f'<div class="lms-export-widget"{style}>'
            '<script type="application/vnd.jupyter.widget-view+json">'
            f"{_json_text(json.dumps(spec))}</script></div>"
        )


def _size_style(view: LmscopeWidget) -> str:
    """The view's own layout width as the block's style. A share of a row beside a plot
    ("62%") becomes a flex share with the view's minimum as its basis: the page is as wide as
    its content, so a percentage alone would resolve against the narrow first guess."""
    width, low = view.layout.width, view.layout.min_width
    if width and width.endswith("%"):
        css = f"flex: {width[:-1]} 1 {low or '0'}; min-width: {low or '0'}"
    else:
        css = "; ".join(f"{k}: {v}" for k, v in {"width": width, "min-width": low}.items() if v)
    return f' style="{html.escape(css)}"' if css else ""


def _px(value: str | None) -> int:
    """A layout length in px ("300px"), else 0 (a percentage, "auto" or unset)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)px\s*", value or "")
    return round(float(match.group(1))) if match else 0


def _reserved_height(widget: ipywidgets.Widget) -> int:
    """The px height `widget` will take, where its layout says (a figure's height; a row of
    them: the tallest; a column: their sum); 0 where unknown."""
    layout = getattr(widget, "layout", None)
    own = _px(layout.height) if layout is not None else 0
    if own or not isinstance(widget, ipywidgets.Box):
        return own
    heights = [_reserved_height(child) for child in widget.children]
    return max(heights, default=0) if isinstance(widget, ipywidgets.HBox) else sum(heights)


def _holds_a_view(box: ipywidgets.Box) -> bool:
    """Whether an lmscope view stands somewhere in `box` (else the widget manager draws the
    whole box, with its own layout: a row of controls, two plots side by side)."""
    return any(
        isinstance(child, LmscopeWidget)
        or (isinstance(child, ipywidgets.Box) and _holds_a_view(child))
        for child in box.children
    )


def _view_scripts(views: list[LmscopeWidget]) -> list[str]:
    scripts, bundles = [], {}
    for index, view in enumerate(views):
        state, paths, buffers = _remove_buffers(view.get_state())
        state.pop("_esm", None)
        state.pop("_css", None)
        encoded = [
            [path, base64.b64encode(bytes(buf)).decode("ascii")]
            for path, buf in zip(paths, buffers, strict=True)
        ]
        payload = json.dumps({"state": state, "buffers": encoded}, ensure_ascii=True)
        scripts.append(
            f'<script type="application/json" id="lms-state-{index}">{_json_text(payload)}</script>'
        )
        bundles[type(view).__name__] = _bundle_code(view)
    for name, code in bundles.items():
        scripts.append(
            f'<script type="text/plain" id="lms-code-{html.escape(name)}">{_code_text(code)}</script>'
        )
    return scripts


def _bundle_code(view: LmscopeWidget) -> str:
    # anywidget keeps `_esm` as a synced trait holding the file's text (kept current under HMR)
    esm = view._esm
    return esm.read_text(encoding="utf-8") if isinstance(esm, pathlib.Path) else str(esm)


def _amd_module(package: str) -> str:
    """A Jupyter extension's built AMD bundle from its Python package, named so that require.js
    finds it locally instead of asking a CDN."""
    share = pathlib.Path(sys.prefix) / "share" / "jupyter" / "nbextensions" / package / "index.js"
    if not share.exists():
        import importlib.metadata as md

        found = [
            f
            for f in md.files(package) or []
            if str(f).endswith(f"nbextensions/{package}/index.js")
        ]
        if not found:
            raise LmscopeError(
                f"cannot find {package}'s built JS (nbextensions/{package}/index.js)"
            )
        share = pathlib.Path(found[0].locate())
    code = share.read_text(encoding="utf-8")
    named, n = re.subn(r"\bdefine\(\[", f'define("{package}",[', code, count=1)
    if n != 1:
        raise LmscopeError(f"{package}'s index.js is not the AMD bundle expected")
    return named


#: AMD copies of ipywidgets 7's base and controls in the manager's file, for extensions built
#: against 7 that ask for them by these names: no widget lmscope exports does (the manager
#: reads 7.x state with copies of its own), and they are a fifth of the code to compile
_UNUSED_BUNDLES = ("base7", "controls7")
#: the manager compiles JSON schemas of the widget state and view tags when it loads (~90 ms
#: of a saved page's start) to check the page's own tags; the page writes those itself
_SCHEMA_CHECKS = (
    ("gt.compile(At),gt.compile(pt);", ""),
    ("E=k.compile(y),$=k.compile(v);", "E=()=>!0,$=()=>!0;"),
)


@functools.cache
def _html_manager() -> str:
    """The vendored widget manager without what a saved page never uses (each cut applied
    only where the file reads as expected, so another version still works, whole)."""
    code = (STATIC / "vendor" / "html-manager-embed-amd.js").read_text(encoding="utf-8")
    for name in _UNUSED_BUNDLES:
        bundle = re.compile(
            rf"/\*! For license information please see {name}\.js\.LICENSE\.txt \*/\n"
            rf'define\("@jupyter-widgets/{name}",[^\n]*\n//# sourceMappingURL={name}\.js\.map;\n'
        )
        if len(bundle.findall(code)) == 1:
            code = bundle.sub("", code)
    for old, new in _SCHEMA_CHECKS:
        if code.count(old) == 1:
            code = code.replace(old, new)
    return code


def _manager_scripts(others: list[ipywidgets.Widget]) -> list[str]:
    """The widget manager, its modules and the state of every non-lmscope widget on the page."""
    from ipywidgets.embed import dependency_state

    # without drop_defaults=False the figures' default-valued traits, and so their marks, vanish
    state = dependency_state(others, drop_defaults=False)
    data = {"version_major": 2, "version_minor": 0, "state": state}
    code = [(STATIC / "vendor" / "require.js").read_text(encoding="utf-8")]
    if any(m.get("model_module") in ("bqplot", "bqscales") for m in state.values()):
        code += [_amd_module("bqscales"), _amd_module("bqplot")]
    code.append(_html_manager())
    # held as text: the page runs them once its lmscope views have painted (see _PAGE)
    scripts = [
        f'<script type="text/plain" class="lms-deferred">{_code_text(c)}</script>' for c in code
    ]
    scripts.append(
        '<script type="application/vnd.jupyter.widget-state+json">'
        f"{_json_text(json.dumps(data, ensure_ascii=True))}</script>"
    )
    return scripts


def render_html(widget: Any, title: str | None = None) -> str:
    page = _Page()
    blocks = page.block(widget)
    scripts = _view_scripts(page.views)
    if page.others:
        scripts = _manager_scripts(page.others) + scripts
    shared_css = (STATIC / "lmscope.css").read_text(encoding="utf-8").replace("</", "<\\/")
    return _PAGE.format(
        title=html.escape(title or f"lmscope: {type(widget).__name__}"),
        blocks=blocks,
        scripts="\n".join(scripts),
        runtime=_code_text((STATIC / "static_runtime.js").read_text(encoding="utf-8")),
        shared_css=shared_css,
    )


def save_html(widget: Any, path: str | os.PathLike, title: str | None = None) -> pathlib.Path:
    """Write `widget` (an lmscope view, a composite or any layout of widgets) to one
    self-contained HTML file that renders with no network; returns its path."""
    target = pathlib.Path(path)
    target.write_text(render_html(widget, title), encoding="utf-8")
    return target
