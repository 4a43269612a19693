"""Soak: N consecutive runs with view updates on the default model; host memory before/after.

    .venv/bin/python benchmarks/bench_soak.py --runs 200

Each step runs a new prompt, builds an AttentionLines view on it, switches its layer and head
(Python answers with new slices), selects a token in a TokenView, then closes both views
(what a dashboard does when it swaps prompts) and drops the trace. RSS
is read after a warm-up of 20 steps (allocator pools settle) and at the end.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import torch

import lmscope
from lmscope.widgets.attention_lines import AttentionLines
from lmscope.widgets.tokens import TokenView


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    ins = lmscope.Inspector.from_pretrained(device="auto")
    cuda = ins.device.type == "cuda"

    def step(i: int) -> None:
        trace = ins.run(f"Step {i}: the {i % 13} quick brown foxes jump over {i % 7} lazy dogs.")
        lines = AttentionLines(trace, layer=i % 30, head=i % 9)
        lines.layer, lines.head = (i + 5) % 30, (i + 1) % 9
        view = TokenView(trace)
        view.token = i % trace.seq_len
        # ipywidgets keeps every widget in a registry until closed, as a notebook would
        lines.close()
        view.close()
        del trace, lines, view

    warm = 20
    for i in range(warm):
        step(i)
    gc.collect()
    before, device_before = rss_mb(), torch.cuda.memory_allocated() / 1e6 if cuda else 0.0
    started = time.perf_counter()
    for i in range(warm, args.runs):
        step(i)
    gc.collect()
    after, device_after = rss_mb(), torch.cuda.memory_allocated() / 1e6 if cuda else 0.0
    print(
        f"device: {ins.device}; steps after warm-up: {args.runs - warm}; "
        f"{(time.perf_counter() - started) / (args.runs - warm) * 1000:.0f} ms/step"
    )
    print("| memory | before (MB) | after (MB) | growth (MB) |")
    print("|---|---:|---:|---:|")
    print(f"| host RSS | {before:.0f} | {after:.0f} | {after - before:+.1f} |")
    if cuda:
        print(
            f"| CUDA allocated | {device_before:.0f} | {device_after:.0f} | {device_after - device_before:+.1f} |"
        )


if __name__ == "__main__":
    main()
