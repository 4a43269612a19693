"""Edits on a run: ablate or patch one activation while the model runs.

An edit names a *site* (one vocabulary for ablations, patches and sweeps):

    resid_pre    the residual stream entering block `layer`          [seq, d_model]
    attn_out     what the attention adds to the residual stream       [seq, d_model]
    mlp_out      what the MLP adds to the residual stream             [seq, d_model]
    head         each head's output, at the *input* of the attention
                 output projection (head-major)                       [seq, n_heads, head_dim]
    mlp_neuron   the MLP hidden activation (input of its down proj.)  [seq, d_mlp]

Heads are edited before the output projection mixes them: its output is already a sum over
every head, so zeroing part of it removes pieces of all heads at once.

`Ablate` and `Patch` are what a user writes; `plan()` checks them against a model and a
sequence length and turns them into `Edit`s (indices resolved, values copied, no reference to
a source trace kept); `applied()` installs an edit's hooks for the duration of a `with`. A
trace keeps its `Edit`s, so anything recomputed later from it can apply the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from lmscope import capture
from lmscope.errors import InputError, UnsupportedArchitectureError, check_index
from lmscope.options import keyword_options

if TYPE_CHECKING:
    from lmscope.architectures import ModelParts
    from lmscope.inspector import Inspector
    from lmscope.trace import Trace

SITES = ("resid_pre", "attn_out", "mlp_out", "head", "mlp_neuron")
MODES = ("zero", "mean")

Index = int | Sequence[int] | None


def _check_site(site: str) -> str:
    if site not in SITES:
        raise InputError(f"unknown site {site!r}; choose one of {', '.join(SITES)}")
    return site


def _as_indices(name: str, value: Index) -> tuple[int, ...] | None:
    """None, one int, or a sequence of ints -> None or a tuple (not yet range-checked)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InputError(f"{name} must be an integer or a list of integers, got {value!r}")
    items = tuple(value)
    if not items:
        raise InputError(f"{name} is an empty list; give at least one index or None for all")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise InputError(f"{name} must hold integers, got {item!r}")
    return items


def _describe(indices: tuple[int, ...] | None) -> str:
    return ",".join(str(i) for i in indices) if indices is not None else ""


class Ablate:
    """Replace an activation by zero or by its mean, e.g. `Ablate(5, head=1)`.

    `head` (site "head") or `neuron` (site "mlp_neuron") pick the units; `site=` alone ablates a
    whole site ("attn_out", "mlp_out", "resid_pre", or every head with site="head").
    `position` limits the edit to some positions (negatives count from the end).
    `mode="mean"` needs `mean=`: a tensor (the site's mean, e.g. from `mean_activation`, or
    only the chosen units' rows) or a list of texts to average over.
    """

    @keyword_options
    def __init__(
        self,
        layer: int,
        *,
        head: Index = None,
        neuron: Index = None,
        position: Index = None,
        mode: str = "zero",
        mean: torch.Tensor | Sequence[str] | None = None,
        site: str | None = None,
    ) -> None:
        if head is not None and neuron is not None:
            raise InputError("Ablate takes head= or neuron=, not both (they are different sites)")
        implied = "head" if head is not None else "mlp_neuron" if neuron is not None else None
        if site is None and implied is None:
            raise InputError(
                f"Ablate({layer}) needs head=, neuron= or site= (one of {', '.join(SITES)})"
            )
        if site is not None and implied is not None and site != implied:
            raise InputError("head= goes with site='head' and neuron= with site='mlp_neuron'")
        if mode not in MODES:
            raise InputError(f"unknown ablation mode {mode!r}; choose 'zero' or 'mean'")
        if mode == "mean" and mean is None:
            raise InputError(
                "mode='mean' needs mean=: a tensor (see lmscope.mean_activation) or a list of "
                "texts to average over"
            )
        if mode == "zero" and mean is not None:
            raise InputError("mean= is only used with mode='mean'")
        self.layer = layer
        self.site = _check_site(site or implied)
        self.units = _as_indices("head" if head is not None else "neuron", _first(head, neuron))
        self.position = _as_indices("position", position)
        self.mode = mode
        self.mean = mean

    def __repr__(self) -> str:
        unit = {"head": "head", "mlp_neuron": "neuron"}.get(self.site)
        parts = [str(self.layer)]
        if unit and self.units is not None:
            parts.append(f"{unit}={_describe(self.units)}")
        else:
            parts.append(f"site={self.site!r}")
        if self.position is not None:
            parts.append(f"position={_describe(self.position)}")
        if self.mode != "zero":
            parts.append(f"mode={self.mode!r}")
        return f"Ablate({', '.join(parts)})"


class Patch:
    """Write a source trace's activation into this run, e.g.
    `Patch(source=clean, site="resid_pre", layer=3, position=5)`.

    `head` / `neuron` pick units of the "head" / "mlp_neuron" sites. `position` None patches
    every position (the source must then have as many tokens); `source_position` says where
    in the source each patched position is read (default: the same position).
    """

    @keyword_options
    def __init__(
        self,
        *,
        source: Trace,
        site: str,
        layer: int,
        head: Index = None,
        neuron: Index = None,
        position: Index = None,
        source_position: Index = None,
    ) -> None:
        from lmscope.trace import Trace

        if not isinstance(source, Trace):
            raise InputError(f"Patch(source=...) takes a Trace, got {type(source).__name__}")
        self.site = _check_site(site)
        if head is not None and self.site != "head":
            raise InputError(f"head= only goes with site='head', not {site!r}")
        if neuron is not None and self.site != "mlp_neuron":
            raise InputError(f"neuron= only goes with site='mlp_neuron', not {site!r}")
        self.source = source
        self.layer = layer
        self.units = _as_indices("head" if head is not None else "neuron", _first(head, neuron))
        self.position = _as_indices("position", position)
        self.source_position = _as_indices("source_position", source_position)
        if self.source_position is not None:
            if self.position is None:
                raise InputError("source_position= needs position= (the positions it feeds)")
            if len(self.source_position) != len(self.position):
                raise InputError(
                    f"source_position has {len(self.source_position)} entries but position "
                    f"has {len(self.position)}: give one source position per patched position"
                )

    def __repr__(self) -> str:
        parts = [f"site={self.site!r}", f"layer={self.layer}"]
        unit = {"head": "head", "mlp_neuron": "neuron"}.get(self.site)
        if unit and self.units is not None:
            parts.append(f"{unit}={_describe(self.units)}")
        if self.position is not None:
            parts.append(f"position={_describe(self.position)}")
        if self.source_position is not None:
            parts.append(f"source_position={_describe(self.source_position)}")
        return f"Patch({', '.join(parts)}, source={_snippet(self.source.text)!r})"


def _first(*values: Index) -> Index:
    return next((v for v in values if v is not None), None)


def _snippet(text: str, width: int = 24) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


# -- resolved edits -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Edit:
    """One edit checked against a model and a sequence length, ready to hook.

    The site tensor is viewed as [batch, seq, n_units, width] (heads x head_dim, neurons x 1,
    or one d_model vector); `units` and `positions` index it (None: all), `value` is written
    there: None for zero, else broadcastable to [n_positions, n_units, width].
    """

    label: str
    site: str
    layer: int
    units: tuple[int, ...] | None
    positions: tuple[int, ...] | None
    value: torch.Tensor | None
    n_units: int
    width: int

    def __repr__(self) -> str:
        return self.label

    def write(self, x: torch.Tensor) -> torch.Tensor:
        """A copy of the site tensor `x` ([batch, seq, n_units * width]) with the edit applied."""
        out = x.clone(memory_format=torch.contiguous_format)
        view = out.view(*out.shape[:-1], self.n_units, self.width)
        seq = view.shape[1]
        pos = torch.arange(seq) if self.positions is None else torch.tensor(self.positions)
        units = torch.arange(self.n_units) if self.units is None else torch.tensor(self.units)
        pos, units = pos.to(x.device), units.to(x.device)
        value = 0.0 if self.value is None else self.value.to(device=x.device, dtype=x.dtype)
        view[:, pos[:, None], units[None, :]] = value
        return out

    def from_position(self, start: int) -> Edit | None:
        """This edit on positions start.. only, renumbered from 0 (None if it edits none of
        them): the same edit for a run of the prompt's last positions."""
        if start == 0:
            return self
        per_position = self.value is not None and self.value.dim() == 3  # else broadcast
        if self.positions is None:
            return replace(self, value=self.value[start:]) if per_position else self
        keep = [i for i, p in enumerate(self.positions) if p >= start]
        if not keep:
            return None
        return replace(
            self,
            positions=tuple(self.positions[i] - start for i in keep),
            value=self.value[keep] if per_position else self.value,
        )


def site_shape(parts: ModelParts, site: str, layer: int) -> tuple[int, int]:
    """(n_units, width) of a site: how its last dimension splits into heads, neurons or one vector."""
    if site == "head":
        return parts.n_heads, parts.attn_proj_weight(layer).shape[1] // parts.n_heads
    if site == "mlp_neuron":
        down = parts.mlp_downs[layer]
        weight = down.weight  # Linear [out, in]; GPT-2's Conv1D [in, out]
        return (weight.shape[0] if type(down).__name__ == "Conv1D" else weight.shape[1]), 1
    return 1, parts.unembed.weight.shape[1]  # one d_model vector


def _positions(given: tuple[int, ...] | None, seq_len: int, name: str = "position"):
    if given is None:
        return None
    return tuple(check_index(name, p, seq_len) for p in given)


def _units(site: str, given: tuple[int, ...] | None, n_units: int):
    if given is None or site not in ("head", "mlp_neuron"):
        return None
    name = "head" if site == "head" else "neuron"
    return tuple(check_index(name, u, n_units) for u in given)


def plan(edits: Sequence[Ablate | Patch | Edit], ins: Inspector, seq_len: int) -> tuple[Edit, ...]:
    """Check every edit against `ins`'s model and a run of `seq_len` tokens; resolve them."""
    if isinstance(edits, Ablate | Patch | Edit):
        edits = [edits]
    planned = []
    for edit in edits:
        if isinstance(edit, Edit):
            planned.append(_replan(edit, ins.parts, seq_len))
        elif isinstance(edit, Ablate):
            planned.append(_plan_ablation(edit, ins, seq_len))
        elif isinstance(edit, Patch):
            planned.append(_plan_patch(edit, ins.parts, seq_len))
        else:
            raise InputError(
                f"edits= takes lmscope.Ablate and lmscope.Patch objects, got {type(edit).__name__}"
            )
    return tuple(planned)


def _replan(edit: Edit, parts: ModelParts, seq_len: int) -> Edit:
    """An Edit from another trace: valid here only if its positions fit this run."""
    layer = check_index("layer", edit.layer, len(parts.blocks))
    if site_shape(parts, edit.site, layer) != (edit.n_units, edit.width):
        raise InputError(f"{edit.label} was planned for a model with other widths")
    _positions(edit.positions, seq_len)
    value = edit.value
    if (
        value is not None
        and edit.positions is None
        and value.dim() == 3
        and value.shape[0] != seq_len
    ):
        raise InputError(
            f"{edit.label} patches {value.shape[0]} positions but this run has {seq_len}"
        )
    return edit


def _plan_ablation(edit: Ablate, ins: Inspector, seq_len: int) -> Edit:
    parts = ins.parts
    layer = check_index("layer", edit.layer, len(parts.blocks))
    n_units, width = site_shape(parts, edit.site, layer)
    units = _units(edit.site, edit.units, n_units)
    positions = _positions(edit.position, seq_len)
    value = None
    if edit.mode == "mean":
        mean = edit.mean
        if not isinstance(mean, torch.Tensor):
            mean = mean_activation(ins, mean, site=edit.site, layer=layer)
        value = _mean_rows(edit, mean.detach(), n_units, width, units)
    return Edit(repr(edit), edit.site, layer, units, positions, value, n_units, width)


def _mean_rows(edit: Ablate, mean: torch.Tensor, n_units: int, width: int, units) -> torch.Tensor:
    """The mean as [n_chosen_units, width], from the whole site's mean or the chosen rows."""
    chosen = n_units if units is None else len(units)
    full = mean.reshape(-1)
    if full.numel() == n_units * width:
        rows = full.view(n_units, width)
        return rows if units is None else rows[list(units)]
    if full.numel() == chosen * width:
        return full.view(chosen, width)
    raise InputError(
        f"{edit!r}: mean has {full.numel()} values; expected the site's mean "
        f"({n_units * width} = {n_units} x {width}) or the chosen units' ({chosen * width})"
    )


def _plan_patch(edit: Patch, parts: ModelParts, seq_len: int) -> Edit:
    source = edit.source
    if source.released:
        raise InputError("the source trace was released; run the source text again")
    if source.parts.blocks[0] is not parts.blocks[0]:
        raise InputError(
            f"the source trace comes from another model ({source.model_name or 'unnamed'}); "
            "patch between runs of the same model"
        )
    layer = check_index("layer", edit.layer, len(parts.blocks))
    n_units, width = site_shape(parts, edit.site, layer)
    units = _units(edit.site, edit.units, n_units)
    positions = _positions(edit.position, seq_len)
    if positions is None and source.seq_len != seq_len:
        raise InputError(
            f"patching every position needs a source of the same length: the source has "
            f"{source.seq_len} tokens and this run {seq_len}. Pass position= and "
            "source_position= to say which positions correspond"
        )
    source_positions = edit.source_position if edit.source_position is not None else positions
    source_positions = _positions(source_positions, source.seq_len, "source_position")
    values = site_values(source, edit.site, layer).view(source.seq_len, n_units, width)
    if source_positions is not None:
        values = values[list(source_positions)]
    if units is not None:
        values = values[:, list(units)]
    return Edit(repr(edit), edit.site, layer, units, positions, values.clone(), n_units, width)


def for_generation(edits: Sequence[Edit]) -> tuple[Edit, ...]:
    """Edits planned on a prompt, made to stay on the prompt as generation extends it: a patch
    of every position becomes a patch of the prompt's positions."""
    out = []
    for edit in edits:
        if edit.positions is None and edit.value is not None and edit.value.dim() == 3:
            edit = replace(edit, positions=tuple(range(edit.value.shape[0])))
        out.append(edit)
    return tuple(out)


# -- reading a site from a trace ---------------------------------------------------------


def site_values(trace: Trace, site: str, layer: int) -> torch.Tensor:
    """[seq, n_units * width] a trace's tensor at a site (what an edit there would replace)."""
    _check_site(site)
    if site == "head":
        return head_outputs(trace, layer).flatten(1)
    if site == "mlp_neuron":
        return trace.mlp_activations(layer)
    return trace.stream(site, layer)


@torch.no_grad()
def head_outputs(trace: Trace, layer: int) -> torch.Tensor:
    """[seq, n_heads, head_dim] every head's output at the output projection's input.

    Recomputed by re-running `layer`'s attention on its recorded input, with the trace's own
    edits applied (an ablated head reads as ablated).
    """
    layer = trace._layer(layer)
    parts = trace.parts
    module = parts.attentions[layer]
    # the recorded call, where and in the dtype the module computes (a trace may store it
    # elsewhere); the module's own attention code, so the values are the run's own
    args, kwargs = capture.on_module(module, *trace.attention_call(layer))
    seen: dict[str, torch.Tensor] = {}

    def grab(_module, hook_args):
        seen["x"] = hook_args[0]

    own = [e for e in trace.edits if e.layer == layer]
    with capture.model_lock(parts.blocks[0]), applied(parts, own):
        handle = parts.attn_projs[layer].register_forward_pre_hook(grab)  # after the edits
        try:
            module(*args, **kwargs)
        finally:
            handle.remove()
    n_units, width = site_shape(parts, "head", layer)
    return seen["x"][0].reshape(-1, n_units, width)


@keyword_options
@torch.no_grad()
def mean_activation(ins: Inspector, texts: Sequence[str], *, site: str, layer: int) -> torch.Tensor:
    """A site's mean over every token of `texts`, for mean ablation: [n_heads, head_dim] for
    "head", [d_mlp] for "mlp_neuron", [d_model] otherwise."""
    _check_site(site)
    if isinstance(texts, str) or not texts:
        raise InputError("mean_activation takes a non-empty list of texts")
    total, count = None, 0
    for text in texts:
        trace = ins.run(text)
        values = site_values(trace, site, layer).float()
        total = values.sum(0) if total is None else total + values.sum(0)
        count += values.shape[0]
        trace.release()
    mean = (total / count).to(ins.parts.unembed.weight.dtype)
    if site == "head":
        return mean.view(site_shape(ins.parts, "head", layer))
    return mean


# -- hooks ---------------------------------------------------------------------------------


def hook_site(
    parts: ModelParts, site: str, layer: int, rewrite: Callable[[torch.Tensor], torch.Tensor]
) -> torch.utils.hooks.RemovableHandle:
    """Install a hook that replaces the tensor at (site, layer) by `rewrite(tensor)`.

    The tensor is [batch, seq, width] (heads side by side for "head"). The caller removes the
    handle; `applied()` and the sweeps do so in a `finally`.
    """
    if site == "resid_pre" and layer == 0 and parts.stream_entry is not None:
        # RWKV: the stream starts at block 0's pre_ln, so resid_pre 0 is that norm's output
        return parts.stream_entry.register_forward_hook(lambda _m, _a, out: rewrite(out))
    if site == "resid_pre":

        def block_input(_module, args, kwargs):
            if args:
                return (rewrite(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": rewrite(kwargs["hidden_states"])}

        return parts.blocks[layer].register_forward_pre_hook(block_input, with_kwargs=True)
    if site in ("attn_out", "mlp_out"):
        parts.check_view("decomposition")  # which module's output is added, in words
        module = (parts.attn_outs if site == "attn_out" else parts.mlp_outs)[layer]
        if isinstance(module, tuple):
            raise UnsupportedArchitectureError(
                f"layer {layer}'s {site} is the sum of two modules' outputs "
                f"({' + '.join(type(m).__name__ for m in module)}): it has no one output to "
                "replace (edit the residual stream or heads instead)"
            )
        if module is None:
            raise UnsupportedArchitectureError(
                f"layer {layer} adds no {site.split('_')[0]} output lmscope can edit"
            )
        scale = parts.residual_scale  # the site is what is added: the module's output times it

        def added(out: torch.Tensor) -> torch.Tensor:
            return rewrite(out) if scale == 1.0 else rewrite(out * scale) / scale

        def output(_module, _args, out):
            if isinstance(out, tuple | list):
                return (added(out[0]), *out[1:])
            return added(out)

        return module.register_forward_hook(output)
    module = (parts.attn_projs if site == "head" else parts.mlp_downs)[layer]
    if module is None:
        kind = ("attention", "attn_proj") if site == "head" else ("mlp", "mlp_down")
        why = parts.missing.get((kind[0], layer)) or parts.missing.get((kind[1], layer))
        raise UnsupportedArchitectureError(why or f"layer {layer} has no {site} to edit")

    def projection_input(_module, args):
        return (rewrite(args[0]), *args[1:])

    return module.register_forward_pre_hook(projection_input)


@contextmanager
def applied(parts: ModelParts, edits: Sequence[Edit]) -> Iterator[None]:
    """The edits' hooks for the duration of the `with`, removed even if the body raises.

    Holds the model's lock (runs must not overlap while hooks are installed). Enter it before
    `capture.recording` so the recording sees the edited tensors.
    """
    if not edits:
        yield
        return
    handles = []
    with capture.model_lock(parts.blocks[0]):
        try:
            for edit in edits:
                handles.append(hook_site(parts, edit.site, edit.layer, edit.write))
            yield
        finally:
            for handle in handles:
                handle.remove()
