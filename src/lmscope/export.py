"""Static HTML snapshots: every script inlined, state and binary buffers embedded, no CDN.

lmscope views are rendered by `static/static_runtime.js`, a minimal anywidget model over the
saved state. Other widgets in a layout (a bqplot figure, a slider) need the Jupyter widget
manager and a kernel; the page names them in a note instead of leaving a silent hole.
"""

from __future__ import annotations

import base64
import html
import json
import os
import pathlib
import re
from typing import Any

import ipywidgets
from ipywidgets.widgets.widget import _remove_buffers

from lmscope.widgets.base import STATIC, LmscopeWidget

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
{shared_css}
.lms-export-label {{ font-weight: 600; margin: 12px 0 2px; }}
</style>
</head>
<body>
<div class="lms-export-title">{title}</div>
{blocks}
{scripts}
<script>
{runtime}
</script>
<script type="module">
const {{ mount }} = window.lmscopeStatic;
for (const host of document.querySelectorAll("[data-lmscope-view]")) {{
  const id = host.dataset.lmscopeView;
  const code = document.getElementById(`lms-code-${{host.dataset.bundle}}`).textContent;
  const saved = JSON.parse(document.getElementById(`lms-state-${{id}}`).textContent);
  mount(host, code, saved.state, saved.buffers).catch((err) => {{
    host.textContent = `lmscope could not render this view: ${{err}}`;
  }});
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


def _widget_blocks(widget: Any, views: list, notes: list) -> str:
    if isinstance(widget, LmscopeWidget):
        views.append(widget)
        index = len(views) - 1
        bundle = type(widget).__name__
        return f'<div data-lmscope-view="{index}" data-bundle="{html.escape(bundle)}"></div>'
    if isinstance(widget, ipywidgets.Box):
        inner = "".join(_widget_blocks(child, views, notes) for child in widget.children)
        direction = "row" if isinstance(widget, ipywidgets.HBox) else "column"
        return f'<div style="display:flex;flex-direction:{direction};gap:8px;flex-wrap:wrap">{inner}</div>'
    if isinstance(widget, ipywidgets.Label):
        # a caption or section title in a layout (text, never markup)
        return f'<div class="lms-export-label">{html.escape(widget.value)}</div>'
    kind = type(widget).__name__
    notes.append(kind)
    return (
        f'<div class="lms-export-note">A live {html.escape(kind)} widget stood here; it needs a '
        "running kernel and is not part of this static snapshot.</div>"
    )


def _bundle_code(view: LmscopeWidget) -> str:
    # anywidget keeps `_esm` as a synced trait holding the file's text (kept current under HMR)
    esm = view._esm
    return esm.read_text(encoding="utf-8") if isinstance(esm, pathlib.Path) else str(esm)


def _shared_css() -> str:
    # the stylesheet LmscopeWidget._css loads in Jupyter; "</" cannot end a <style> early here
    return (STATIC / "lmscope.css").read_text(encoding="utf-8").replace("</", "<\\/")


def _runtime_source() -> str:
    return _code_text((STATIC / "static_runtime.js").read_text(encoding="utf-8"))


def render_html(widget: Any, title: str | None = None) -> str:
    views: list[LmscopeWidget] = []
    notes: list[str] = []
    blocks = _widget_blocks(widget, views, notes)
    scripts = []
    bundles: dict[str, str] = {}
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
    return _PAGE.format(
        title=html.escape(title or f"lmscope: {type(widget).__name__}"),
        blocks=blocks,
        scripts="\n".join(scripts),
        runtime=_runtime_source(),
        shared_css=_shared_css(),
    )


def save_html(widget: Any, path: str | os.PathLike, title: str | None = None) -> pathlib.Path:
    """Write `widget` (an lmscope view or a layout of them) to one self-contained HTML file."""
    target = pathlib.Path(path)
    target.write_text(render_html(widget, title), encoding="utf-8")
    return target
