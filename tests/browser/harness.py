"""Browser-test helpers shared by every view's tests.

- `mount(page, widget)`: render a real lmscope widget's state, `_css` and bundle in a plain page
  with a fake anywidget model (binary buffers as DataViews at an odd byteOffset, as Jupyter
  may hand them); `model.send` reaches the widget's `on_msg` handlers (so `request(...)` is
  answered by `@request_handler` methods) and replies arrive as "msg:custom" events; every change the view saves goes to the Python widget, and Python's
  answer comes back as change events, like a kernel round trip. Returns ms to first paint.
- `settle(page)`: wait until those round trips are done.
- `shot(page, name)`: a screenshot in test-output/screenshots/ for a person to look at.
- `run_notebook(browser, server, cells, app, wait_for=".lms-view")`: write a notebook of code
  cells, open it in JupyterLab (app="lab") or Notebook 7 ("notebooks"), run all cells once the
  kernel is idle, wait until the widget is drawn, return the page (also `jupyter_lab.run(...)`).
- `write_notebook(root, name, cells)`, `open_notebook(browser, server, name, app)`,
  `run_cell(page, index)`, `cell_output(page, index)`: the pieces, for finer control;
  `widget_errors(page)`: uncaught errors from our code on such a page.

Fixtures (conftest.py): `browser` (Debian chromium, session), `page`, `jupyter_server`,
`jupyter_lab`, `notebook7`.
"""

from __future__ import annotations

import base64
import hashlib
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
  // buffers arrive as DataViews at an odd offset into a bigger buffer, as Jupyter may hand them
  const view = (b64) => {
    const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const padded = new Uint8Array(bin.length + 3);
    padded.set(bin, 1);
    return new DataView(padded.buffer, 1, bin.length);
  };
  const toState = (json, bufs) => {
    const state = JSON.parse(json);
    for (const [path, b64] of bufs) {
      let obj = state;
      for (const key of path.slice(0, -1)) obj = obj[key];
      obj[path[path.length - 1]] = view(b64);
    }
    return state;
  };
  const state = toState(stateJson, buffers);
  const handlers = {};
  const dirty = {};
  const fire = (ev, ...args) => { for (const fn of [...(handlers[ev] || [])]) fn(...args); };
  const apply = ([json, bufs]) => {
    const update = toState(json, bufs);
    Object.assign(state, update);
    for (const k of Object.keys(update)) fire(`change:${k}`);
  };
  const roundTrip = async (work) => {
    window.__lmsPending = (window.__lmsPending || 0) + 1;
    try { await work(); } finally { window.__lmsPending -= 1; }
  };
  const model = {
    get: (k) => state[k],
    // like Backbone: a local set fires change:<name> at once when the value changed
    set: (k, v) => {
      const changed = state[k] !== v;
      state[k] = v;
      dirty[k] = v;
      if (changed) fire(`change:${k}`);
    },
    on: (ev, fn) => { (handlers[ev] ||= []).push(fn); },
    off: (ev, fn) => {
      if (!ev) { for (const k of Object.keys(handlers)) delete handlers[k]; return; }
      handlers[ev] = fn ? (handlers[ev] || []).filter((f) => f !== fn) : [];
    },
    save_changes: () => roundTrip(async () => {
      const sent = { ...dirty };
      for (const k of Object.keys(dirty)) delete dirty[k];
      apply(await window.lmsSync(JSON.stringify(sent)));
    }),
    // custom messages reach the widget's on_msg handlers; its replies come back as msg:custom
    send: (content) => roundTrip(async () => {
      const [replies, changes] = await window.lmsSend(JSON.stringify(content));
      apply(changes);
      for (const [json, bufs] of replies) fire("msg:custom", JSON.parse(json), bufs.map(view));
    }),
  };
  window.__lmsModel = model;
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  const module = (await import(url)).default;
  const el = document.getElementById("root");
  const t0 = performance.now();
  module.render({ model, el });
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

    def send(payload: str) -> list:
        changed.clear()
        replies: list = []
        widget.send = lambda content, buffers=None: replies.append((content, buffers or []))
        try:
            widget._handle_custom_msg(json.loads(payload), [])
        finally:
            del widget.send
        encoded = [
            [json.dumps(c), [base64.b64encode(bytes(b)).decode() for b in bufs]]
            for c, bufs in replies
        ]
        return [encoded, list(_split(widget, widget.get_state(key=[*changed])))]

    if not hasattr(page, "_lms_sync"):
        page._lms_sync = {}
        page.expose_function("lmsSync", lambda payload: page._lms_sync["sync"](payload))
        page.expose_function("lmsSend", lambda payload: page._lms_sync["send"](payload))
    page._lms_sync.update(sync=sync, send=send)
    page.set_content('<html><body style="margin:12px"><div id="root"></div></body></html>')
    # the shared stylesheet Jupyter would load from the widget's `_css`
    css = getattr(widget, "_css", "")
    if css:
        page.add_style_tag(content=str(css))
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


# Run every cell once the notebook's kernel is idle: "Run All" before the kernel connects is
# dropped silently by both front ends. Needs the server's expose_app_in_browser (conftest.py).
_RUN_ALL = """
async (path) => {
  const app = window.jupyterapp;
  const panel = [...app.shell.widgets("main")].find((w) => w.context?.path === path)
    ?? app.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session.kernel;
  const start = performance.now();
  while (kernel.status !== "idle") {
    if (performance.now() - start > 60000) throw new Error(`kernel stuck: ${kernel.status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await app.commands.execute("notebook:run-all-cells");
}
"""


def open_notebook(browser: Any, server: Any, name: str, app: str, run_all: bool = True) -> Any:
    """A page with notebook `name` open in JupyterLab (app="lab") or Notebook 7 ("notebooks"),
    all cells run (asynchronously: wait for what they draw) when `run_all`."""
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))
    page._lms_errors = errors
    if app == "lab":
        # a workspace of its own, reset: Lab would otherwise reopen every earlier test's
        # notebook as a background tab, and selectors would find their (hidden) cells first
        workspace = hashlib.sha1(name.encode()).hexdigest()[:10]
        url = f"{server.url}/lab/workspaces/t{workspace}/tree/{name}?reset"
    else:
        url = f"{server.url}/notebooks/{name}"
    page.goto(url)
    page.wait_for_function(
        "() => window.jupyterapp?.shell?.currentWidget?.sessionContext !== undefined",
        timeout=90_000,
    )
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=30_000)
    if run_all:
        page.evaluate(_RUN_ALL, name)
    return page


def widget_errors(page: Any) -> list[str]:
    """Uncaught errors on a Jupyter page opened by `open_notebook`, minus those raised inside
    Jupyter's own bundles (Notebook 7.6 throws one while loading its settings)."""
    ours = ("blob:", "anywidget", "lmscope")
    return [e for e in page._lms_errors if any(mark in e for mark in ours) or "/static/" not in e]


def run_notebook(
    browser: Any,
    server: Any,
    cells: list[str],
    app: str,
    name: str | None = None,
    wait_for: str = ".lms-view",
    timeout_ms: int = 120_000,
) -> Any:
    """Write `cells` as a notebook, open it in `app`, run all cells and wait until `wait_for` (by
    default any lmscope view) is drawn. Returns the page; on failure a screenshot
    `<name>_failed.png` is left in test-output/screenshots/ with the cells' error outputs."""
    digest = hashlib.sha1("\0".join(cells).encode()).hexdigest()[:8]
    name = name or f"nb_{app}_{digest}.ipynb"
    write_notebook(server.root, name, cells)
    page = open_notebook(browser, server, name, app)
    try:
        page.locator(wait_for).first.wait_for(timeout=timeout_ms)
    except Exception as err:
        shot(page, f"{pathlib.Path(name).stem}_failed.png")
        tracebacks = page.locator(
            ".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']"
        )
        detail = "\n".join(tracebacks.all_text_contents())[-3000:]
        page.close()
        raise AssertionError(
            f"{wait_for!r} never appeared in {app}; cell errors:\n{detail}"
        ) from err
    return page


def run_cell(page: Any, index: int) -> None:
    """Run one cell with Shift+Enter, as a person would. The key goes only once that cell's
    editor has the focus: a view above that changes height can move the cell between the
    click's aim and its landing, and Shift+Enter would then rerun the cell that was active."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    editor = cell.locator(".jp-InputArea-editor")
    for _ in range(5):
        editor.click()
        if editor.evaluate("n => n.contains(document.activeElement)"):
            break
        page.wait_for_timeout(200)
    else:
        raise AssertionError(f"cell {index}'s editor did not take the focus")
    page.keyboard.press("Shift+Enter")


def cell_output(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea-output")


LENS_CELL_W, LENS_CELL_H, LENS_GUTTER = 66, 19, 58  # the lens table's geometry


def click_lens_cell(page: Any, column: int, row: int) -> None:
    """Click one cell of the (only visible) lens table. The table scrolls to its focus in an
    animation frame after it is shown, so the scroll is read two frames later, not before."""
    scroll = (
        page.locator(".lms-ll-scroll")
        .filter(visible=True)
        .first.evaluate(
            "n => new Promise(r => requestAnimationFrame(() =>"
            " requestAnimationFrame(() => r(n.scrollLeft))))"
        )
    )
    x = LENS_GUTTER + column * LENS_CELL_W - scroll + 20
    page.locator(".lms-ll-canvas").filter(visible=True).first.click(
        position={"x": x, "y": row * LENS_CELL_H + 8}
    )


def hover_norm_point(page: Any, layer: int, position: int) -> None:
    """Move the mouse onto the norm strips' point of `position` at `layer`, as a person would."""
    x, y = page.evaluate(
        """([layer, position]) => {
          const box = document.querySelector('.lms-ns');
          const p = box.pointAt(layer, position);
          const r = box.querySelector('.lms-ns-stage').getBoundingClientRect();
          return [r.left + p.x, r.top + p.y];
        }""",
        [layer, position],
    )
    page.mouse.move(x, y)
