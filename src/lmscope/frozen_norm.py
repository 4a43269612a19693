"""A normalisation layer with its scale frozen at one input: an exact affine map.

LayerNorm and the RMSNorm variants all compute `gain * P(x) / sigma + bias`, where P centres x
(LayerNorm) or leaves it alone (RMSNorm) and sigma is the root mean square of P(x) plus eps.
Holding sigma at its value for the actual input makes the norm `v -> scale * P(v) + bias`,
linear in v, so each part of the residual stream gets its own exact share of what follows.
Which variant a module is, is read from its attributes and then checked numerically against
the module itself on that input; a norm that matches none is refused in words.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmscope import placement
from lmscope.errors import UnsupportedArchitectureError

_EPS_NAMES = ("eps", "variance_epsilon", "epsilon")


@dataclass(frozen=True)
class FrozenNorm:
    """`norm(x) == linear(x) + bias` for the rows it was frozen at (float32, on x's device)."""

    form: str  # e.g. "LayerNorm", "RMSNorm (1 + weight)": what the module was found to be
    center: bool
    scale: torch.Tensor  # [rows, d]: gain / sigma of each row
    bias: torch.Tensor  # [d], zeros where the norm has none

    def linear(self, v: torch.Tensor) -> torch.Tensor:
        """The norm's linear part applied to v ([rows, d] or broadcastable)."""
        v = v.float()
        if self.center:
            v = v - v.mean(-1, keepdim=True)
        return v * self.scale

    def pullback(self, w: torch.Tensor) -> torch.Tensor:
        """The vector u with `u . v == w . linear(v)` for every v: a readout moved before the norm."""
        u = w.float() * self.scale
        return u - u.mean(-1, keepdim=True) if self.center else u


def _tensor(module: nn.Module, name: str, width: int) -> torch.Tensor | None:
    value = placement.loaded_tensor(module, name)  # offloaded weights are read from the offload
    if isinstance(value, torch.Tensor) and value.shape == (width,):
        return value.detach().float()
    return None


@torch.no_grad()
def freeze(module: nn.Module, x: torch.Tensor) -> FrozenNorm:
    """Freeze `module` (a LayerNorm or RMSNorm of any family) at the rows of x ([rows, d])."""
    width = x.shape[-1]
    params = [p.dtype for p in module.parameters()]
    if params:
        x = x.to(params[0])  # a LayerNorm refuses an input of another dtype than its weight
    tol = 1e-4 if min(torch.finfo(d).bits for d in [x.dtype, *params]) >= 32 else 2e-2
    actual = module(x).float()
    # centring is read from behaviour: only a LayerNorm ignores a shift of every coordinate
    shifted = module(x + 4 * x.abs().amax(-1, keepdim=True)).float()
    center = _close(shifted, actual, tol)
    x = x.float()
    weight, bias = _tensor(module, "weight", width), _tensor(module, "bias", width)
    eps = next(
        (float(v) for n in _EPS_NAMES if isinstance(v := getattr(module, n, None), int | float)),
        0.0,
    )
    centered = x - x.mean(-1, keepdim=True) if center else x
    sigma = (centered.pow(2).mean(-1, keepdim=True) + eps).rsqrt()
    zeros = torch.zeros(width, device=x.device)
    gains: list[tuple[str, torch.Tensor | None]] = [("no weight", None)]
    if weight is not None:
        gains = [("weight", weight), ("1 + weight", 1 + weight), *gains]
    kind = "LayerNorm" if center else "RMSNorm"
    for gain_name, gain in gains:
        scale = sigma if gain is None else sigma * gain
        if _close(centered * scale + (zeros if bias is None else bias), actual, tol):
            return FrozenNorm(
                form=kind if gain_name == "weight" else f"{kind} ({gain_name})",
                center=center,
                scale=scale.expand_as(x).clone(),
                bias=zeros if bias is None else bias,
            )
    raise UnsupportedArchitectureError(
        f"{type(module).__name__} does not behave like a {kind} that lmscope can freeze (its "
        f"output is not gain * {'(x - mean)' if center else 'x'} / sigma + bias with weight, "
        "1 + weight or no gain); the parts before it cannot be attributed exactly"
    )


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    return torch.allclose(a, b, rtol=tol, atol=tol * b.abs().max().item())
