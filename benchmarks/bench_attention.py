"""Attention views vs BertViz on the default model: synced bytes, Python time, Chromium render
and hover time, beside BertViz's head_view HTML size and generation time, in one run.

    .venv/bin/python benchmarks/bench_attention.py --lengths 128 512 2048 --bertviz-max 512

BertViz is optional (`pip install bertviz`); without it that column says so. It writes every
layer's weights into the page as JSON, so its size grows as layers x heads x seq^2: past
--bertviz-max tokens it is not run (2048 tokens would be ~32 GB of HTML).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "browser"))

import lmscope  # noqa: E402
from lmscope.widgets.attention_grid import AttentionGrid  # noqa: E402
from lmscope.widgets.attention_lines import AttentionLines  # noqa: E402

LAYER, HEAD = 5, 1
TEXT = (
    "The old lighthouse keeper walked along the shore every evening, watching the waves roll in "
    "from the grey sea while gulls circled above the harbour and the fishing boats came home. "
)

# time many synchronous hovers in the page: each mousemove over a new token redraws lines+labels
_HOVER = """
(n) => {
  const stage = document.querySelector('.lms-al-stage');
  const b = stage.getBoundingClientRect();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const y = b.top + 8 + ((i * 37) % Math.max(1, b.height - 16));
    stage.dispatchEvent(new MouseEvent('mousemove', {clientX: b.left + 40, clientY: y, bubbles: true}));
  }
  return (performance.now() - t0) / n;
}
"""


def prompt_ids(ins: lmscope.Inspector, n: int) -> torch.Tensor:
    ids = ins.tokenizer(TEXT * (n // 20 + 2), return_tensors="pt").input_ids[0]
    return ids[:n]


def data_bytes(widget) -> int:
    """Synced state without the JS bundle (the same few KB for any prompt)."""
    return widget.synced_bytes()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bertviz_html(ids: torch.Tensor, tokens: list[str]) -> tuple[int, float]:
    from bertviz import head_view
    from transformers import AutoModelForCausalLM

    from lmscope.default_model import ensure_converted

    model = AutoModelForCausalLM.from_pretrained(ensure_converted(), attn_implementation="eager")
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        attn = model(ids[None], output_attentions=True).attentions
    html = head_view(attn, tokens, html_action="return")
    seconds = time.perf_counter() - t0
    size = len(html.data.encode())
    del html, attn
    return size, seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    ap.add_argument("--bertviz-max", type=int, default=512)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="e.g. bfloat16 (default: the model's)")
    args = ap.parse_args()
    torch.set_num_threads(2)

    try:
        import bertviz  # noqa: F401

        have_bertviz = True
    except ImportError:
        have_bertviz = False
        print("bertviz is not installed: its columns are skipped (pip install bertviz)")

    dtype = getattr(torch, args.dtype) if args.dtype else None
    ins = lmscope.Inspector.from_pretrained(device=args.device, dtype=dtype)
    browser = page = None
    if not args.no_browser:
        from playwright.sync_api import sync_playwright
        from test_attention_views import mount

        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])

    rows = []
    for n in args.lengths:
        ids = prompt_ids(ins, n)
        tr = ins.run(ids)
        lines, t_lines = timed(lambda tr=tr: AttentionLines(tr, layer=LAYER, head=HEAD))
        _, t_mean = timed(
            lambda tr=tr: AttentionLines(tr, layer=LAYER, head="mean", layer_end=LAYER + 3)
        )
        grid, t_grid = timed(lambda tr=tr: AttentionGrid(tr, by="head", head=HEAD))
        row = {
            "n": n,
            "lines_kb": data_bytes(lines) / 1e3,
            "n_lines": len(lines.lines["query"]["data"]) // 2,
            "grid_kb": data_bytes(grid) / 1e3,
            "t_lines": t_lines,
            "t_mean": t_mean,
            "t_grid": t_grid,
        }
        if browser is not None:
            page = browser.new_page(viewport={"width": 900, "height": 900})
            row["render_ms"] = mount(page, lines)
            row["hover_ms"] = page.evaluate(_HOVER, 200)
            page.close()
            page = browser.new_page(viewport={"width": 1000, "height": 1200})
            row["grid_ms"] = mount(page, grid)
            page.close()
        if have_bertviz and n <= args.bertviz_max:
            row["bv_mb"], row["bv_s"] = (x for x in _scale(bertviz_html(ids, tr.tokens)))
        rows.append(row)
        del lines, grid, tr
        print(f"done {n} tokens", file=sys.stderr)

    if browser is not None:
        browser.close()
    print(
        "| tokens | lines synced (KB) | lines | grid by head synced (KB) | lines Python (s) "
        "| 4-layer mean Python (s) | grid 30 layers Python (s) | lines render (ms) "
        "| hover redraw (ms) | grid render (ms) | BertViz HTML (MB) | BertViz time (s) |"
    )
    print("|---:" * 12 + "|")
    for r in rows:
        bv = (f"{r['bv_mb']:.1f}", f"{r['bv_s']:.1f}") if "bv_mb" in r else ("not run", "not run")
        print(
            f"| {r['n']} | {r['lines_kb']:.0f} | {r['n_lines']} | {r['grid_kb']:.0f} "
            f"| {r['t_lines']:.3f} | {r['t_mean']:.3f} | {r['t_grid']:.2f} "
            f"| {r.get('render_ms', float('nan')):.0f} | {r.get('hover_ms', float('nan')):.2f} "
            f"| {r.get('grid_ms', float('nan')):.0f} | {bv[0]} | {bv[1]} |"
        )


def _scale(result: tuple[int, float]) -> tuple[float, float]:
    return result[0] / 1e6, result[1]


if __name__ == "__main__":
    main()
