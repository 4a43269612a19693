"""Direct logit attribution: how much of one logit each head, MLP and the embeddings wrote.

The last block's output at a position is the embeddings plus every attention and MLP output.
With the final norm's scale frozen at its actual value there (`frozen_norm`), the norm is affine,
so the target's logit (or logit(target) - logit(foil)) is a sum of dot products, one per part,
plus a constant `rest` (the norm's bias and the unembedding bias). Heads are read where they are
still separate, at the input of the attention's output projection: head h's share is its slice
times its columns of the projection, the projection's bias goes to `attn_bias`. Where the
attention output is normalised once more before the add (Gemma 2), that norm is frozen too.

One position's heads cost one query row of attention per layer (`capture.probe(rows=...)`), not
a forward per head. Every structural claim is checked on the run itself (the residual stream is
the sum of its parts, the heads rebuild the attention output, each norm is what it is taken for,
the logits are the unembedding, soft-capped or scaled as found); a model where one fails is
refused in words rather than given numbers that do not add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from lmscope import architectures, capture, frozen_norm, placement
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
    # per-layer readout of each head's output ([n_layers, n_heads, head_dim]), kept for sources
    _head_readout: torch.Tensor | None = field(default=None, repr=False)
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
        """[n_layers] each block's share (attention + MLP)."""
        return self.attn + self.mlps

    @property
    def resid(self) -> torch.Tensor:
        """[n_layers] the share of the residual stream after each block (embeddings, `rest` and
        every block up to it), with the final scale frozen: the last entry is `total`."""
        return self.embed + self.rest + torch.cumsum(self.layers.double(), 0).float()

    @property
    def unexplained(self) -> float:
        """total minus the sum of the parts: float rounding only."""
        parts = self.embed + self.rest + self.heads.double().sum() + self.attn_bias.double().sum()
        return self.total - float(parts + self.mlps.double().sum())

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
        return sorted(named, key=lambda kv: -abs(kv[1]))[:n]

    def sources(self, layer: int, head: int) -> torch.Tensor:
        """[seq] head (layer, head)'s share split by key position: each key's attention weight
        times its value through the head's slice of the output projection. Sums to
        `heads[layer, head]`; keys after `position` (and outside a sliding window) are 0."""
        if self._trace is None or self._head_readout is None:
            raise InputError("this attribution has no trace to read the head's values from")
        layer = check_index("layer", layer, self.n_layers)
        head = check_index("head", head, self.heads.shape[1])
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


def _tol(dtype: torch.dtype) -> float:
    return 1e-4 if torch.finfo(dtype).bits >= 32 else 5e-2


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
@torch.no_grad()
def attribution(trace: Trace, target, *, position: int = -1, foil=None) -> AttributionResult:
    """Direct logit attribution of `target` (id or string) at `position`, against `foil`.

    Every head of every layer, every MLP, the embeddings and the constant rest; see
    AttributionResult. Costs one attention query row per layer.
    """
    parts = trace.parts
    n_layers, n_heads = trace.n_layers, trace.n_heads
    pos = check_index("position", position, trace.seq_len)
    target_id = _token(trace, target)
    foil_id = None if foil is None else _token(trace, foil)
    if foil_id == target_id:
        raise InputError(f"target and foil are the same token ({target_id}): nothing to compare")
    tol = _tol(trace.dtype)

    with capture.model_lock(parts.blocks[0]):  # modules called here carry a run's hooks
        final_resid = trace.resid_post(n_layers - 1)[pos]
        embed_row = trace.embeddings[pos]
        summed = embed_row.float() + sum(
            trace.attn_out(layer)[pos].float().to(embed_row.device)
            + trace.mlp_out(layer)[pos].float().to(embed_row.device)
            for layer in range(n_layers)
        )
        _check(
            summed,
            final_resid,
            tol,
            "the last block's output is not the embeddings plus every attention and MLP output",
            trace,
        )

        final = frozen_norm.freeze(parts.final_norm, final_resid[None])
        unembed = parts.unembed
        pre = unembed(parts.final_norm(final_resid[None]))[0].float()
        model_row = trace.logits[pos].float().to(pre.device)
        scale, cap = _logit_map(trace, pre, model_row, tol)

        w_unembed = placement.loaded_tensor(unembed).detach()  # from its offload, if offloaded
        readout = w_unembed[target_id].float()
        if foil_id is not None:
            readout = readout - w_unembed[foil_id].float()
        readout = readout.to(final.scale.device) * scale
        bias = placement.loaded_tensor(unembed, "bias")
        b_diff = 0.0
        if bias is not None:
            b_diff = float(bias[target_id] - (bias[foil_id] if foil_id is not None else 0))
        direction = final.pullback(readout)[0]  # [d_model]: share(v) = direction . v
        rest = float(readout @ final.bias.to(readout.device)) + scale * b_diff

        heads = torch.zeros(n_layers, n_heads)
        attn_bias = torch.zeros(n_layers)
        mlps = torch.zeros(n_layers)
        readouts = []
        for layer in range(n_layers):
            head_share, bias_share, head_readout = _layer_heads(trace, layer, pos, direction, tol)
            heads[layer], attn_bias[layer] = head_share, bias_share
            readouts.append(head_readout)
            mlp_row = trace.mlp_out(layer)[pos].float()
            mlps[layer] = float(mlp_row @ direction.to(mlp_row.device))
        embed = float(embed_row.float() @ direction.to(embed_row.device))

    if foil_id is None:
        model_value = float(model_row[target_id])
        pre_value = float(pre[target_id]) * scale
    else:
        model_value = float(model_row[target_id] - model_row[foil_id])
        pre_value = float(pre[target_id] - pre[foil_id]) * scale
    target_token, *rest_tokens = id_strings(
        trace.tokenizer, [target_id] + ([] if foil_id is None else [foil_id])
    )
    foil_token = rest_tokens[0] if rest_tokens else ""
    what = f"logit({target_token!r})" + (f" - logit({foil_token!r})" if foil_id is not None else "")
    if cap:
        what += f", before the final soft-cap (tanh at {cap:g})"
    elif scale != 1.0:
        what += f", the model's logit scale ({scale:g}) included"
    return AttributionResult(
        target=target_id,
        foil=foil_id,
        position=pos,
        embed=embed,
        heads=heads,
        attn_bias=attn_bias,
        mlps=mlps,
        rest=rest,
        total=pre_value if cap else model_value,
        attributed=what,
        model_value=model_value,
        target_token=target_token,
        foil_token=foil_token,
        final_norm=final.form,
        _head_readout=torch.stack(readouts),
        _trace=trace,
    )


def _layer_heads(trace: Trace, layer: int, pos: int, direction: torch.Tensor, tol: float):
    """(share of each head [n_heads], share of the bias, each head's readout [n_heads, head_dim])
    of layer's attention at one position, from the output projection's input."""
    parts = trace.parts
    if any(e.layer == layer and e.site == "head" for e in trace.edits):
        # the run edited heads here: their outputs as the run had them (the whole layer rerun)
        from lmscope.edits import head_outputs

        z = head_outputs(trace, layer)[pos].float()
    else:
        sink = capture.probe(parts.attentions[layer], trace.attention_call(layer), rows=[pos])
        z = sink["output"][0, 0].float()  # [n_heads, head_dim]
    n_heads, head_dim = z.shape
    weight = parts.attn_proj_weight(layer).detach().float()  # [d_model, n_heads * head_dim]
    bias = parts.attn_proj_bias(layer)
    bias = torch.zeros(weight.shape[0], device=z.device) if bias is None else bias.float()
    projected = weight @ z.flatten() + bias  # the projection's output at pos
    recorded = trace.attn_out(layer)[pos]
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
