"""Norm statistics and NormPlot at 1024 tokens on SmolLM2 (30 layers), CPU.

- the batched fit (`norm_regression`, all layers in one pinv) vs a statsmodels OLS per layer
- the saved page in Chromium: time to draw the strips and to show a hover tooltip, with the
  default subsample (max_points=8000) vs every point (30 x 1023 = 30,690 SVG circles)

    .venv/bin/python benchmarks/bench_norms.py
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time

import numpy as np
import statsmodels.api as sm
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from _models import default_inspector
from lmscope.stats import log_norms, norm_regression
from lmscope.widgets.norm_plot import NormPlot


def best(fn, n=5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def statsmodels_loop(y: np.ndarray) -> None:
    for row in y:
        X = np.column_stack([np.ones(len(row) - 3), row[2:-1], row[1:-2]])
        sm.OLS(row[3:], X).fit().pvalues  # noqa: B018


def page_times(widget: NormPlot, browser) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = widget.save_html(pathlib.Path(tmp) / "n.html")
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        t0 = time.perf_counter()
        page.goto(path.as_uri())
        strips = page.locator(".bqplot").first
        n = len(widget._strip.y)
        strips.locator(".dot").nth(n - 1).wait_for(timeout=120_000)
        draw = time.perf_counter() - t0
        dot = strips.locator(".dot").nth(n // 2)
        t0 = time.perf_counter()
        dot.dispatch_event("mouseover")
        page.locator(".bqplot_tooltip_div").filter(has_text="log norm").wait_for()
        hover = time.perf_counter() - t0
        page.close()
    return draw, hover, n


def main() -> None:
    from playwright.sync_api import sync_playwright

    ins = default_inspector()
    ids = torch.randint(100, 40000, (1024,), generator=torch.Generator().manual_seed(0))
    tr = ins.run(ids)
    y = log_norms(tr).numpy()
    ours = best(lambda: norm_regression(tr))
    fit_only = best(lambda: norm_regression.__globals__["lagged_ols"](torch.from_numpy(y), 2))
    ref = best(lambda: statsmodels_loop(y))
    print("| 1024 tokens, 30 layers | time |")
    print("|---|---|")
    print(f"| `norm_regression` (norms + batched fit) | {ours * 1e3:.1f} ms |")
    print(f"| batched fit alone | {fit_only * 1e3:.1f} ms |")
    print(f"| statsmodels OLS per layer (fit + p-values) | {ref * 1e3:.1f} ms |")
    t0 = time.perf_counter()
    w = NormPlot(tr)
    print(f"| NormPlot(trace) build | {(time.perf_counter() - t0) * 1e3:.0f} ms |")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for label, widget in (
            ("default subsample", w),
            ("every point", NormPlot(tr, max_points=10**6)),
        ):
            draw, hover, n = page_times(widget, b)
            print(f"| saved page, {label} ({n} points): load + draw | {draw:.2f} s |")
            print(f"| saved page, {label}: hover to tooltip | {hover * 1e3:.0f} ms |")
        b.close()


if __name__ == "__main__":
    main()
