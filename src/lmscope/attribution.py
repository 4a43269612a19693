"""Direct logit attribution: how much of one logit each head, MLP and the embeddings wrote.

The last block's output at a position is the embeddings plus every attention and MLP output.
With the final norm's scale frozen at its actual value there (`frozen_norm`), the norm is affine,
so the target's logit (or logit(target) - logit(foil)) is a sum of dot products, one per part,
plus a constant `rest` (the norm's bias and the unembedding bias). Heads are read where they are
still separate, at the input of the attention's output projection: head h's share is its slice
times its columns of the projection, the projection's bias goes to `attn_bias`. Where the
attention output is normalised once more before the add (Gemma 2), that norm is frozen too.

One position's heads cost one query row of attention per layer (`capture.probe(rows=...)`), not
a forward per head. Its attention and MLP outputs are the run's own where the trace kept them;
where it recomputes them, each block is run on that position alone against its layer's keys
and values (`position_run`: O(seq) per layer, not a rerun over the prompt), and a block where
that does not apply or is not exact is rerun whole (`AttributionResult.route` says which and
why). `StagedAttribution` gives each block's share from the stored stream at once and splits
the blocks into heads and MLP when asked (a long prompt's view does it while idle).

Every structural claim is checked on the run itself (the residual stream is the sum of its
parts, each block added its attention and MLP outputs, the heads rebuild the attention output,
each norm is what it is taken for, the logits are the unembedding, soft-capped or scaled as
found); a model where one fails is refused in words rather than given numbers that do not add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from lmscope import architectures, capture, frozen_norm, placement, position_run
from lmscope.errors import InputError, UnsupportedArchitectureError, check_index
from lmscope.lens import resolve_targets
from lmscope.options import keyword_options
from lmscope.tokens import id_strings

if TYPE_CHECKING:
    from lmscope.trace import Trace


@dataclass
class AttributionResult:
    """Shares of `total` at `position`, all on the CPU (float32 tensors, floats for scalars).

    `embed + heads.sum() + attn_bias.sum() + mlps.sum() + rest == total` up to float rounding
    (`unexplained` is what is left). `total` is the model's own logit of `target` (minus that of
    `foil`); with a final soft-cap it is the logit *before* the cap (`attributed` says so, and
    `model_value` is the capped one the model outputs).
    """

    target: int
    foil: int | None
    position: int
    embed: float
    heads: torch.Tensor  # [n_layers, n_heads]
    attn_bias: torch.Tensor  # [n_layers]: output projection bias (and a post-norm's bias)
    mlps: torch.Tensor  # [n_layers]
    rest: float  # final norm bias + unembedding bias, through the unembedding
    total: float
    attributed: str  # what `total` is, in words
    model_value: float  # what the model outputs (after any soft-cap)
    target_token: str = ""
    foil_token: str = ""
    final_norm: str = ""  # the form the final norm was found to have
    #: where the attention and MLP outputs at `position` came from, in words (`_sublayer_rows`)
    route: str = ""
    #: [n_layers] each block's share read from the stored stream (its output minus its input):
    #: known at once, before the block is split into heads and MLP
    blocks: torch.Tensor | None = None
    #: layers not split yet (`StagedAttribution`): their heads, bias and MLP are NaN
    pending: tuple[int, ...] = ()
    # per-layer readout of each head's output ([n_layers, n_heads, head_dim]), kept for sources
    _head_readout: torch.Tensor | None = field(default=None, repr=False)
    # per layer, every head's sources ([n_heads, seq]) from the split's own probe, or None
    _sources: list[torch.Tensor | None] | None = field(default=None, repr=False)
    _trace: Trace | None = field(default=None, repr=False, compare=False)

    @property
    def n_layers(self) -> int:
        return self.heads.shape[0]

    @property
    def attn(self) -> torch.Tensor:
        """[n_layers] each attention sub-layer's share (its heads plus its bias)."""
        return self.heads.sum(1) + self.attn_bias

    @property
    def layers(self) -> torch.Tensor:
        """[n_layers] each block's share (attention + MLP; a pending block's from the stream)."""
        split = self.attn + self.mlps
        if self.pending and self.blocks is not None:
            split[list(self.pending)] = self.blocks[list(self.pending)]
        return split

    @property
    def complete(self) -> bool:
        """True once every layer is split into its heads, bias and MLP."""
        return not self.pending

    @property
    def resid(self) -> torch.Tensor:
        """[n_layers] the share of the residual stream after each block (embeddings, `rest` and
        every block up to it), with the final scale frozen: the last entry is `total`."""
        return self.embed + self.rest + torch.cumsum(self.layers.double(), 0).float()

    @property
    def unexplained(self) -> float:
        """total minus the sum of the parts (a pending block counts as its share from the
        stream): float rounding only."""
        return self.total - float(self.embed + self.rest + self.layers.double().sum())

    def top(self, n: int = 5) -> list[tuple[str, float]]:
        """The n parts with the largest |share|, as ("L3H2" / "MLP3" / "embed" ..., share)."""
        named = [("embed", self.embed), ("rest", self.rest)]
        named += [
            (f"L{layer}H{head}", float(self.heads[layer, head]))
            for layer in range(self.n_layers)
            for head in range(self.heads.shape[1])
        ]
        named += [(f"MLP{layer}", float(v)) for layer, v in enumerate(self.mlps)]
        named += [(f"L{layer} bias", float(v)) for layer, v in enumerate(self.attn_bias) if v]
        named = [(name, v) for name, v in named if v == v]  # a pending layer's NaN: not yet known
        return sorted(named, key=lambda kv: -abs(kv[1]))[:n]

    def sources(self, layer: int, head: int) -> torch.Tensor:
        """[seq] head (layer, head)'s share split by key position: each key's attention weight
        times its value through the head's slice of the output projection. Sums to
        `heads[layer, head]`; keys after `position` (and outside a sliding window) are 0."""
        if self._trace is None or self._head_readout is None:
            raise InputError("this attribution has no trace to read the head's values from")
        layer = check_index("layer", layer, self.n_layers)
        head = check_index("head", head, self.heads.shape[1])
        if layer in self.pending:
            raise InputError(f"layer {layer} is not split into its heads yet in this attribution")
        trace = self._trace
        for edit in trace.edits:
            if (edit.site, edit.layer) == ("head", layer) and (
                (edit.units is None or head in edit.units)
                and (edit.positions is None or self.position in edit.positions)
            ):
                raise InputError(
                    f"layer {layer} head {head} was edited at position {self.position} in this "
                    f"run ({edit.label}): its output there is the edit's value, not a mix of "
                    "source positions"
                )
        if self._sources is not None and self._sources[layer] is not None:
            return self._sources[layer][head].clone()  # the split's probe had every head's
        sink = capture.probe(
            trace.parts.attentions[layer],
            trace.attention_call(layer),
            heads=[head],
            rows=[self.position],
        )
        weights = sink["weights"][0, 0, 0].float()  # [seq]
        value = sink["value"][0, 0].float()  # [seq, head_dim], this head's key-value head
        readout = self._head_readout[layer, head].to(value.device)
        return (weights * (value @ readout)).cpu()


def _token(trace: Trace, token) -> int:
    if isinstance(token, list | tuple):
        raise InputError(f"attribute one token at a time, got {len(token)}: {token!r}")
    return resolve_targets(token, trace.tokenizer, trace.logits.shape[-1])[0]


def _check(
    got: torch.Tensor, want: torch.Tensor, tol: float, what: str, trace: Trace | None = None
) -> None:
    got, want = got.float(), want.float().to(got.device)
    if (got - want).norm() > tol * max(want.norm().item(), 1e-6):
        edited = f"; this run was {trace.edits_text}" if trace is not None and trace.edits else ""
        raise UnsupportedArchitectureError(
            f"{what}, so its parts cannot be attributed exactly (relative difference "
            f"{((got - want).norm() / want.norm().clamp_min(1e-12)).item():.2g}{edited})"
        )


def _logit_map(trace: Trace, pre: torch.Tensor, model: torch.Tensor, tol: float):
    """(scale, softcap): how the model turns its unembedding `pre` into its logits `model`."""
    cap = trace.parts.final_logit_softcap
    expected = torch.tanh(pre / cap) * cap if cap else pre
    if torch.allclose(expected, model, rtol=tol, atol=tol * model.abs().max().item()):
        return 1.0, cap
    if not cap:  # one constant logit scale (e.g. Cohere's logit_scale, Granite's 1/logits_scaling)
        scale = float((pre * model).sum() / (pre * pre).sum())
        if torch.allclose(pre * scale, model, rtol=tol, atol=tol * model.abs().max().item()):
            return scale, None
    raise UnsupportedArchitectureError(
        "the model's logits are not its final norm and unembedding of the last block's output "
        "(soft-capped or times one scale): lmscope cannot say what its parts contribute"
    )


@keyword_options
def attribution(trace: Trace, target, *, position: int = -1, foil=None) -> AttributionResult:
    """Direct logit attribution of `target` (id or string) at `position`, against `foil`.

    Every head of every layer, every MLP, the embeddings and the constant rest; see
    AttributionResult. Costs one attention query row per layer (and, when the trace recomputes
    its internals, each block run on that one position).
    """
    staged = StagedAttribution(trace, target, position=position, foil=foil)
    staged.split(range(trace.n_layers))
    return staged.result()


class StagedAttribution:
    """One attribution built in steps: what the stored stream gives at once (the final norm
    frozen, the logit map, the embeddings', the rest's and each block's share), then each
    layer's heads, bias and MLP when `split` is asked for it; `result()` at any point.

    Every check runs as the parts come: the final norm's form and the logit map at once; each
    split layer's heads rebuilding its attention output and its attention plus MLP output being
    what the block added to the stored stream; the embeddings plus every part being the last
    block's output once every layer is split."""

    @keyword_options
    @torch.no_grad()
    def __init__(self, trace: Trace, target, *, position: int = -1, foil=None) -> None:
        parts = trace.parts
        self.trace = trace
        self.pos = pos = check_index("position", position, trace.seq_len)
        self.target = _token(trace, target)
        self.foil = None if foil is None else _token(trace, foil)
        if self.foil == self.target:
            raise InputError(
                f"target and foil are the same token ({self.target}): nothing to compare"
            )
        self.tol = tol = position_run.tolerance(trace.dtype)
        n_layers, n_heads = trace.n_layers, trace.n_heads
        with capture.model_lock(parts.blocks[0]):  # modules called here carry a run's hooks
            parts.check_view("decomposition")
            self.final_resid = final_resid = trace.resid_post(n_layers - 1)[pos]
            final = frozen_norm.freeze(parts.final_norm, final_resid[None])
            unembed = parts.unembed
            self.pre = pre = unembed(parts.final_norm(final_resid[None]))[0].float()
            self.model_row = trace.logits[pos].float().to(pre.device)
            self.scale, self.cap = scale, _ = _logit_map(trace, pre, self.model_row, tol)
            w_unembed = placement.loaded_tensor(unembed).detach()  # from its offload, if any
            readout = w_unembed[self.target].float()
            if self.foil is not None:
                readout = readout - w_unembed[self.foil].float()
            readout = readout.to(final.scale.device) * scale
            bias = placement.loaded_tensor(unembed, "bias")
            b_diff = 0.0
            if bias is not None:
                b_diff = float(
                    bias[self.target] - (bias[self.foil] if self.foil is not None else 0)
                )
            self.direction = final.pullback(readout)[0]  # [d_model]: share(v) = direction . v
            self.rest = float(readout @ final.bias.to(readout.device)) + scale * b_diff
            self.final_form = final.form
            embed_row = trace.embeddings[pos].float()
            self.embed = self._share(embed_row)
            self.blocks = torch.tensor(
                [self._share(_stream_step(trace, layer, pos)) for layer in range(n_layers)]
            )
        self._summed = embed_row.clone()  # the embeddings plus every split layer's parts
        self.heads = torch.full((n_layers, n_heads), float("nan"))
        self.attn_bias = torch.full((n_layers,), float("nan"))
        self.mlps = torch.full((n_layers,), float("nan"))
        self._readouts: list[torch.Tensor | None] = [None] * n_layers
        self._routes: dict[int, str] = {}  # layer -> where its sub-layer outputs came from
        self._sources: list[torch.Tensor | None] = [None] * n_layers  # `_source_table`s
        self._position_run = None if trace.internals_kept else position_run.PositionRun(trace, pos)

    def _share(self, v: torch.Tensor) -> float:
        return float(v.float() @ self.direction.to(v.device))

    @property
    def pending(self) -> list[int]:
        """The layers not split yet, in order."""
        return [layer for layer, r in enumerate(self._readouts) if r is None]

    @torch.no_grad()
    def split(self, layers) -> None:
        """Split `layers` (those not split yet) into their heads, bias and MLP."""
        trace, pos = self.trace, self.pos
        layers = [check_index("layer", layer, trace.n_layers) for layer in layers]
        layers = [layer for layer in dict.fromkeys(layers) if self._readouts[layer] is None]
        if not layers:
            return
        with capture.model_lock(trace.parts.blocks[0]):
            runner = self._position_run
            if runner is not None and not runner.shared and runner.reason is None:
                layers = self.pending  # their calls are recorded from every layer's keys at once
            heads_in = {
                layer: _head_inputs(trace, layer, pos, runner is not None) for layer in layers
            }
            kvs = {k: kv for k, (_, kv, _) in heads_in.items()}
            rows = _sublayer_rows(trace, pos, runner, kvs)
            del kvs
            for layer in layers:
                (z, _, sink), (attn_row, mlp_row, route) = heads_in.pop(layer), rows[layer]
                device = self._summed.device
                added = attn_row.float().to(device) + mlp_row.float().to(device)
                stream = _stream_step(trace, layer, pos)
                post = trace.resid_post(layer)[pos]
                _check_added(added, stream.to(device), post, self.tol, layer, trace)
                head_share, bias_share, head_readout = _layer_heads(
                    trace, layer, z, attn_row, self.direction, self.tol
                )
                self.heads[layer], self.attn_bias[layer] = head_share, bias_share
                self.mlps[layer] = self._share(mlp_row)
                self._summed += added
                self._readouts[layer] = head_readout
                self._routes[layer] = route
                if sink is not None:
                    self._sources[layer] = _source_table(sink, head_readout, trace.seq_len)
            if not self.pending:
                _check(
                    self._summed,
                    self.final_resid,
                    self.tol,
                    "the last block's output is not the embeddings plus every attention and MLP "
                    "output",
                    trace,
                )

    def result(self) -> AttributionResult:
        """The attribution so far (`pending` layers NaN); complete once every layer is split."""
        pre, model_row, scale, cap = self.pre, self.model_row, self.scale, self.cap
        target_id, foil_id = self.target, self.foil
        if foil_id is None:
            model_value = float(model_row[target_id])
            pre_value = float(pre[target_id]) * scale
        else:
            model_value = float(model_row[target_id] - model_row[foil_id])
            pre_value = float(pre[target_id] - pre[foil_id]) * scale
        target_token, *rest_tokens = id_strings(
            self.trace.tokenizer, [target_id] + ([] if foil_id is None else [foil_id])
        )
        foil_token = rest_tokens[0] if rest_tokens else ""
        what = f"logit({target_token!r})"
        what += f" - logit({foil_token!r})" if foil_id is not None else ""
        if cap:
            what += f", before the final soft-cap (tanh at {cap:g})"
        elif scale != 1.0:
            what += f", the model's logit scale ({scale:g}) included"
        width = next((r.shape for r in self._readouts if r is not None), None)
        readouts = None
        if width is not None:
            readouts = torch.stack(
                [torch.full(width, float("nan")) if r is None else r for r in self._readouts]
            )
        return AttributionResult(
            target=target_id,
            foil=foil_id,
            position=self.pos,
            embed=self.embed,
            heads=self.heads.clone(),
            attn_bias=self.attn_bias.clone(),
            mlps=self.mlps.clone(),
            rest=self.rest,
            total=pre_value if cap else model_value,
            attributed=what,
            model_value=model_value,
            target_token=target_token,
            foil_token=foil_token,
            final_norm=self.final_form,
            route=_route_text(self._routes, self.trace.n_layers),
            blocks=self.blocks.clone(),
            pending=tuple(self.pending),
            _head_readout=readouts,
            _sources=list(self._sources),
            _trace=self.trace,
        )


def _stream_step(trace: Trace, layer: int, pos: int) -> torch.Tensor:
    """What block `layer` added to the stored stream at `pos` (its output minus its input; a
    dispatched run may store the two beside different devices' blocks)."""
    post = trace.resid_post(layer)[pos].float()
    return post - trace.resid_pre(layer)[pos].float().to(post.device)


def _check_added(added, stream, post, tol: float, layer: int, trace: Trace) -> None:
    """The attention plus MLP output is what block `layer` added to the stored stream (to
    `tol` of the stream's size after the block: `stream` is the difference of two stored
    vectors, rounded as they are)."""
    scale = max(post.float().norm().item(), stream.norm().item(), 1e-6)
    if (added - stream).norm() > tol * scale:
        edited = f"; this run was {trace.edits_text}" if trace.edits else ""
        raise UnsupportedArchitectureError(
            f"block {layer}'s output is not its input plus its attention and MLP outputs, so "
            f"its parts cannot be attributed exactly (difference "
            f"{((added - stream).norm() / scale).item():.2g} of the stream{edited})"
        )


def _head_inputs(trace: Trace, layer: int, pos: int, keep_kv: bool):
    """(the output projection's input at `pos` [n_heads, head_dim], the layer's keys and values
    if `keep_kv` else None, the probe's sink or None): one query row of the layer's attention."""
    if any(e.layer == layer and e.site == "head" for e in trace.edits):
        # the run edited heads here: their outputs as the run had them (the whole layer rerun)
        from lmscope.edits import head_outputs

        return head_outputs(trace, layer)[pos].float(), None, None
    sink = capture.probe(trace.parts.attentions[layer], trace.attention_call(layer), rows=[pos])
    kv = (sink["key"], sink["value"]) if keep_kv else None
    return sink["output"][0, 0].float(), kv, sink


def _source_table(sink, head_readout: torch.Tensor, seq: int) -> torch.Tensor | None:
    """[n_heads, seq] every head's share by key position (see `sources`) from one probe of all
    heads, or None where its weights or values are not laid out one row per head and one value
    head per group of query heads."""
    weights, value = sink["weights"], sink["value"]  # [1, heads, 1, seq], [1, kv, seq, head_dim]
    n_heads, head_dim = head_readout.shape
    if weights.shape != (1, n_heads, 1, seq) or value.dim() != 4 or value.shape[2] != seq:
        return None
    kv = value.shape[1]
    if n_heads % kv or value.shape[-1] != head_dim:
        return None
    readout = head_readout.to(value.device).view(kv, n_heads // kv, head_dim)
    through = torch.einsum("ksd,kgd->kgs", value[0].float(), readout).reshape(n_heads, seq)
    return (weights[0, :, 0].float() * through).cpu()


def _sublayer_rows(
    trace: Trace, pos: int, runner: position_run.PositionRun | None, keys_values: dict
) -> dict[int, tuple[torch.Tensor, torch.Tensor, str]]:
    """For each layer of `keys_values`: (attention output, MLP output) at `pos`, and where they
    came from in words: the run's own where it kept them (`runner` None); otherwise the block
    run on `pos` alone against its layer's keys and values (`position_run`), or the whole block
    rerun where that does not apply or is not exact (the reason)."""
    if runner is None:
        return {
            layer: (trace.attn_out(layer)[pos], trace.mlp_out(layer)[pos], KEPT)
            for layer in keys_values
        }
    found = runner.sublayer_rows({k: kv for k, kv in keys_values.items() if kv is not None})
    rows = {}
    for layer in keys_values:
        row = found.get(layer) or position_run.edited(trace, layer)
        if isinstance(row, str):
            rows[layer] = (trace.attn_out(layer)[pos], trace.mlp_out(layer)[pos], row)
        else:
            rows[layer] = (*row, ONE_POSITION)
    return rows


KEPT = "the run's own sub-layer outputs"
ONE_POSITION = "each block run on this position alone against its layer's keys and values"


def _route_text(routes: dict[int, str], n_layers: int) -> str:
    """Where the split layers' sub-layer outputs came from, in one line."""
    if not routes:
        return ""
    if set(routes.values()) == {KEPT}:
        return KEPT
    rerun = {layer: why for layer, why in sorted(routes.items()) if why != ONE_POSITION}
    why = "; ".join(dict.fromkeys(rerun.values()))
    if len(rerun) == len(routes):
        blocks = "every block" if len(routes) == n_layers else f"blocks {_ranges(list(rerun))}"
        return f"{blocks} rerun whole ({why})"
    if rerun:
        return f"{ONE_POSITION}, blocks {_ranges(list(rerun))} rerun whole instead ({why})"
    return ONE_POSITION


def _ranges(layers: list[int]) -> str:
    """'0-3, 7' for [0, 1, 2, 3, 7]."""
    spans: list[list[int]] = []
    for layer in layers:
        if spans and layer == spans[-1][1] + 1:
            spans[-1][1] = layer
        else:
            spans.append([layer, layer])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _layer_heads(
    trace: Trace, layer: int, z: torch.Tensor, recorded: torch.Tensor, direction, tol: float
):
    """(share of each head [n_heads], share of the bias, each head's readout [n_heads, head_dim])
    of layer's attention at one position, from the output projection's input `z`; `recorded`
    is the attention output there, which the heads must rebuild."""
    parts = trace.parts
    n_heads, head_dim = z.shape
    weight = parts.attn_proj_weight(layer).detach().float()  # [d_model, n_heads * head_dim]
    bias = parts.attn_proj_bias(layer)
    bias = torch.zeros(weight.shape[0], device=z.device) if bias is None else bias.float()
    projected = weight @ z.flatten() + bias  # the projection's output at pos
    direction = direction.to(z.device)
    scale = parts.residual_scale  # Granite, MiniCPM 3: what the layer adds is scaled first
    if isinstance(parts.attn_outs[layer], tuple):
        raise UnsupportedArchitectureError(
            f"layer {layer} adds its attention together with another module's output "
            f"({' + '.join(type(m).__name__ for m in parts.attn_outs[layer])}): the heads' "
            "shares of that sum are not defined, so its parts cannot be attributed"
        )
    added = parts.attn_outs[layer]
    direct = added is parts.attentions[layer] or added is parts.attn_projs[layer]
    if not direct and not architectures.is_norm(added):
        raise UnsupportedArchitectureError(
            f"layer {layer} adds what its {type(added).__name__} makes of the attention "
            "output (not a norm lmscope can freeze), so the heads' shares of it are not "
            "defined and its parts cannot be attributed"
        )
    # the attention's output, or its projection's (Bloom adds the residual inside, after it)
    if direct:
        _check(
            scale * projected,
            recorded,
            tol,
            f"layer {layer}'s attention output is not its heads through the output projection",
            trace,
        )
        attn_readout = scale * direction
        bias_share = float(bias @ attn_readout)
    else:  # normalised again before the residual add (Gemma 2): freeze that norm here too
        post = frozen_norm.freeze(parts.attn_outs[layer], projected[None])
        _check(
            scale * (post.linear(projected[None])[0] + post.bias),
            recorded,
            tol,
            f"layer {layer}'s "
            "attention output is not a norm of its heads through the output projection",
            trace,
        )
        attn_readout = scale * post.pullback(direction)[0]
        bias_share = float(bias @ attn_readout + scale * (post.bias @ direction))
    head_readout = (attn_readout @ weight).view(n_heads, head_dim)
    return (z * head_readout).sum(-1).cpu(), bias_share, head_readout.cpu()
