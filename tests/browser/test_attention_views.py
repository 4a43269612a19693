"""The attention views in Chromium: rendered from a real widget's state, with every change the
view makes sent back to the Python widget and its answer pushed into the page, as a kernel would.
Then the same widgets in a real JupyterLab, driven with the mouse."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import sys
from typing import Any

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from _models import default_inspector, tiny_ids, tiny_inspector
from lmscope.widgets.attention_grid import AttentionGrid
from lmscope.widgets.attention_lines import AttentionLines

pytestmark = pytest.mark.browser
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


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 900, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, errors


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_lines_draw_hover_and_follow_controls(page):
    tr = tiny_inspector("llama").run(tiny_ids(24))
    w = AttentionLines(tr, layer=1, head=2, threshold=0.0, top_k=24)
    mount(page, w)
    root = page.locator("#root")
    assert int(root.get_attribute("data-lines-total")) == len(w.lines["query"]["data"]) // 2
    assert int(root.get_attribute("data-lines-drawn")) > 0
    # the status line and the labels are text a person can read
    assert page.locator(".lms-al-tok.q").first.text_content() == tr.tokens[0]
    # hover a query token: its lines are isolated and its keys tinted
    page.locator('.lms-al-tok.q[data-i="5"]').hover()
    assert root.get_attribute("data-focus") == "q5"
    assert "attends to" in page.locator(".lms-al-status").text_content()
    tinted = page.locator(".lms-al-tok.k").evaluate_all(
        "ns => ns.filter(n => n.style.background).map(n => Number(n.dataset.i))"
    )
    assert tinted and max(tinted) <= 5  # causal: query 5 sees keys 0..5 only
    shot(page, "attention_lines_hover.png")
    # select another head: Python answers with that head's lines
    page.locator(".lms-al-bar select").nth(2).select_option("3")
    settle(page)
    assert (w.aggregate, w.head) == ("head", 3)
    # raise the threshold: fewer lines, in the page and from Python
    before = int(root.get_attribute("data-lines-total"))
    page.locator('.lms-al-bar input[type="range"]').fill("0.2")
    page.locator('.lms-al-bar input[type="range"]').dispatch_event("change")
    settle(page)
    assert w.threshold == pytest.approx(0.2)
    assert int(root.get_attribute("data-lines-total")) < before
    # all heads by max, fused words
    page.locator(".lms-al-bar select").nth(2).select_option("max")
    settle(page)
    assert w.aggregate == "max"


def test_lines_scroll_long_columns(page):
    tr = tiny_inspector("llama").run(tiny_ids(200))
    w = AttentionLines(tr, layer=0, head=0)
    mount(page, w)
    shown = page.locator(".lms-al-tok.q:visible").count()
    assert 20 < shown < 60  # only the rows in the window exist as labels
    page.locator(".lms-al-scroll").evaluate("n => { n.scrollTop = 150 * 18; }")
    page.wait_for_timeout(100)
    indices = page.locator(".lms-al-tok.q:visible").evaluate_all("ns => ns.map(n => +n.dataset.i)")
    assert 150 in indices and 0 not in indices


def test_grid_hover_click_and_compare(page):
    ins = tiny_inspector("llama")
    a, b = ins.run(tiny_ids(16, seed=1)), ins.run(tiny_ids(16, seed=2))
    g = AttentionGrid(a, layer=1, compare=b)
    mount(page, g)
    root = page.locator("#root")
    assert root.get_attribute("data-cells") == str(2 * a.n_heads)
    canvas = page.locator(".lms-ag-cell canvas").nth(2)
    canvas.hover(position={"x": 5, "y": 90})
    tip = page.locator(".lms-ag-tip").text_content()
    assert "L1 H2" in tip and "weight" in tip
    page.locator(".lms-ag-cell").nth(2).click()
    settle(page)
    assert (g.selected_layer, g.selected_head) == (1, 2)
    shot(page, "attention_grid_side.png")
    page.locator(".lms-ag-bar select").nth(2).select_option("diff")
    settle(page)
    assert g.mode == "diff" and root.get_attribute("data-cells") == str(a.n_heads)
    page.locator(".lms-ag-bar select").first.select_option("head")
    settle(page)
    assert root.get_attribute("data-cells") == str(a.n_layers)


@pytest.mark.real_model
def test_real_model_views_screenshots(page):
    ins = default_inspector()
    a, b = ins.run("I love you"), ins.run("I hate you")
    lines = AttentionLines(ins.run("The cat sat on the mat because it was tired."), 5, 1)
    mount(page, lines)
    page.locator('.lms-al-tok.q[data-i="8"]').hover()
    shot(page, "attention_lines_real.png")
    grid = AttentionGrid(a, layer=5, compare=b, mute_sink=True)
    mount(page, grid)
    shot(page, "attention_grid_love_hate.png")


# -- JupyterLab / Notebook 7 end to end -------------------------------------------------------
_NOTEBOOK_CELLS = [
    "from ipywidgets import VBox\n"
    "import lmscope\n"
    "from lmscope.widgets.attention_grid import AttentionGrid\n"
    "from lmscope.widgets.attention_lines import AttentionLines\n"
    "ins = lmscope.Inspector.from_pretrained(device='cpu')\n"
    "tr = ins.run('The cat sat on the mat because it was tired.')",
    "lines = AttentionLines(tr, layer=5, head=1)\n"
    "grid = AttentionGrid(tr, layer=4).link(lines)\n"
    "VBox([grid, lines])",
]


@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory):
    import socket
    import subprocess
    import time
    import urllib.request

    import nbformat

    root = tmp_path_factory.mktemp("nb")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in _NOTEBOOK_CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "attention.ipynb")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    venv_bin = pathlib.Path(sys.executable).parent
    proc = subprocess.Popen(
        [
            str(venv_bin / "jupyter"),
            "lab",
            "--no-browser",
            f"--port={port}",
            "--IdentityProvider.token=lmscope",
            "--allow-root",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.open_browser=False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{base}/api/status?token=lmscope", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("jupyter server did not start")
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def _run_all(page, app: str) -> None:
    if app == "lab":
        page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
    else:
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()


@pytest.mark.e2e
@pytest.mark.real_model
@pytest.mark.parametrize("app", ["lab", "notebooks"])
def test_jupyter_end_to_end(browser, jupyter_server, app):
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    path = "lab/tree" if app == "lab" else "notebooks"
    page.goto(f"{jupyter_server}/{path}/attention.ipynb?token=lmscope")
    _run_all(page, app)
    try:
        page.locator(".lms-al-stage").wait_for(timeout=120_000)
    except Exception:
        shot(page, f"attention_jupyter_{app}_failed.png")
        raise
    status = page.locator(".lms-al-status")
    # hover a token: its lines are isolated and described
    page.locator('.lms-al-tok.q[data-i="8"]').hover()
    assert "attends to" in status.text_content()
    view = page.locator(".lms-al").locator("xpath=..")
    total = lambda: int(view.get_attribute("data-lines-total"))  # noqa: E731
    before = total()
    # select head "max over heads": the kernel answers with new lines
    page.locator(".lms-al-bar select").nth(2).select_option("max")
    page.wait_for_function(
        f"() => document.querySelector('.lms-al').parentNode.dataset.linesTotal !== '{before}'",
        timeout=30_000,
    )
    # raise the threshold: fewer lines
    before = total()
    slider = page.locator('.lms-al-bar input[type="range"]')
    slider.fill("0.3")
    slider.dispatch_event("change")
    page.wait_for_function(
        f"() => +document.querySelector('.lms-al').parentNode.dataset.linesTotal < {before}",
        timeout=30_000,
    )
    # click a heatmap: the line diagram opens that layer and head
    page.locator('.lms-ag-cell[data-head="7"]').click()
    page.wait_for_function(
        "() => { const s = document.querySelectorAll('.lms-al-bar select');"
        " return s[0].value === '4' && s[2].value === '7'; }",
        timeout=30_000,
    )
    page.locator('.lms-ag-cell[data-head="7"] canvas').hover(position={"x": 60, "y": 60})
    assert "L4 H7" in page.locator(".lms-ag-tip").text_content()
    shot(page, f"attention_jupyter_{app}.png")
    page.close()
