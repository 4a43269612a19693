"""Every view's saved page in Chromium at long prompts (issue 20): first paint, hover to feedback,
scroll frame time and a tab switch, on the default model, in one run.

    .venv/bin/python benchmarks/bench_long_browser.py --lengths 2048 8192

Two phases. `build` runs the prompt once per length on the default model, builds each view and
writes its saved page (`save_html`) with the build time and synced bytes into --cache (default
/tmp/lmscope-bench-long); an existing page is reused, so the slow 8k builds are paid once
(`--rebuild` to redo them). `measure` opens each page in Chromium (network blocked), best of
--repeats loads:

- paint: ms from navigation start until every lmscope view on the page has rendered and a
  frame has been drawn with them (the page's own mark, on its clock); bqplot: until every
  bqplot figure on the page has drawn its marks.
- hover: one synchronous hover (a mousemove on the view's drawing, then a forced layout, so the
  feedback is on screen at the next frame), mean over 100 distinct points.
- scroll: frame intervals while the view's scroller is moved from top to bottom over 90
  frames (the view redraws what is visible each frame): mean and worst; 16.7 ms = 60 fps.
  Whether the last token was reached is printed too.
- tab: a dashboard tab switch is a hidden view shown again (Jupyter's Tab toggles display);
  ms from showing it until it has redrawn and a frame has passed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TEXT = (
    "The old lighthouse keeper walked along the shore every evening, watching the waves roll in "
    "from the grey sea while gulls circled above the harbour and the fishing boats came home. "
)
VIEWS = ("lines", "grid", "lens", "colors", "tokens", "attribution", "norms")


def build(names: tuple[str, ...], lengths: list[int], cache: pathlib.Path, rebuild: bool) -> None:
    import torch

    import lmscope

    todo = [
        (n, v) for n in lengths for v in names if rebuild or not (cache / f"{v}_{n}.html").exists()
    ]
    if not todo:
        return
    ins = lmscope.Inspector.from_pretrained(device="cpu")
    makers = {
        "lines": lambda tr: lmscope.AttentionLines(tr, layer=5, head=1),
        "grid": lambda tr: lmscope.AttentionGrid(tr),
        "lens": lambda tr: lmscope.LogitLens(tr),
        "colors": lambda tr: lmscope.TokenColors(tr),
        "tokens": lambda tr: lmscope.TokenView(tr),
        "attribution": lambda tr: lmscope.Attribution(tr, target=int(tr.logits[-1].argmax())),
        "norms": lambda tr: lmscope.NormPlot(tr),
    }
    for n in sorted({n for n, _ in todo}):
        ids = ins.tokenizer(TEXT * (n // 20 + 2), return_tensors="pt").input_ids[0][:n]
        t0 = time.perf_counter()
        tr = ins.run(ids)
        run_s = time.perf_counter() - t0
        print(f"{n} tokens: run {run_s:.1f} s", file=sys.stderr)
        for m, view in todo:
            if m != n:
                continue
            t0 = time.perf_counter()
            widget = makers[view](tr)
            build_s = time.perf_counter() - t0
            synced = sum(p.synced_bytes() for p in _parts(widget) if hasattr(p, "synced_bytes"))
            widget.save_html(cache / f"{view}_{n}.html")
            meta = {"build_s": build_s, "run_s": run_s, "synced_bytes": synced}
            (cache / f"{view}_{n}.json").write_text(json.dumps(meta))
            print(f"  {view}: build {build_s:.1f} s, synced {synced / 1e3:.0f} KB", file=sys.stderr)
            widget.close()
        del tr
        torch.cuda.empty_cache() if torch.cuda.is_available() else None


def _parts(widget) -> list:
    """The widget and every widget inside it (a composite's views sit in boxes)."""
    return [widget, *(p for child in getattr(widget, "children", ()) for p in _parts(child))]


# -- in the page ------------------------------------------------------------------------------
_PAINTED = """
async (expected) => {
  // every view rendered, and the page's own mark: set once a frame has been drawn with them
  // (in the task after that frame's animation callbacks; a wait of two frames from here read
  // the widget manager's compile, which the page starts right then, into the paint)
  const hosts = () => document.querySelectorAll('[data-lmscope-view]');
  const mark = () => performance.getEntriesByName('lmscope-views-painted')[0];
  while ([...hosts()].filter((h) => h.dataset.rendered === '1').length < expected || !mark()) {
    await new Promise((r) => setTimeout(r, 2));
  }
  return mark().startTime;
}
"""
_BQPLOT = """
async (figures) => {
  // every figure of the page has drawn a mark (a line or a point)
  const drawn = () => [...document.querySelectorAll('.bqplot.figure')]
    .filter((f) => f.querySelector('.dot, path.line')).length;
  const t0 = performance.now();
  while (drawn() < figures) {
    if (performance.now() - t0 > 60000) return null; // never drew: say so, do not hang
    await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => requestAnimationFrame(r));
  return performance.now();
}
"""
# long tasks seen by the page, so a measurement can wait for the page to be idle
_WATCH = """
window.lmsLongTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.lmsLongTasks.push(e.startTime + e.duration);
}).observe({ type: 'longtask', buffered: true });
"""
_IDLE = """
async () => {
  // until no task over 50 ms has ended for 500 ms (bqplot relayouts 300 ms after a resize);
  // at most 10 s
  const t0 = performance.now();
  for (;;) {
    const last = Math.max(0, ...window.lmsLongTasks);
    if (performance.now() - last > 500 || performance.now() - t0 > 10000) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}
"""
# what each view hovers on, and where it scrolls (none: the view does not scroll)
TARGETS = {
    "lines": (".lms-al-stage", ".lms-al-scroll"),
    "grid": (".lms-ag-cell canvas", None),
    "lens": (".lms-ll-canvas", ".lms-ll-scroll:x"),
    "colors": (".lms-tc-scroll canvas", ".lms-tc-scroll"),
    "tokens": (".lms-token", ".lms-tokens-row"),
    "attribution": (".lms-attr canvas", None),
    "norms": (".lms-ns-overlay", None),
}
_HOVER = """
([selector, n]) => {
  const nodes = [...document.querySelectorAll(selector)];
  if (!nodes.length) return null;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const node = nodes.length > 1 ? nodes[(i * 7919) % nodes.length] : nodes[0];
    const b = node.getBoundingClientRect();
    const x = b.left + 2 + ((i * 37) % Math.max(1, b.width - 4));
    const y = b.top + 2 + ((i * 53) % Math.max(1, b.height - 4));
    for (const type of ['pointerover', 'pointerenter', 'mouseover', 'pointermove', 'mousemove']) {
      const Ev = type.startsWith('pointer') ? PointerEvent : MouseEvent;
      node.dispatchEvent(new Ev(type, {clientX: x, clientY: y, bubbles: true}));
    }
    document.body.offsetHeight; // style and layout of the feedback, as the next frame needs
  }
  return (performance.now() - t0) / n;
}
"""
_SCROLL = """
async ([target, frames]) => {
  const [selector, axis] = target.split(':');
  const scroller = document.querySelector(selector);
  const [pos, size, client] = axis === 'x'
    ? ['scrollLeft', 'scrollWidth', 'clientWidth'] : ['scrollTop', 'scrollHeight', 'clientHeight'];
  if (!scroller || scroller[size] <= scroller[client]) return null;
  // read each frame: the page may still change width (bqplot figures drawing late)
  const endNow = () => scroller[size] - scroller[client];
  // from the start to the end (the lens opens scrolled to its last position)
  scroller[pos] = 0;
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const times = [];
  let last = await new Promise((r) => requestAnimationFrame(r));
  for (let i = 1; i <= frames; i++) {
    scroller[pos] = (endNow() * i) / frames;
    const now = await new Promise((r) => requestAnimationFrame(r));
    times.push(now - last);
    last = now;
  }
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const atEnd = Math.abs(scroller[pos] - endNow()) < 2;
  times.sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  return {mean, p95: times[Math.floor(times.length * 0.95)], max: times[times.length - 1], atEnd};
}
"""
_TAB = """
async () => {
  const host = document.querySelector('[data-lmscope-view]');
  host.style.display = 'none';
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const t0 = performance.now();
  host.style.display = '';
  // the views redraw on a ResizeObserver callback or the next frame once they have a width
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return performance.now() - t0;
}
"""


def current_page(html: str) -> str:
    """A cached page as `save_html` writes it now: each view's bundle replaced by the one built
    now and the page's own scripts by today's (a cached page keeps the JS it was saved with,
    and a fix must be measured without rebuilding the 8k states)."""
    import re

    from lmscope.widgets import export

    # today's mounting script, from a page of one small view
    probe = export.render_html(export.ErrorArea(error="x"))
    module = re.search(r'<script type="module">.*?</script>', probe, flags=re.S).group(0)
    html = re.sub(r'<script type="module">.*?</script>', lambda _m: module, html, flags=re.S)
    # today's widget manager (what the page's lmscope views wait for is the same either way)
    manager = export._code_text(export._html_manager())
    html = re.sub(
        r'(<script type="text/plain" class="lms-deferred">)/\*! For license information please'
        r" see base\.js\.LICENSE\.txt \*/.*?(</script>)",
        lambda m: m.group(1) + manager + m.group(2),
        html,
        flags=re.S,
    )
    if "lms-deferred" in module and "lms-deferred" not in html:
        # the widget manager waits for the views' first paint: its scripts (one per line in
        # the page, unlike "<script>" inside their code's strings) held as text
        held = '\n<script type="text/plain" class="lms-deferred">'
        html = re.sub(r"\n<script>(?!\n)", lambda _m: held, html)

    from lmscope.widgets.base import LmscopeWidget
    from lmscope.widgets.export import _code_text

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    import lmscope.widgets.norm_strips  # noqa: F401  (views the package imports lazily)

    for name in ("attention_grid", "attention_lines", "attribution", "logit_lens", "token_colors"):
        __import__(f"lmscope.widgets.{name}")
    __import__("lmscope.widgets.tokens")
    bundles = {}
    for cls in subclasses(LmscopeWidget):
        esm = cls.__dict__.get("_esm")  # anywidget's FileContents of the built bundle
        if esm is not None:
            bundles[cls.__name__] = str(esm)
    for name, text in bundles.items():
        code = _code_text(text)
        html = re.sub(
            rf'(<script type="text/plain" id="lms-code-{name}">).*?(</script>)',
            lambda m, code=code: m.group(1) + code + m.group(2),
            html,
            flags=re.S,
        )
    return html


def measure_page(browser, path: pathlib.Path, view: str, repeats: int) -> dict:
    html = current_page(path.read_text())
    path = path.with_name(f"current_{path.name}")
    path.write_text(html)
    expected = html.count("data-lmscope-view=")
    figures = html.count('"_model_name": "FigureModel"')
    paints, bq = [], []
    out: dict = {}
    for attempt in range(repeats):
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(("file:", "data:", "blob:"))
                else route.abort()
            ),
        )
        page.add_init_script(_WATCH)
        page.goto(path.as_uri(), wait_until="commit", timeout=180_000)
        paints.append(page.evaluate(_PAINTED, expected))
        if figures:
            bq.append(page.evaluate(_BQPLOT, figures))
        if attempt == repeats - 1:
            page.evaluate(_IDLE)  # hover and scroll a page that has finished loading
            hover_sel, scroll_sel = TARGETS[view]
            page.locator(hover_sel).first.scroll_into_view_if_needed()
            page.evaluate(_HOVER, [hover_sel, 5])  # warm up the handlers
            out["hover_ms"] = page.evaluate(_HOVER, [hover_sel, 100])
            out["scroll"] = page.evaluate(_SCROLL, [scroll_sel, 90]) if scroll_sel else None
            out["tab_ms"] = min(page.evaluate(_TAB) for _ in range(3))
        page.close()
    out["paint_ms"] = min(paints)
    drew = [t for t in bq if t is not None]
    out["bqplot_ms"] = min(drew) if drew else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--views", nargs="+", default=list(VIEWS), choices=VIEWS)
    ap.add_argument("--cache", type=pathlib.Path, default=pathlib.Path("/tmp/lmscope-bench-long"))
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    build(tuple(args.views), args.lengths, args.cache, args.rebuild)
    if args.build_only:
        return
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for n in args.lengths:
            for view in args.views:
                path = args.cache / f"{view}_{n}.html"
                meta = json.loads((args.cache / f"{view}_{n}.json").read_text())
                got = measure_page(browser, path, view, args.repeats)
                rows.append(
                    {"n": n, "view": view, **meta, **got, "page_mb": path.stat().st_size / 1e6}
                )
                print(f"done {view} {n}", file=sys.stderr)
        browser.close()
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print(
        "| view | tokens | build once (s) | synced (KB) | page (MB) | first paint (ms) "
        "| bqplot drawn (ms) | hover (ms) | scroll frame mean / worst (ms) | reaches end "
        "| tab switch (ms) |"
    )
    print("|---|" + "---:|" * 10)
    for r in rows:
        s = r["scroll"]
        scroll = f"{s['mean']:.1f} / {s['max']:.1f}" if s else "no scroll"
        end = ("yes" if s["atEnd"] else "no") if s else "-"
        bq = f"{r['bqplot_ms']:.0f}" if r["bqplot_ms"] else "-"
        hover = f"{r['hover_ms']:.2f}" if r["hover_ms"] is not None else "-"
        print(
            f"| {r['view']} | {r['n']} | {r['build_s']:.1f} | {r['synced_bytes'] / 1e3:.0f} "
            f"| {r['page_mb']:.1f} | {r['paint_ms']:.0f} | {bq} | {hover} | {scroll} | {end} "
            f"| {r['tab_ms']:.0f} |"
        )


if __name__ == "__main__":
    main()
