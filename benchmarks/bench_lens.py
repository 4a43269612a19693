"""Logit lens vs its floor: a bare batched unembedding matmul + topk over the same normed states.

The lens does more than the floor (gathers the states, applies the final norm, normalizes the
softmax, reads the last layer from the model's logits); the ratio says what that costs. The
classic notebook route (per layer: norm, unembed, softmax, Python sort of the vocabulary) is
timed at the last position for comparison.

    .venv/bin/python benchmarks/bench_lens.py --tokens 1024 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import torch

import lmscope
from lmscope import lens

TEXT = (
    "The old lighthouse keeper walked along the shore every evening, watching the waves roll in "
    "from the grey sea while gulls circled above the harbour and the fishing boats came home. "
)


def timed(fns: dict, repeats: int) -> dict[str, float]:
    """Best of `repeats` for each function, run in turn so a noisy neighbour hits all alike."""
    for fn in fns.values():
        fn()  # warm-up: first-touch allocations, kernel selection
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def normed_states(trace, positions: list[int]) -> torch.Tensor:
    index = torch.tensor(positions)
    with torch.no_grad():
        states = torch.cat([trace.resid_post(layer)[index] for layer in range(trace.n_layers)])
        return trace.parts.final_norm(states)


def floor(trace, normed: torch.Tensor, k: int, rows: int) -> None:
    weight = trace.parts.unembed.weight
    with torch.no_grad():
        for start in range(0, normed.shape[0], rows):
            (normed[start : start + rows] @ weight.T).topk(k, dim=-1)


def classic(trace, position: int, k: int) -> None:
    """The by-hand notebook: one layer at a time, softmax, then sort the vocabulary in Python."""
    with torch.no_grad():
        for layer in range(trace.n_layers):
            probs = torch.softmax(trace.unembed(trace.resid_post(layer)[position]), -1).tolist()
            sorted(range(len(probs)), key=probs.__getitem__, reverse=True)[:k]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None, help="e.g. bfloat16 (default: the model's)")
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype) if args.dtype else None
    ins = lmscope.Inspector.from_pretrained(device=args.device, dtype=dtype)
    ids = ins.encode(TEXT * (args.tokens // 30 + 2))[: args.tokens]
    trace = ins.run(ids)
    k, n = args.top_k, trace.seq_len
    rows = max(1, lens.CHUNK_BYTES // (trace.logits.shape[-1] * 4))
    print(
        f"{ins.name}, {trace.device}, {torch.get_num_threads()} threads, {trace.dtype}, "
        f"{n} tokens, {trace.n_layers} layers, top_k={k}, chunk {rows} rows\n"
    )
    print("| case | rows | floor (s) | lens post (s) | ratio | lens mid (s) | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, positions, repeats in [
        ("last position, all layers", [n - 1], max(args.repeats, 10)),
        (f"all {n} positions × all layers", list(range(n)), args.repeats),
    ]:
        normed = normed_states(trace, positions)
        t = timed(
            {
                "floor": lambda normed=normed: floor(trace, normed, k, rows),
                "post": lambda p=positions: lens.logit_lens(
                    trace, top_k=k, stage="post", positions=p
                ),
                "mid": lambda p=positions: lens.logit_lens(
                    trace, top_k=k, stage="mid", positions=p
                ),
            },
            repeats,
        )
        del normed
        print(
            f"| {name} | {len(positions) * trace.n_layers} | {t['floor']:.4f} | {t['post']:.4f} | "
            f"{t['post'] / t['floor']:.2f}x | {t['mid']:.4f} | {t['mid'] / t['floor']:.2f}x |"
        )
    t = timed(
        {
            "classic": lambda: classic(trace, n - 1, k),
            "lens": lambda: lens.logit_lens(trace, top_k=k, stage="post", positions=n - 1),
        },
        max(args.repeats, 3),
    )
    t_classic, t_last = t["classic"], t["lens"]
    print(
        f"\nclassic per-layer softmax + Python sort at the last position: {t_classic:.3f} s "
        f"(lens {t_last:.4f} s, {t_classic / t_last:.0f}x faster)"
    )


if __name__ == "__main__":
    main()
