"""Where a model's modules run, whether it was placed with `.to()` or dispatched by accelerate.

A model loaded with `device_map` (or passed through `accelerate.cpu_offload`) keeps offloaded
weights on the meta device and moves them in per forward; its modules carry `_hf_hook`s that
name the device they execute on. Those hooks, not the parameters, say where a block runs.
lmscope never moves such a model: it only reads where things already are.
"""

from __future__ import annotations

from itertools import chain

import torch
from torch import nn

from lmscope.errors import UnsupportedArchitectureError


def _hooks(module: nn.Module) -> list:
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", [hook]))  # a SequentialHook holds several


def _as_device(device) -> torch.device:
    if isinstance(device, int):  # accelerate names accelerators by index
        return torch.device("cuda", device)
    return torch.device(device)


def is_dispatched(model: nn.Module) -> bool:
    """True for a model accelerate placed (device map, CPU or disk offload)."""
    return getattr(model, "hf_device_map", None) is not None or any(
        _hooks(module) for module in model.modules()
    )


def execution_device(module: nn.Module) -> torch.device:
    """The device `module`'s forward computes on: its (or its first hooked descendant's)
    accelerate execution device, else where its first real parameter or buffer lives."""
    for sub in module.modules():
        for hook in _hooks(sub):
            device = getattr(hook, "execution_device", None)
            if device is not None:
                return _as_device(device)
    for tensor in chain(module.parameters(), module.buffers()):
        if tensor.device.type != "meta":
            return tensor.device
    return torch.device("cpu")


def is_offloaded(module: nn.Module) -> bool:
    """True when some of `module`'s weights live on disk or the CPU and are brought in per forward."""
    return any(p.device.type == "meta" for p in module.parameters())


def weight_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def describe(devices: list[torch.device], device_map: dict | None) -> str:
    """'cpu', or 'cpu + disk' when a device map offloads blocks to disk, for reprs and messages."""
    names = list(dict.fromkeys(str(d) for d in devices))
    if device_map and "disk" in {str(v) for v in device_map.values()}:
        names.append("disk")
    return " + ".join(names)


def loaded_tensor(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    """`module.<name>` to read directly: as it is, or, when accelerate offloaded it (it is on the
    meta device), a copy from the hook's weights on the module's execution device. The module
    itself is left as it is (the next forward brings its weights in as usual)."""
    tensor = getattr(module, name, None)
    if not isinstance(tensor, torch.Tensor) or tensor.device.type != "meta":
        return tensor
    for hook in _hooks(module):
        weights = getattr(hook, "weights_map", None)
        if weights is not None and name in weights:
            device = hook.execution_device
            return weights[name].to(_as_device(device) if device is not None else "cpu")
    raise UnsupportedArchitectureError(
        f"{type(module).__name__}.{name} is offloaded where lmscope cannot read it (no "
        "accelerate hook on that module holds it)"
    )
