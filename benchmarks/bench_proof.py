"""Cost of the load-time proof on the default model (SmolLM2-135M, 30 layers), CPU.

`Inspector(model)` runs one short forward (lmscope.proof.PROOF_TOKENS tokens) with hooks and
recomputes one attention layer per kind; `Inspector(model, prove=False)` skips it. Reported:
the best of several tries of each, interleaved, and the plain forward of the same tokens as the
yardstick (the proof cannot cost less than one forward).

    .venv/bin/python benchmarks/bench_proof.py
"""

from __future__ import annotations

import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import lmscope
from _models import default_inspector
from lmscope.proof import PROOF_TOKENS


def main(repeats: int = 7) -> None:
    torch.set_num_threads(2)
    ins = default_inspector()
    model, tok = ins.model, ins.tokenizer
    ids = torch.arange(PROOF_TOKENS)[None] + 100
    times: dict[str, list[float]] = {"forward": [], "unproven": [], "proven": []}
    for _ in range(repeats):
        for name, fn in (
            ("forward", lambda: model(input_ids=ids, use_cache=False)),
            ("unproven", lambda: lmscope.Inspector(model, tok, prove=False)),
            ("proven", lambda: lmscope.Inspector(model, tok)),
        ):
            with torch.no_grad():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    best = {k: min(v) * 1000 for k, v in times.items()}
    proof = best["proven"] - best["unproven"]
    print(f"plain forward of {PROOF_TOKENS} tokens: {best['forward']:.1f} ms")
    print(f"Inspector(prove=False): {best['unproven']:.1f} ms")
    print(f"Inspector() with the proof: {best['proven']:.1f} ms")
    print(f"proof: {proof:.1f} ms = {proof / best['forward']:.2f}x the plain forward")


if __name__ == "__main__":
    main()
