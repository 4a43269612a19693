"""Estimate what a run or a view will hold, and refuse clearly when it exceeds the budget.

The budget of each device is `LMSCOPE_MEMORY_BUDGET` (bytes, or a size such as "6GB") when
set, otherwise 80% of what that device has free right now. An estimate is deliberately simple
(the tensors a trace keeps plus the largest transient), so the message can explain it; for a
model spread over several devices it is made per device, and a refusal names each one.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping

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


def budget_bytes(device: torch.device, override=None) -> int:
    """`override` is one size for every device, or a mapping from device to size."""
    if isinstance(override, Mapping):
        sizes = {
            torch.device(f"cuda:{k}" if isinstance(k, int) else k): v for k, v in override.items()
        }
        override = sizes.get(device)
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


#: a run keeps every block's internals while they take at most this share of a device's budget
KEEP_INTERNALS_SHARE = 0.1


def stream_layer_bytes(*, n_tokens: int, d_model: int, element_size: int) -> int:
    """One block's stored input: the residual stream's own bytes per layer (the floor)."""
    return n_tokens * d_model * element_size


def internals_layer_bytes(*, n_tokens: int, d_model: int, d_mlp: int, element_size: int) -> int:
    """One block's internals: attention input and output, MLP output, MLP hidden activations."""
    return n_tokens * (3 * d_model + d_mlp) * element_size


def transient_bytes(*, n_tokens: int, n_heads: int, d_mlp: int, element_size: int) -> int:
    """The largest temporaries of one block's forward (one layer's scores, the MLP's hidden)."""
    return (3 * n_heads * n_tokens * n_tokens + 3 * n_tokens * d_mlp) * element_size


def estimate_patched_copy_bytes(
    *, n_tokens: int, d_model: int, d_mlp: int, n_heads: int, vocab: int, element_size: int
) -> int:
    """One copy in a batched patching sweep: nothing is kept across blocks but the hidden state,
    so one block's transients (attention scores, MLP hidden) plus the last position's logits."""
    transient = 3 * n_heads * n_tokens * n_tokens + n_tokens * (8 * d_model + 3 * d_mlp)
    return (transient + vocab) * element_size


def estimate_pattern_bytes(*, n_tokens: int, n_heads: int, element_size: int) -> int:
    """One layer's pattern recomputation: scores, probabilities and the eager intermediates."""
    return 4 * n_heads * n_tokens * n_tokens * element_size


def _tensors(obj, seen: set[int]) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif id(obj) in seen:
        return
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        seen.add(id(obj))
        for f in dataclasses.fields(obj):
            yield from _tensors(getattr(obj, f.name), seen)
    elif isinstance(obj, Mapping):
        seen.add(id(obj))
        for value in obj.values():
            yield from _tensors(value, seen)
    elif isinstance(obj, list | tuple):
        seen.add(id(obj))
        for item in obj:
            yield from _tensors(item, seen)


def tensor_bytes(obj) -> int:
    """Bytes of every tensor reachable through lists, tuples, dicts and dataclasses, each
    storage counted once (views of one tensor, or one mask shared by every layer, add nothing)."""
    storages: dict[tuple[str, int], int] = {}
    for tensor in _tensors(obj, set()):
        if tensor.device.type == "meta":
            continue
        storage = tensor.untyped_storage()
        storages[(str(tensor.device), storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


def empty_caches() -> None:
    """Give the allocator's cached blocks back after an out-of-memory error, on every GPU."""
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            with torch.cuda.device(index):
                torch.cuda.empty_cache()


def check_devices(
    needs: Mapping[torch.device, int], budgets: Mapping[torch.device, int], what: str, remedy: str
) -> None:
    """`check` on every device; the refusal names each device's share and budget."""
    over = [d for d in needs if needs[d] > budgets[d]]
    if not over:
        return
    if len(needs) == 1:
        check(needs[over[0]], budgets[over[0]], what, remedy)
    shares = "; ".join(f"{d}: {human(needs[d])} of {human(budgets[d])}" for d in needs)
    worst = over[0]
    raise MemoryBudgetError(
        f"{what} needs about {human(needs[worst])} on {worst} but the memory budget there is "
        f"{human(budgets[worst])} (per device, estimate of budget: {shares}). {remedy} (Each "
        "device's budget is 80% of its free memory unless LMSCOPE_MEMORY_BUDGET or "
        "Inspector(memory_budget=...) sets it.)"
    )


def check(needed: int, budget: int, what: str, remedy: str) -> None:
    if needed > budget:
        raise MemoryBudgetError(
            f"{what} needs about {human(needed)} but the memory budget is {human(budget)}. "
            f"{remedy} (The budget is 80% of free memory unless LMSCOPE_MEMORY_BUDGET or "
            "Inspector(memory_budget=...) sets it.)"
        )
