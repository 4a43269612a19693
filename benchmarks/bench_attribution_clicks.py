"""Attribution on a long prompt as a user meets it: the view's first state, a click on a head of
a block not split yet (its block is split, then its sources), a click on another head of that
block, and the other blocks split (`fill_all`), on the default model from one forward.

    OMP_NUM_THREADS=2 flock /tmp/lmscope-8k.lock .venv/bin/python benchmarks/bench_attribution_clicks.py --length 8192
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


def timed(what: str, action) -> None:
    t0 = time.perf_counter()
    action()
    print(f"{what}: {time.perf_counter() - t0:.2f} s (load {load()})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=8192)
    parser.add_argument("--internals", default="recompute", choices=("auto", "keep", "recompute"))
    parser.add_argument("--layer", type=int, default=5)
    args = parser.parse_args()
    ins = lmscope.Inspector.from_pretrained(device="cpu", trace_internals=args.internals)
    t0 = time.perf_counter()
    tr = ins.run(prompt_ids(ins, args.length))
    print(f"{tr.seq_len} tokens: forward {time.perf_counter() - t0:.1f} s", flush=True)
    views = []
    timed(
        "first state",
        lambda: views.append(lmscope.Attribution(tr, target=int(tr.logits[-1].argmax()))),
    )
    view = views[0]
    print(f"  blocks not split yet: {len(view.result.pending)}", flush=True)
    timed("click a head of a block not split yet", lambda: view.select(args.layer, 1))
    timed("click another head of that block", lambda: view.select(args.layer, 2))
    timed("the other blocks split (fill_all)", view.fill_all)
    print(f"  unexplained {view.summary['unexplained']:.2g}; route: {view.summary['route']}")


if __name__ == "__main__":
    main()
