"""Browser-test helpers shared by every view's tests.

- `mount(page, widget)`: render a real lmscope widget's state and bundle in a plain page with a
  fake anywidget model; every change the view saves goes to the Python widget, and Python's
  answer comes back as change events, like a kernel round trip. Returns ms to first paint.
- `settle(page)`: wait until those round trips are done.
- `shot(page, name)`: a screenshot in test-output/screenshots/ for a person to look at.
- `write_notebook(root, name, cells)`, `open_notebook(browser, server, name, app)`,
  `run_cell(page, index)`, `cell_output(page, index)`: drive JupyterLab ("lab") or Notebook 7
  ("notebooks") against the `jupyter_server` fixture of conftest.py.

Fixtures (conftest.py): `browser` (Debian chromium, session), `page`, `jupyter_server`.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
from typing import Any

import nbformat

SHOTS = pathlib.Path(os.environ.get("LMSCOPE_SHOTS", "test-output/screenshots"))

# A fake anywidget model: state from Python, changes go back through window.lmsSync (exposed
# by Playwright) and Python's answer is applied with change events, like a kernel round trip.
_HARNESS = """
async ([code, stateJson, buffers]) => {
  const toState = (json, bufs) => {
    const state = JSON.parse(json);
    for (const [path, b64] of bufs) {
      const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      let obj = state;
      for (const key of path.slice(0, -1)) obj = obj[key];
      obj[path[path.length - 1]] = new DataView(bin.buffer);
    }
    return state;
  };
  const state = toState(stateJson, buffers);
  const handlers = {};
  const dirty = {};
  const model = {
    get: (k) => state[k],
    set: (k, v) => { state[k] = v; dirty[k] = v; },
    on: (ev, fn) => { (handlers[ev] ||= []).push(fn); },
    off: () => {},
    save_changes: async () => {
      const sent = { ...dirty };
      for (const k of Object.keys(dirty)) delete dirty[k];
      window.__lmsPending = (window.__lmsPending || 0) + 1;
      const [json, bufs] = await window.lmsSync(JSON.stringify(sent));
      const update = toState(json, bufs);
      Object.assign(state, update);
      for (const k of Object.keys(update)) for (const fn of handlers[`change:${k}`] || []) fn();
      window.__lmsPending -= 1;
    },
    send: () => {},
  };
  window.__lmsModel = model;
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  const view = (await import(url)).default;
  const el = document.getElementById("root");
  const t0 = performance.now();
  view.render({ model, el });
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return performance.now() - t0;
}
"""


def _split(widget: Any, state: dict) -> tuple[str, list]:
    from ipywidgets.widgets.widget import _remove_buffers

    clean, paths, buffers = _remove_buffers(state)
    encoded = [
        [p, base64.b64encode(bytes(b)).decode()] for p, b in zip(paths, buffers, strict=True)
    ]
    return json.dumps(clean), encoded


def mount(page: Any, widget: Any) -> float:
    """Render `widget` in `page`; returns the time to first paint in ms (performance.now)."""
    changed: dict[str, Any] = {}

    def record(change: dict) -> None:
        changed[change["name"]] = True

    widget.observe(record)

    def sync(payload: str) -> list:
        changed.clear()
        widget.set_state(json.loads(payload))
        return list(_split(widget, widget.get_state(key=[*changed])))

    if not hasattr(page, "_lms_sync"):
        page._lms_sync = {}
        page.expose_function("lmsSync", lambda payload: page._lms_sync["current"](payload))
    page._lms_sync["current"] = sync
    page.set_content('<html><body style="margin:12px"><div id="root"></div></body></html>')
    code = (
        pathlib.Path(widget._esm).read_text()
        if isinstance(widget._esm, pathlib.Path)
        else widget._esm
    )
    state_json, buffers = _split(widget, widget.get_state())
    return page.evaluate(_HARNESS, [code, state_json, buffers])


def settle(page: Any) -> None:
    page.wait_for_function("!window.__lmsPending")


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


# -- JupyterLab / Notebook 7 ------------------------------------------------------------------
def write_notebook(root: pathlib.Path, name: str, cells: list[str]) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / name)
    return name


def open_notebook(browser: Any, server: Any, name: str, app: str, run_all: bool = True) -> Any:
    """A page with notebook `name` open in JupyterLab (app="lab") or Notebook 7 ("notebooks")."""
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    path = "lab/tree" if app == "lab" else "notebooks"
    page.goto(f"{server.url}/{path}/{name}?token={server.token}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
    # the kernel must be idle before "Run All" or the first cell may run before it exists
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    if run_all:
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
    return page


def run_cell(page: Any, index: int) -> None:
    """Run one cell with Shift+Enter, as a person would."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def cell_output(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea-output")
