"""Direct logit attribution at one position vs its floor, on the default model.

`trace.attribution(target, foil=...)` gives every head of every layer and every MLP. It has to
recover the heads' outputs (a trace keeps the attention output, where heads are already mixed),
so it re-runs each layer's attention for one query row. The floor is what is left once the
stacked per-head outputs are already at hand: one matmul of [layers * heads + layers, d_model]
with the answer's direction. For scale: a plain forward of the prompt, and the cache route
(a forward hooking every output projection's input, then stacking each head's output through
its columns of the projection at that position, then the same matmul).

    .venv/bin/python benchmarks/bench_attribution.py --lengths 128 1024 --repeats 5
"""

from __future__ import annotations

import argparse

import torch

import lmscope
from bench_lens import timed  # the same interleaved best-of timing

TEXT = (
    "The old lighthouse keeper walked along the shore every evening, watching the waves roll in "
    "from the grey sea while gulls circled above the harbour and the fishing boats came home. "
)


def stacked_outputs(trace, z_rows: list[torch.Tensor]) -> torch.Tensor:
    """[layers * heads + layers, d_model]: each head's output at the position through its columns
    of the output projection, then each MLP's output (what the floor multiplies)."""
    heads = []
    for layer, z in enumerate(z_rows):
        weight = trace.parts.attn_proj_weight(layer).unflatten(1, (trace.n_heads, -1))
        heads.append(torch.einsum("hd,mhd->hm", z.unflatten(-1, (trace.n_heads, -1)), weight))
    mlps = torch.stack([trace.mlp_out(layer)[-1] for layer in range(trace.n_layers)])
    return torch.cat([*heads, mlps])


def measure(ins, n: int, target: int, foil: int, repeats: int) -> dict:
    ids = ins.tokenizer(TEXT * (n // 30 + 2))["input_ids"][:n]
    batch = torch.tensor([ids])
    trace = ins.run(ids)
    result = trace.attribution(target, foil=foil)
    direction = torch.randn(trace.d_model)  # the floor's cost does not depend on its values
    seen: list = [None] * trace.n_layers

    def hooked_forward():
        hooks = [
            proj.register_forward_pre_hook(
                lambda _m, a, layer=layer: seen.__setitem__(layer, a[0][0, -1])
            )
            for layer, proj in enumerate(ins.parts.attn_projs)
        ]
        try:
            ins.model(input_ids=batch, use_cache=False)
        finally:
            for hook in hooks:
                hook.remove()

    with torch.no_grad():
        hooked_forward()
        stacked = stacked_outputs(trace, seen)
        best = timed(
            {
                "attribution": lambda: trace.attribution(target, foil=foil),
                "floor": lambda: stacked @ direction,
                "forward": lambda: ins.model(input_ids=batch, use_cache=False),
                "cache route": lambda: (hooked_forward(), stacked_outputs(trace, seen) @ direction),
            },
            repeats,
        )
    return dict(
        best, n=n, parts=stacked.shape[0], unexplained=result.unexplained, total=result.total
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    ins = lmscope.Inspector.from_pretrained(device="cpu")
    target = ins.tokenizer(" sea", add_special_tokens=False)["input_ids"][0]
    foil = ins.tokenizer(" shore", add_special_tokens=False)["input_ids"][0]
    print(f"torch threads: {torch.get_num_threads()}")
    rows = [measure(ins, n, target, foil, args.repeats) for n in args.lengths]
    print(
        "| tokens | parts | attribution (s) | floor matmul (s) | ratio | plain forward (s) "
        "| attribution / forward | cache route (s) | unexplained |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['n']} | {row['parts']} | {row['attribution']:.4f} | {row['floor']:.2e} | "
            f"{row['attribution'] / row['floor']:.0f}x | {row['forward']:.3f} | "
            f"{row['attribution'] / row['forward']:.2f}x | {row['cache route']:.3f} | "
            f"{row['unexplained']:.1e} of {row['total']:.2f} |"
        )


if __name__ == "__main__":
    main()
