"""Long prompts on the default model: every view's Python time to its first synced state and its
synced bytes, at 2,048 and 8,192 tokens, in one run.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_long.py --lengths 2048 8192

One forward per length (timed on its own: the goal is building a view from a trace), then each
view built from that trace in turn: the time is its constructor's (the call a user makes, to the
moment its synced state is set), the bytes are its synced state without the JS bundle, summed
over every widget the view is made of (a composite's table, plots, marks and scales). Views that
fill the rest of their data afterwards (the lens on scroll, token colours in the background)
also get the time until everything is there ("complete"). The dashboard is timed from its
constructor (it opens the Tokens tab) and then per tab switch. `--skip View@N` leaves a view out
at one length (the eager lens at 8k took 338 s). AttentionGridDiff is the grid's difference mode
as the dashboard shows it after an edit: the run with head 1 of block 0 ablated (its forward
timed apart, like the first) minus the plain run, at layer 5.
"""

from __future__ import annotations

import argparse
import gc
import os
import pathlib
import resource
import sys
import time

import ipywidgets as ipw
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import lmscope  # noqa: E402
from bench_attention import prompt_ids  # noqa: E402
from lmscope import _wire, memory  # noqa: E402
from lmscope.widgets.base import LmscopeWidget  # noqa: E402
from lmscope.widgets.dashboard import TABS  # noqa: E402

VIEWS = (
    "TokenView",
    "AttentionLines",
    "AttentionGrid",
    "AttentionGridDiff",
    "AttentionExplorer",
    "LogitLens",
    "TokenColors",
    "NormPlot",
    "Attribution",
    "Dashboard",
)


def widget_bytes(widget: ipw.Widget, seen: set[int] | None = None) -> int:
    """Synced bytes of `widget` and every widget its state refers to (each counted once)."""
    seen = set() if seen is None else seen
    if id(widget) in seen:
        return 0
    seen.add(id(widget))
    if isinstance(widget, LmscopeWidget):
        total = widget.synced_bytes()
    else:
        state = widget.get_state()
        total = sum(_wire.nbytes(v) for k, v in state.items() if not k.startswith("_"))
    for name in widget.keys:
        value = getattr(widget, name, None)
        items = value if isinstance(value, list | tuple) else [value]
        if isinstance(value, dict):
            items = list(value.values())
        for item in items:
            if isinstance(item, ipw.Widget):
                total += widget_bytes(item, seen)
    return total


EDIT = lmscope.Ablate(0, head=1)


def make_view(name: str, tr, edited=None):
    if name == "TokenView":
        return lmscope.TokenView(tr)
    if name == "AttentionLines":
        return lmscope.AttentionLines(tr, layer=5, head=1)
    if name == "AttentionGrid":
        return lmscope.AttentionGrid(tr)
    if name == "AttentionGridDiff":
        return lmscope.AttentionGrid(edited, layer=5, compare=tr, mode="diff")
    if name == "AttentionExplorer":
        return lmscope.AttentionExplorer(tr)
    if name == "LogitLens":
        return lmscope.LogitLens(tr, targets=int(tr.logits[-1].argmax()))
    if name == "TokenColors":
        return lmscope.TokenColors(tr)
    if name == "NormPlot":
        return lmscope.NormPlot(tr)
    if name == "Attribution":
        return lmscope.Attribution(tr, target=int(tr.logits[-1].argmax()))
    raise ValueError(name)


def complete(view) -> float | None:
    """Seconds until a view that fills its data later has all of it (None: it has at build)."""
    fill = getattr(view, "fill_all", None)
    if fill is None:
        return None
    t0 = time.perf_counter()
    fill()
    return time.perf_counter() - t0


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def row(*cells) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--views", nargs="+", default=list(VIEWS), choices=VIEWS)
    parser.add_argument("--skip", nargs="*", default=[], help="View@N pairs to leave out")
    parser.add_argument("--complete", action="store_true", help="also time filling the rest")
    parser.add_argument(
        "--internals",
        default="auto",
        choices=("auto", "keep", "recompute"),
        help="the trace's storage rule (auto depends on free memory: pin it to compare runs)",
    )
    args = parser.parse_args()

    ins = lmscope.Inspector.from_pretrained(device="cpu", trace_internals=args.internals)
    print(f"torch threads {torch.get_num_threads()}, load {load()}", flush=True)
    for n in args.lengths:
        ids = prompt_ids(ins, n)
        gc.collect()
        t0 = time.perf_counter()
        tr = ins.run(ids)
        forward = time.perf_counter() - t0
        cpu = torch.device("cpu")
        print(
            f"\n## {tr.seq_len} tokens: forward (ins.run) {forward:.1f} s, load {load()}; trace "
            f"stores {tr.stored_bytes() / 1e6:.0f} MB + logits "
            f"{(tr.stored_bytes(logits=True) - tr.stored_bytes()) / 1e6:.0f} MB, internals "
            f"{'kept' if tr.internals_kept else 'recomputed'}; default budget "
            f"{memory.budget_bytes(cpu) / 1e9:.1f} GB; peak RSS {rss_mb():.0f} MB\n",
            flush=True,
        )
        edited = None
        if "AttentionGridDiff" in args.views and f"AttentionGridDiff@{n}" not in args.skip:
            t0 = time.perf_counter()
            edited = ins.run(ids, edits=[EDIT])
            print(
                f"edited forward ({edited.edits_text}) {time.perf_counter() - t0:.1f} s\n",
                flush=True,
            )
        row("view", "first state (s)", "synced (KB)", "complete (s)", "load after")
        row(*["---"] * 5)
        for name in args.views:
            if f"{name}@{n}" in args.skip:
                row(name, "skipped", "", "", "")
                continue
            gc.collect()
            t0 = time.perf_counter()
            view = make_view(name, tr, edited) if name != "Dashboard" else lmscope.Dashboard(tr)
            first = time.perf_counter() - t0
            size = widget_bytes(view)
            done = complete(view) if args.complete else None
            row(
                name,
                f"{first:.2f}",
                f"{size / 1e3:.0f}",
                "" if done is None else f"{done:.1f}",
                load(),
            )
            if name == "Dashboard":
                for tab in TABS[1:]:
                    if f"{tab}@{n}" in args.skip:
                        row(f"  tab {tab}", "skipped", "", "", "")
                        continue
                    t0 = time.perf_counter()
                    view.tabs.selected_index = TABS.index(tab)
                    switch = time.perf_counter() - t0
                    size = widget_bytes(view.views[tab])
                    row(f"  tab {tab}", f"{switch:.2f}", f"{size / 1e3:.0f}", "", load())
            view.close()
            del view
        print(f"\npeak RSS {rss_mb():.0f} MB", flush=True)
        tr.release()
        if edited is not None:
            edited.release()
        del tr, edited


if __name__ == "__main__":
    main()
