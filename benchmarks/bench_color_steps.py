"""TokenColors' idle steps at long prompts: how long each one holds the kernel (a click in any
view waits for the step under way), on the default model with internals recomputed.

    flock /tmp/lmscope-8k.lock .venv/bin/python benchmarks/bench_color_steps.py --lengths 8192

One forward per length, then the view's first state, then its first --steps idle steps run one
by one as the kernel's idle loop would (`_next_step`), each timed and named by what it did: a
block rerun, a block of a neighbour table, a normalized cut, or the colours sent at the end.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import lmscope  # noqa: E402
from bench_attention import prompt_ids  # noqa: E402


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def what_it_did(w, tr, before: dict) -> str:
    if w.exact:
        return "colours sent"
    if w._spectral_done > before["cuts"]:
        return f"normalized cut {w._spectral_done}"
    if w.neighbors_layer != before["neighbors_layer"]:
        return "neighbour block (tables sent)"
    if tuple(tr._recomputed) != before["reruns"]:  # the blocks whose rerun is cached
        return "block rerun"
    return "neighbour block"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--steps", type=int, default=40, help="idle steps timed per length")
    parser.add_argument("--layer", type=int, default=15)
    args = parser.parse_args()

    ins = lmscope.Inspector.from_pretrained(device="cpu", trace_internals="recompute")
    for n in args.lengths:
        ids = prompt_ids(ins, n)
        t0 = time.perf_counter()
        tr = ins.run(ids)
        print(f"\n## {tr.seq_len} tokens: forward {time.perf_counter() - t0:.1f} s, load {load()}")
        t0 = time.perf_counter()
        w = lmscope.TokenColors(tr, layer=args.layer)
        print(f"first state {time.perf_counter() - t0:.2f} s\n")
        print("| step | what it did | s | load |\n|---:|---|---:|---|", flush=True)
        times: dict[str, list[float]] = {}
        for i in range(args.steps):
            if w._steps is None:
                break
            before = {
                "cuts": w._spectral_done,
                "neighbors_layer": w.neighbors_layer,
                "reruns": tuple(tr._recomputed),
            }
            t0 = time.perf_counter()
            w._next_step()
            took = time.perf_counter() - t0
            kind = what_it_did(w, tr, before)
            times.setdefault(kind.split(" (")[0].rstrip("0123456789 "), []).append(took)
            print(f"| {i + 1} | {kind} | {took:.2f} | {load()} |", flush=True)
        print()
        for kind, ts in times.items():
            print(
                f"{kind}: {len(ts)} steps, mean {sum(ts) / len(ts):.2f} s, longest {max(ts):.2f} s"
            )
        w.close()


if __name__ == "__main__":
    main()
