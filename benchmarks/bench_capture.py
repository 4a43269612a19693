"""Inspector.run() against a plain forward pass of the same model, in one run.

    .venv/bin/python benchmarks/bench_capture.py [--lengths 128 512 1024 2048] [--repeats 5]

Time: median of interleaved repeats (plain, lmscope, plain, lmscope, ...) so machine noise hits
both alike. Memory: bytes of the tensors a trace keeps beyond the logits a plain forward also
returns, next to what eager `output_attentions` + `output_hidden_states` keep for the same input.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

import lmscope
from lmscope.default_model import ensure_converted


def _bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t is None:
            continue
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def trace_bytes(trace) -> int:
    rec = trace._rec
    kept = [*rec.resid_pre, *rec.attn_out, *rec.mlp_out, *rec.mlp_hidden, rec.final_resid]
    kept += [
        t
        for call in rec.attn_call
        for t in (call[0] + tuple(call[1].values()))
        if torch.is_tensor(t)
    ]
    kept += [t for call in rec.attn_call for t in call[1].get("position_embeddings") or ()]
    return _bytes(kept)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    ins = lmscope.Inspector.from_pretrained(device="cpu")
    eager = AutoModelForCausalLM.from_pretrained(ensure_converted(), attn_implementation="eager")
    print(f"model: {ins.name}, device: cpu, threads: {torch.get_num_threads()}")
    print(
        "| tokens | plain forward (s) | lmscope run (s) | ratio | trace keeps (MB) | eager attn+hidden keep (MB) | eager time ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.lengths:
        ids = torch.randint(100, 40000, (n,))
        batch = ids[None]
        plain_times, ours_times = [], []
        with torch.no_grad():
            ins.model(input_ids=batch, use_cache=False)  # warm-up
            for _ in range(args.repeats):
                t = time.perf_counter()
                ins.model(input_ids=batch, use_cache=False)
                plain_times.append(time.perf_counter() - t)
                t = time.perf_counter()
                trace = ins.run(ids)
                ours_times.append(time.perf_counter() - t)
                kept = trace_bytes(trace)
                del trace
            t = time.perf_counter()
            out = eager(
                input_ids=batch, output_attentions=True, output_hidden_states=True, use_cache=False
            )
            eager_time = time.perf_counter() - t
            eager_kept = _bytes([*out.attentions, *out.hidden_states])
            del out
        plain, ours = statistics.median(plain_times), statistics.median(ours_times)
        print(
            f"| {n} | {plain:.3f} | {ours:.3f} | {ours / plain:.2f}x | {kept / 1e6:.0f} | "
            f"{eager_kept / 1e6:.0f} | {eager_time / plain:.2f}x |"
        )


if __name__ == "__main__":
    main()
