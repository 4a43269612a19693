"""Spectral token colors: all layers x 3 streams, vs the reference notebook's per-layer route.

lmscope: `token_colors` for attn_out, mlp_out and resid_post (every layer, aligned), then the
neighbour table of one layer (what the view asks for on a layer change), and the cached call.
Baseline: what the reference notebook does per layer and stream (ncut-pytorch `Ncut(n_eig=20)`
then `tsne_color` to 3-D, fitted independently, so colors are not comparable across layers);
it is timed on `--baseline-layers` layers of each stream and scaled to all layers.

    .venv/bin/python benchmarks/bench_coloring.py --tokens 128 512 1024 --repeats 2
"""

from __future__ import annotations

import argparse
import time

import torch

import lmscope
from lmscope import coloring
from lmscope.trace import VIEW_STREAMS

TEXT = (
    "The old lighthouse keeper walked along the shore every evening, watching the waves roll in "
    "from the grey sea while gulls circled above the harbour and the fishing boats came home.\n"
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
    "    return a\n\nprint([fibonacci(i) for i in range(10)])\n"
)


def all_streams(trace) -> None:
    coloring._cache.pop(trace, None)  # cold: nothing cached for this trace
    for stream in VIEW_STREAMS:
        coloring.token_colors(trace, stream=stream)


def baseline(trace, layers: list[int]) -> float:
    """Seconds per (layer, stream) for the notebook route: Ncut(20) + t-SNE colors."""
    from ncut_pytorch import Ncut
    from ncut_pytorch.color import tsne_color

    start = time.perf_counter()
    for stream in VIEW_STREAMS:
        for layer in layers:
            eig = Ncut(n_eig=20, device="cpu").fit_transform(trace.stream(stream, layer))
            tsne_color(eig, device="cpu", seed=42)
    return (time.perf_counter() - start) / (len(layers) * len(VIEW_STREAMS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline-layers", type=int, default=2)
    args = parser.parse_args()
    ins = lmscope.Inspector.from_pretrained(device="cpu")
    ids = ins.tokenizer(TEXT * 64, return_tensors="pt").input_ids[0]
    print(f"torch threads: {torch.get_num_threads()}, model: {ins.name}\n")
    print(
        "| tokens | 3 streams x all layers (s) | per stream (s) | cached call (ms) "
        "| neighbours, 1 layer x 3 (ms) | colors synced (KB) | notebook route, all layers (s) "
        "| speed-up |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.tokens:
        tr = ins.run(ids[:n])
        all_streams(tr)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            all_streams(tr)
            best = min(best, time.perf_counter() - start)
        start = time.perf_counter()
        coloring.token_colors(tr, stream="resid_post")
        cached = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        for stream in VIEW_STREAMS:
            coloring.token_neighbors(tr, stream=stream, layer=tr.n_layers // 2, n_neighbors=5)
        neigh = (time.perf_counter() - start) * 1e3
        synced = 3 * tr.n_layers * n * 3 / 1024
        step = max(1, tr.n_layers // args.baseline_layers)
        per_fit = baseline(tr, list(range(0, tr.n_layers, step))[: args.baseline_layers])
        notebook = per_fit * 3 * tr.n_layers
        print(
            f"| {n} | {best:.2f} | {best / 3:.2f} | {cached:.2f} | {neigh:.0f} | {synced:.0f} "
            f"| {notebook:.0f} | {notebook / best:.0f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
