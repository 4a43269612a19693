"""Dispatched models and the trace's storage, in one run.

    .venv/bin/python benchmarks/bench_scale.py [--tokens 512] [--memory-tokens 1024 8192]
        [--repeats 3] [--device cpu] [--dtype float32] [--far disk|cpu|cuda:1]
        [--clock cpu|wall] [--threads N]

1. Capture: `Inspector.run()` on the default model dispatched by a device map (blocks 15-29 on
   disk when on the CPU, CPU-offloaded on a GPU, or on `--far cuda:1`), and through
   accelerate's `cpu_offload`, against the plain forward of that same dispatched model;
   interleaved repeats, best and median.
2. Trace memory at each of `--memory-tokens` on the default model: every block's internals
   kept (today's layout) against internals recomputed (the default when the budget is tight)
   against the floor, the residual stream's own bytes (every block's input and the last
   block's output). Bytes are those the trace holds, logits listed apart.
3. Recomputing one layer's internals (rerunning its block with lmscope's hooks) against one
   plain call of that block on the same input; interleaved, over layers 0, 15, 29.
4. Estimated trace memory of Llama-3-8B and Llama-3-70B shapes at 8192 tokens in bf16, before
   and after, from their configs' numbers (no download).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from accelerate import cpu_offload

import lmscope
from lmscope import memory

# numbers from the configs of meta-llama/Meta-Llama-3-8B and -70B
LLAMA3 = {
    "Llama-3-8B": dict(n_layers=32, d_model=4096, d_mlp=14336, n_heads=32, vocab=128256),
    "Llama-3-70B": dict(n_layers=80, d_model=8192, d_mlp=28672, n_heads=64, vocab=128256),
}


def device_map(device: str, far: str) -> dict[str, str]:
    where = {"model.embed_tokens": device, "model.rotary_emb": device, "model.norm": device}
    where |= {f"model.layers.{i}": device if i < 15 else far for i in range(30)}
    return where | {"lm_head": device}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


#: the clock: wall time on a GPU; on the CPU the process's CPU time, which a busy shared
#: machine disturbs far less than wall time (other processes' turns are not counted)
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn, device: str, clock: str = "wall") -> float:
    sync(device)
    start = CLOCK[clock]()
    fn()
    sync(device)
    return CLOCK[clock]() - start


def bench_capture(ins, label: str, n_tokens: int, repeats: int, device: str, clock: str) -> None:
    """Best and median of interleaved repeats (plain, keep, recompute, plain, ...): on a busy
    machine the best of each is the steadiest ratio."""
    ids = torch.randint(100, 40000, (n_tokens,))
    batch = ids.to(ins.device)[None]
    times: dict[str, list[float]] = {"plain": [], "keep": [], "recompute": []}

    def run(mode: str) -> None:
        ins.trace_internals = mode
        ins.run(ids)

    with torch.no_grad():
        ins.model(input_ids=batch, use_cache=False)  # warm-up
        for _ in range(repeats):
            times["plain"].append(
                timed(lambda: ins.model(input_ids=batch, use_cache=False), device, clock)
            )
            for mode in ("keep", "recompute"):
                times[mode].append(timed(lambda m=mode: run(m), device, clock))
    ins.trace_internals = "auto"
    best = {m: min(t) for m, t in times.items()}
    mid = {m: statistics.median(t) for m, t in times.items()}
    print(
        f"| {label} | {n_tokens} | {best['plain']:.3f} | {best['keep']:.3f} | "
        f"{best['keep'] / best['plain']:.2f}x ({mid['keep'] / mid['plain']:.2f}x) | "
        f"{best['recompute']:.3f} | {best['recompute'] / best['plain']:.2f}x "
        f"({mid['recompute'] / mid['plain']:.2f}x) |"
    )


CAPTURE_HEADER = (
    "\n### Capture of a dispatched model vs its own plain forward ({clock} time, best of the "
    "repeats; median ratio in brackets)\n\n"
    "| placement | tokens | plain forward (s) | run, internals kept (s) | ratio "
    "| run, internals recomputed (s) | ratio |\n|---|---:|---:|---:|---:|---:|---:|"
)


def bench_memory(ins, lengths: list[int]) -> None:
    print("\n### Trace memory, default model\n")
    print(
        "| tokens | floor: stream (MB) | internals kept (MB) | ratio | recomputed (MB) | ratio "
        "| + one block cached (MB) | ratio | logits (MB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    d_model, d_mlp = ins.config.hidden_size, ins.d_mlp
    size = ins._element_size
    for n in lengths:
        ids = torch.randint(100, 40000, (n,))
        ins.trace_internals = "recompute"
        trace = ins.run(ids)
        floor = (trace.n_layers + 1) * n * d_model * trace.dtype.itemsize
        stream = trace.stored_bytes()
        trace.mlp_out(15)  # a view asks: one block rerun and cached
        cached = trace.stored_bytes()
        logits = trace.logits.numel() * trace.logits.element_size()
        del trace
        if n <= 2048:  # today's layout, measured
            ins.trace_internals = "keep"
            kept_trace = ins.run(ids)
            kept = kept_trace.stored_bytes()
            del kept_trace
        else:  # the same layout from its formula (checked against the measurement above)
            kept = stream + ins.n_layers * memory.internals_layer_bytes(
                n_tokens=n, d_model=d_model, d_mlp=d_mlp, element_size=size
            )
        mb = 1e6
        print(
            f"| {n} | {floor / mb:.0f} | {kept / mb:.0f} | {kept / floor:.2f}x | "
            f"{stream / mb:.0f} | {stream / floor:.2f}x | {cached / mb:.0f} | "
            f"{cached / floor:.2f}x | {logits / mb:.0f} |"
        )
    ins.trace_internals = "auto"


def bench_recompute(ins, n_tokens: int, repeats: int, device: str, clock: str) -> None:
    ins.trace_internals = "recompute"
    trace = ins.run(torch.randint(100, 40000, (n_tokens,)))
    ratios, blocks, reruns = [], [], []
    with torch.no_grad():
        for layer in (0, 15, 29):
            block = ins.parts.blocks[layer]
            args, kwargs = trace._rec.block_call[layer].with_hidden(trace.resid_pre(layer)[None])
            block(*args, **kwargs)  # warm-up
            for _ in range(repeats):
                blocks.append(timed(lambda b=block, a=args, k=kwargs: b(*a, **k), device, clock))
                trace._recomputed.clear()
                reruns.append(timed(lambda layer=layer: trace.mlp_out(layer), device, clock))
                ratios.append(reruns[-1] / blocks[-1])
    b, r = min(blocks), min(reruns)
    print(
        f"\n### Recomputing one layer's internals, {n_tokens} tokens ({clock} time, best; "
        "median ratio)\n"
    )
    print("| one block's forward (ms) | recompute its internals (ms) | ratio |\n|---:|---:|---:|")
    print(f"| {b * 1e3:.1f} | {r * 1e3:.1f} | {r / b:.2f}x ({statistics.median(ratios):.2f}x) |")
    ins.trace_internals = "auto"


def llama_estimates(n_tokens: int = 8192, size: int = 2) -> None:
    print(f"\n### Estimated trace memory at {n_tokens} tokens, bf16 (from the configs)\n")
    print(
        "| model | floor: stream (GB) | before: internals kept (GB) | ratio | after: recomputed, "
        "one block cached (GB) | ratio | logits (GB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, c in LLAMA3.items():
        stream_layer = memory.stream_layer_bytes(
            n_tokens=n_tokens, d_model=c["d_model"], element_size=size
        )
        internals = memory.internals_layer_bytes(
            n_tokens=n_tokens, d_model=c["d_model"], d_mlp=c["d_mlp"], element_size=size
        )
        floor = (c["n_layers"] + 1) * stream_layer
        before = floor + c["n_layers"] * internals
        # the cache holds recompute_cache_share of the stream, at least one block
        cache = max(internals, internals * int(0.25 * floor // internals))
        after = floor + cache
        logits = n_tokens * c["vocab"] * size
        gb = 1e9
        print(
            f"| {name} | {floor / gb:.2f} | {before / gb:.1f} | {before / floor:.2f}x | "
            f"{after / gb:.2f} | {after / floor:.2f}x | {logits / gb:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument(
        "--far",
        default=None,
        help="where blocks 15-29 go (default: disk on the CPU, cpu offload on a GPU)",
    )
    parser.add_argument("--memory-tokens", type=int, nargs="*", default=[1024, 8192])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--clock", choices=sorted(CLOCK), default=None)
    parser.add_argument("--threads", type=int, default=None, help="1 steadies CPU-time ratios")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    far = args.far or ("disk" if args.device == "cpu" else "cpu")
    print(f"threads: {torch.get_num_threads()}, device: {args.device}, dtype: {args.dtype}")
    clock = args.clock or ("cpu" if args.device == "cpu" else "wall")
    print(CAPTURE_HEADER.format(clock=clock))
    with tempfile.TemporaryDirectory() as offload:
        ins = lmscope.Inspector.from_pretrained(
            device_map=device_map(args.device, far), offload_folder=offload, dtype=dtype
        )
        label = f"blocks 15-29 on {far}" + (" (offloaded)" if far in ("cpu", "disk") else "")
        bench_capture(ins, label, args.tokens, args.repeats, args.device, clock)
        del ins
    offloaded = lmscope.Inspector.from_pretrained(device="cpu", dtype=dtype)
    cpu_offload(offloaded.model, execution_device=torch.device(args.device))
    bench_capture(
        offloaded,
        f"accelerate cpu_offload, run on {args.device}",
        args.tokens,
        args.repeats,
        args.device,
        clock,
    )
    del offloaded
    plain = lmscope.Inspector.from_pretrained(device=args.device, dtype=dtype)
    bench_recompute(plain, 1024, args.repeats, args.device, clock)
    if args.memory_tokens:
        bench_memory(plain, args.memory_tokens)
    llama_estimates()


if __name__ == "__main__":
    main()
