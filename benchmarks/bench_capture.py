"""Inspector.run() against a plain forward pass of the same model, in one run.

    .venv/bin/python benchmarks/bench_capture.py [--lengths 128 512 1024 2048] [--repeats 5]
        [--device cpu] [--dtype float32]

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
from lmscope import memory
from lmscope.default_model import ensure_converted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    ins = lmscope.Inspector.from_pretrained(device=args.device, dtype=dtype)
    eager = AutoModelForCausalLM.from_pretrained(
        ensure_converted(), attn_implementation="eager", dtype=dtype
    ).to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None
    print(
        f"model: {ins.name}, device: {args.device}, {args.dtype}, threads: {torch.get_num_threads()}"
    )
    print(
        "| tokens | plain forward (s) | lmscope run (s) | ratio | trace keeps (MB) | eager attn+hidden keep (MB) | eager time ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.lengths:
        ids = torch.randint(100, 40000, (n,))
        batch = ids.to(args.device)[None]
        plain_times, ours_times = [], []
        with torch.no_grad():
            ins.model(input_ids=batch, use_cache=False)  # warm-up
            for _ in range(args.repeats):
                sync()
                t = time.perf_counter()
                ins.model(input_ids=batch, use_cache=False)
                sync()
                plain_times.append(time.perf_counter() - t)
                t = time.perf_counter()
                trace = ins.run(ids)
                sync()
                ours_times.append(time.perf_counter() - t)
                kept = trace.stored_bytes()
                del trace
            sync()
            t = time.perf_counter()
            out = eager(
                input_ids=batch, output_attentions=True, output_hidden_states=True, use_cache=False
            )
            sync()
            eager_time = time.perf_counter() - t
            eager_kept = memory.tensor_bytes([out.attentions, out.hidden_states])
            del out
        plain, ours = statistics.median(plain_times), statistics.median(ours_times)
        print(
            f"| {n} | {plain:.3f} | {ours:.3f} | {ours / plain:.2f}x | {kept / 1e6:.0f} | "
            f"{eager_kept / 1e6:.0f} | {eager_time / plain:.2f}x |"
        )


if __name__ == "__main__":
    main()
