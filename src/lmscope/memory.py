"""Estimate what a run or a view will hold, and refuse clearly when it exceeds the budget.

The budget is `LMSCOPE_MEMORY_BUDGET` (bytes, or a size such as "6GB") when set, otherwise
80% of what the device has free right now. An estimate is deliberately simple (the tensors a
trace keeps plus the largest transient), so the message can explain it.
"""

from __future__ import annotations

import os
import re

import torch

from lmscope.errors import MemoryBudgetError

_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str | int | float) -> int:
    if isinstance(text, int | float):
        return int(text)
    match = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"cannot read {text!r} as a size; write e.g. 6GB or 512MiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def budget_bytes(device: torch.device, override: int | str | None = None) -> int:
    if override is not None:
        return parse_size(override)
    if os.environ.get("LMSCOPE_MEMORY_BUDGET"):
        return parse_size(os.environ["LMSCOPE_MEMORY_BUDGET"])
    return int(free_bytes(device) * 0.8)


def estimate_run_bytes(
    *,
    n_tokens: int,
    n_layers: int,
    d_model: int,
    d_mlp: int,
    n_heads: int,
    vocab: int,
    element_size: int,
) -> int:
    """Tensors a trace keeps, plus the largest transient of the forward (one layer's scores)."""
    per_layer = n_tokens * (4 * d_model + d_mlp)  # resid_pre, attn in/out, mlp_out; mlp hidden
    kept = n_layers * per_layer + n_tokens * vocab  # + logits
    transient = 3 * n_heads * n_tokens * n_tokens + 3 * n_tokens * d_mlp
    return (kept + transient) * element_size


def estimate_pattern_bytes(*, n_tokens: int, n_heads: int, element_size: int) -> int:
    """One layer's pattern recomputation: scores, probabilities and the eager intermediates."""
    return 4 * n_heads * n_tokens * n_tokens * element_size


def check(needed: int, budget: int, what: str, remedy: str) -> None:
    if needed > budget:
        raise MemoryBudgetError(
            f"{what} needs about {human(needed)} but the memory budget is {human(budget)}. "
            f"{remedy} (The budget is 80% of free memory unless LMSCOPE_MEMORY_BUDGET or "
            "Inspector(memory_budget=...) sets it.)"
        )
