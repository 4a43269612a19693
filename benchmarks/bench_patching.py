"""Residual-stream patching sweep, layers x positions on the default model: `lmscope.patching`
(batched patched copies, each joining at its own layer and run from its own position with the
corrupted run's keys and values for the positions before) against the same patches run one
forward at a time with hand-written hooks.

The two are interleaved group by group (a few layers each) so that load from other processes
on a shared machine falls on both alike; the ratio is of the summed times. Both give the same
metric for every cell (checked, and the largest difference printed).

    .venv/bin/python benchmarks/bench_patching.py            # 30 layers x 20 positions
    .venv/bin/python benchmarks/bench_patching.py --groups 1 # one whole sweep each
    .venv/bin/python benchmarks/bench_patching.py --from-difference  # no cell left unchanged

Cells whose patch writes the values the corrupted run already has (before the differing token,
and at layer 0 everywhere but there) are not rerun by lmscope; `--from-difference` sweeps only
the positions from the differing token on, so that (but for layer 0) every cell is rerun.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import lmscope
from lmscope.sweeps import metric_of

CLEAN = (
    "Last summer my sister and I flew to France for a whole week and finally visited its capital,"
)
CORRUPTED = CLEAN.replace("France", "Germany")


def hand_written(ins, clean_hidden, corrupted_ids, cells, answer, foil, logits_to_keep):
    """One forward per cell: a pre-hook on block `layer` writes the clean residual at `pos`."""
    out = []
    for layer, pos in cells:

        def patch(_module, args, kwargs, layer=layer, pos=pos):
            hidden = (args[0] if args else kwargs["hidden_states"]).clone()
            hidden[:, pos] = clean_hidden[layer][0, pos]
            return (
                ((hidden, *args[1:]), kwargs)
                if args
                else (args, {**kwargs, "hidden_states": hidden})
            )

        handle = ins.parts.blocks[layer].register_forward_pre_hook(patch, with_kwargs=True)
        try:
            with torch.no_grad():
                extra = {"logits_to_keep": 1} if logits_to_keep else {}
                logits = ins.model(input_ids=corrupted_ids[None], use_cache=False, **extra).logits
        finally:
            handle.remove()
        out.append(float(metric_of(logits[0, -1], answer, foil)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=5, help="interleaved layer groups")
    parser.add_argument(
        "--logits-to-keep",
        action="store_true",
        help="give the hand-written loop logits_to_keep=1 (only the last position's logits)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--layer-step", type=int, default=1, help="every n-th layer only (a shorter run)"
    )
    parser.add_argument(
        "--from-difference",
        action="store_true",
        help="sweep only the positions from the first differing token on",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ins = lmscope.Inspector.from_pretrained(device="cpu")
    clean_ids, corrupted_ids = ins.encode(CLEAN), ins.encode(CORRUPTED)
    assert len(clean_ids) == len(corrupted_ids), "prompts must have the same length"
    first = next(i for i, (a, b) in enumerate(zip(clean_ids, corrupted_ids, strict=True)) if a != b)
    positions = list(range(first if args.from_difference else 0, len(corrupted_ids)))
    n_pos = len(positions)
    with torch.no_grad():
        clean_hidden = ins.model(input_ids=clean_ids[None], output_hidden_states=True).hidden_states
    answer, foil = (
        ins.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" Paris", " Berlin")
    )
    layers = list(range(0, ins.n_layers, args.layer_step))
    groups = [layers[i :: args.groups] for i in range(args.groups)]  # each group spans the depth
    lm_time = hand_time = 0.0
    worst = 0.0
    unchanged = 0
    for group in groups:
        start = time.perf_counter()
        result = lmscope.patching(
            ins,
            CLEAN,
            CORRUPTED,
            answer=answer,
            foil=foil,
            layers=group,
            positions=positions,
            progress=False,
        )
        lm_time += time.perf_counter() - start
        unchanged += result.n_unchanged
        cells = [(layer, pos) for layer in group for pos in positions]
        start = time.perf_counter()
        hand = hand_written(
            ins, clean_hidden, corrupted_ids, cells, answer, foil, args.logits_to_keep
        )
        hand_time += time.perf_counter() - start
        ours = result.metric.flatten().tolist()
        worst = max(worst, max(abs(a - b) for a, b in zip(ours, hand, strict=True)))
    n_cells = len(layers) * n_pos
    print(
        f"{len(layers)} layers x {n_pos} positions = {n_cells} patched runs, {args.groups} "
        f"groups, {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"lmscope.patching (batched, {result.route}{', ' + result.route_note if result.route_note else ''}): "
        f"{lm_time:.1f} s ({1000 * lm_time / n_cells:.1f} ms/cell); {unchanged} cells write the "
        f"corrupted run's own values and were not rerun; positions {positions[0]}..{positions[-1]}"
    )
    print(
        f"one forward per cell{' (logits_to_keep=1)' if args.logits_to_keep else ''}: "
        f"{hand_time:.1f} s ({1000 * hand_time / n_cells:.1f} ms/cell)"
    )
    print(f"speed-up: {hand_time / lm_time:.1f}x; largest metric difference {worst:.2e}")


if __name__ == "__main__":
    main()
