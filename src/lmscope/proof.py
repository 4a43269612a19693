"""The load-time proof: one short forward shows that the parts mean what lmscope says.

Checked numerically, against the model's own computation:
1. the residual stream lmscope records (each block's input) equals the model's hidden states;
2. each block's output equals its input plus what its token mixer and its MLP add (scaled as
   the model scales them), which also *chooses* the module whose output is really added;
   whether the MLP reads the block input (parallel residual) or input + attention is read
   off the same forward;
3. final norm, unembedding, logit scale and soft-cap of the last block's output give the
   model's logits;
4. each layer's attention, recomputed with lmscope's eager mask, reproduces the attention
   output the model computed (so the pattern shown is the one the model used).
A failing identity refuses what depends on it, in words; the residual stream itself failing
refuses the model.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from lmscope import capture, placement
from lmscope.architectures import Candidates, ModelParts
from lmscope.errors import UnsupportedArchitectureError

PROOF_TOKENS = 8
_PARALLEL_FLAGS = ("use_parallel_residual", "parallel_attn", "parallel_residual")


def _first(value):
    if isinstance(value, tuple | list):
        return value[0] if value else None
    return value


def _gap(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest difference relative to the expected tensor's largest magnitude."""
    if actual is None or expected is None or actual.shape != expected.shape:
        return float("inf")
    # small tensors (a few tokens): compared on the CPU, wherever each was computed
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    return float((a - e).abs().max() / (e.abs().max() + 1e-12))


def _tolerance(dtype: torch.dtype) -> float:
    return 1e-4 if dtype in (torch.float32, torch.float64) else 2e-2


class _Tape:
    """Inputs and outputs (first tensors, batch row 0) of the modules watched in one forward."""

    def __init__(self) -> None:
        self.inputs: dict[int, torch.Tensor] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self.copies: dict[int, torch.Tensor] = {}  # taken at once: later in-place adds miss them
        self.calls: dict[int, tuple[tuple, dict]] = {}

    def watch(self, stack: ExitStack, module: nn.Module, *, call: bool = False) -> None:
        key = id(module)

        def pre(_m, args, kwargs):
            hidden = args[0] if args else kwargs.get("hidden_states")
            if isinstance(hidden, torch.Tensor):
                self.inputs[key] = hidden
            if call:
                self.calls[key] = (args, dict(kwargs))

        def post(_m, _args, _kwargs, output):
            out = _first(output)
            if isinstance(out, torch.Tensor):
                self.outputs[key] = out
                self.copies[key] = out.clone()

        stack.callback(module.register_forward_pre_hook(pre, with_kwargs=True).remove)
        stack.callback(module.register_forward_hook(post, with_kwargs=True).remove)


_CAPTURE_FLAG = "_output_capturing_hooks_installed"


@contextmanager
def _left_as_found(model: nn.Module):
    """Asking for hidden_states makes transformers install recording hooks for good (and flag
    the model): the ones this forward added are removed again and the flag restored, so the
    model is exactly as found and transformers installs them itself when someone asks."""
    modules = list(model.modules())
    before = [{name: set(getattr(m, name, {})) for name in capture.HOOK_DICTS} for m in modules]
    flags = [m.__dict__.get(_CAPTURE_FLAG, _CAPTURE_FLAG) for m in modules]
    try:
        yield
    finally:
        for module, had, flag in zip(modules, before, flags, strict=True):
            for name in capture.HOOK_DICTS:
                hooks = getattr(module, name, None)
                for key in [k for k in hooks or () if k not in had[name]]:
                    del hooks[key]
            if flag == _CAPTURE_FLAG:
                module.__dict__.pop(_CAPTURE_FLAG, None)
            else:
                module.__dict__[_CAPTURE_FLAG] = flag


def _probe_ids(vocab: int, n: int, device) -> torch.Tensor:
    # spread over the vocabulary, away from the usual special ids at 0..2
    return ((torch.arange(n) * 7919 + 101) % max(vocab - 3, 1) + 3).to(device)[None]


def _same(a: torch.Tensor | None, b: torch.Tensor | None, tol: float) -> bool:
    return a is not None and b is not None and _gap(a, b) <= tol


def establish(model: nn.Module, found: Candidates, *, prove: bool = True) -> ModelParts:
    parts = ModelParts(
        model_type=found.model_type,
        blocks=found.blocks,
        attentions=found.attentions,
        attn_outs=[c[0] if c else None for c in found.attn_out_choices],
        mlp_outs=[c[0] if c else None for c in found.mlp_out_choices],
        mlp_downs=found.mlp_downs,
        attn_projs=found.attn_projs,
        final_norm=found.final_norms[0],
        unembed=found.unembed,
        final_logit_softcap=found.softcap,
        n_heads=found.n_heads,
        n_ctx=found.n_ctx,
        parallel_residual=_declared_parallel(model),
        blocks_path=found.blocks_path,
        mixers=[type(m).__name__ if m is not None else "nothing" for m in found.mixers],
        residual_scale=found.residual_scale,
        logit_scale=found.logit_scale,
        routers=found.routers,
        experts_per_token=found.experts_per_token,
        missing=dict(found.missing),
    )
    for layer, attention in enumerate(found.attentions):
        if attention is not None and isinstance(getattr(attention, "sinks", None), torch.Tensor):
            parts.attention_notes[layer] = (
                "rows sum to less than one: each head also attends to a learned sink logit "
                "(not a token), which takes the rest of the probability"
            )
    if not prove:
        _refuse_unproven(parts)
        return parts
    try:
        _prove(model, found, parts)
    except UnsupportedArchitectureError:
        raise
    except Exception as err:  # shapes lmscope's identities do not fit (hyper-connections...)
        raise UnsupportedArchitectureError(
            f"{found.model_type}: the load-time proof could not check this model's blocks "
            f"({type(err).__name__}: {err}); its blocks do not have the residual-stream shape "
            "lmscope decomposes"
        ) from err
    parts.proven = True
    return parts


UNPROVEN = (
    "{what} needs the load-time proof, which this Inspector skipped (prove=False): it is the "
    "proof that decides {which}. Build the Inspector with prove=True (the default) to see it"
)


def _refuse_unproven(parts: ModelParts) -> None:
    """Without the proof lmscope shows only what needs none: the residual stream entering and
    leaving each block (hooked at the blocks themselves), its norms and colours. Everything
    that rests on a choice the proof makes among candidates is refused in words, since the
    first candidate is wrong for whole families (a post-norm is what OLMo 2 and Gemma 2/3 add,
    ModernBERT's head sits before its unembedding, MPT's mask is its own)."""
    parts.refused["decomposition"] = UNPROVEN.format(
        what="splitting a block into attention and MLP outputs (attn_out, mlp_out, resid_mid, "
        "attribution, edits of those sites)",
        which="which module's output each block really adds (the sub-layer, a post-norm or "
        "its output projection) and whether its residual is parallel",
    )
    parts.refused["unembed"] = UNPROVEN.format(
        what="the unembedding of the residual stream (logit lens, attribution)",
        which="which norm, head, logit scale and soft-cap turn the last block's output into "
        "the model's logits",
    )
    for layer in parts.attention_layers:
        parts.attention_refused[layer] = UNPROVEN.format(
            what=f"layer {layer}'s attention pattern",
            which="how a pattern is recomputed so that it reproduces the model's own attention",
        )


def _declared_parallel(model: nn.Module) -> bool:
    config = model.config.get_text_config(decoder=True)
    return any(bool(getattr(config, flag, False)) for flag in _PARALLEL_FLAGS)


@torch.no_grad()
def _prove(model: nn.Module, found: Candidates, parts: ModelParts) -> None:
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    device = placement.execution_device(embeddings if embeddings is not None else found.unembed)
    dtype = found.unembed.weight.dtype
    tol = _tolerance(dtype)
    ids = _probe_ids(found.unembed.weight.shape[0], PROOF_TOKENS, device)
    tape = _Tape()
    was_training = model.training
    model.eval()
    try:
        with ExitStack() as stack, capture.model_lock(found.blocks[0]):
            watched: set[int] = set()
            for layer, block in enumerate(found.blocks):
                tape.watch(stack, block)
                for module in (
                    *found.attn_out_choices[layer],
                    *found.mlp_out_choices[layer],
                    found.mlps[layer],
                    found.mixers[layer],
                    *(c for _, c in block.named_children()),
                ):
                    if module is not None and id(module) not in watched:
                        watched.add(id(module))
                        tape.watch(stack, module, call=module is found.attentions[layer])
            stack.enter_context(_left_as_found(model))
            try:
                output = model(input_ids=ids, use_cache=False, output_hidden_states=True)
            except Exception as err:  # reported, with the way around it
                raise UnsupportedArchitectureError(
                    f"{found.model_type}: the load-time proof's forward pass failed "
                    f"({type(err).__name__}: {err}); lmscope cannot check its parts on this "
                    "model (Inspector(..., prove=False) skips the check, unproven)"
                ) from err
    finally:
        if was_training:
            model.train()
    _check_residual(found, parts, tape, output, tol, model.config.get_text_config(decoder=True))
    if not _choose_contributions(found, parts, tape, tol, tape.outputs):
        refusal = parts.refused.pop("decomposition")
        if _choose_contributions(found, parts, tape, tol, tape.copies):
            parts.copy_contributions = True
        else:
            parts.refused["decomposition"] = refusal
    _choose_final_norm(found, parts, tape, output, tol)
    _check_patterns(found, parts, tape, tol, model.config.get_text_config(decoder=True))


def _check_residual(
    found: Candidates, parts: ModelParts, tape: _Tape, output, tol: float, config
) -> None:
    """Block inputs equal hidden_states[0..n-1] (the usual convention), or, for families whose
    hidden_states list block outputs without the embeddings (Mamba), outputs equal them."""
    hidden = getattr(output, "hidden_states", None)
    name = type(found.blocks[0]).__name__
    if hidden is None or len(hidden) < len(found.blocks):
        raise UnsupportedArchitectureError(
            f"{found.model_type}: the model returned no hidden states to check the residual "
            "stream against, so lmscope cannot prove where its residual stream is"
        )
    ins = [tape.inputs.get(id(b)) for b in found.blocks]
    outs = [tape.outputs.get(id(b)) for b in found.blocks]
    bad = next((i for i, x in enumerate(ins) if not _same(x, hidden[i], tol)), None)
    if bad is None:
        parts.hidden_states_are = "inputs"
        return
    # outputs: the last entry may already be normed, so the last block is compared only if equal
    if all(_same(outs[i], hidden[i], tol) for i in range(len(outs) - 1)) and all(
        _same(outs[i], ins[i + 1], 0.0) for i in range(len(outs) - 1)
    ):
        parts.hidden_states_are = "outputs"
        return
    rescaled = _rescaled_between_blocks(ins, outs)
    if rescaled is not None:
        raise UnsupportedArchitectureError(_rescaled_refusal(found.model_type, config, *rescaled))
    raise UnsupportedArchitectureError(
        f"{found.model_type}: the input of block {bad} ({name}) is not the model's "
        f"hidden_states[{bad}] (relative gap {_gap(ins[bad], hidden[bad]):.2g}), so "
        "these blocks are not the residual stream lmscope would show"
    )


def _rescaled_between_blocks(ins: list, outs: list) -> tuple[int, float] | None:
    """The first block whose output reaches the next block multiplied by a number other than
    one (RWKV halves it every `rescale_every` blocks at inference), and that number; None when
    the stream is not rescaled between blocks (or is changed in some other way)."""
    for layer in range(len(outs) - 1):
        out, nxt = outs[layer], ins[layer + 1]
        if out is None or nxt is None or out.shape != nxt.shape or _same(nxt, out, 0.0):
            continue
        o, n = out.detach().double().flatten(), nxt.detach().double().flatten()
        factor = float(o @ n / (o @ o).clamp_min(1e-300))
        if factor != 1.0 and _same(n, factor * o, 1e-6):
            return layer, factor
        return None
    return None


def _rescaled_refusal(model_type: str, config, layer: int, factor: float) -> str:
    """The refusal of a stream rescaled between blocks, naming the config setting that does it
    where it is known (RWKV's rescale_every) and how to load the model without it."""
    seen = f"block {layer + 1}'s input is {factor:.4g} x block {layer}'s output"
    why = "so the blocks' outputs do not add up to one stream and lmscope cannot show its parts"
    every = getattr(config, "rescale_every", 0)
    if isinstance(every, int) and not isinstance(every, bool) and every > 0:
        return (
            f"{model_type}: with config.rescale_every={every} the model halves its residual "
            f"stream after every {every} block(s) in inference mode, outside the blocks ({seen}; "
            f"the later blocks' output weights are divided to match), {why}; loaded with "
            "rescale_every=0 it is not rescaled (the rescale guards float16 against overflow): "
            "AutoModelForCausalLM.from_pretrained(name, rescale_every=0), then Inspector(model, tokenizer)"
        )
    return f"{model_type}: the model rescales its residual stream between blocks ({seen}), {why}"


def _choose_contributions(
    found: Candidates, parts: ModelParts, tape: _Tape, tol: float, outputs: dict
) -> bool:
    """Per block, the mixer-side and MLP-side modules whose outputs, added to the block's
    input (times the residual scale), give its output; and whether the MLP read the input
    plus the mixer's contribution (serial) or not (parallel)."""
    s = found.residual_scale
    parallel_layers = []
    parts.stream_entry = None
    for layer, block in enumerate(found.blocks):
        block_in, block_out = tape.inputs.get(id(block)), tape.outputs.get(id(block))
        entries = _entry_choices(found, tape) if layer == 0 else []
        mixer = found.mixers[layer]
        choice = None
        # a block without a token mixer (Nemotron-H's MLP-only blocks) adds its MLP alone
        mixer_side = _valid(found.attn_out_choices[layer], mixer, tape) or (
            [None] if mixer is None else []
        )
        mlp_side = _valid(found.mlp_out_choices[layer], found.mlps[layer], tape) or [None]
        # last: a side that adds two modules' outputs (GraniteMoeHybrid's experts plus its
        # shared MLP, Falcon-H1's attention plus its Mamba mixer)
        extras = _other_adders(found, layer, tape)
        if mixer is not None and mixer in mixer_side:
            mixer_side += [(mixer, x) for x in extras]
        mlp = found.mlps[layer]
        if mlp is not None and mlp in mlp_side:
            # an extra branch may sit after a post-norm of the MLP (Gemma 4's per-layer
            # inputs): each MLP-side choice is paired with it, the plain MLP first
            mlp_side += [(mlp, x) for x in extras]
            mlp_side += [
                (m, x)
                for m in mlp_side
                if m is not mlp and not isinstance(m, tuple)
                for x in extras
            ]
        for a in mixer_side:
            for m in mlp_side:
                if (a is None and m is None) or _overlap(a, m):
                    continue
                parts_out = [_summed(x, outputs, block_out) for x in (a, m) if x is not None]
                if block_out is None or any(
                    p is None or p.shape != block_out.shape for p in parts_out
                ):
                    continue
                total = parts_out[0] if len(parts_out) == 1 else parts_out[0] + parts_out[1]
                if total.shape != block_out.shape:
                    continue  # never let broadcasting pass for an identity
                if block_in is None:
                    continue
                if _same(block_in + s * total, block_out, tol):
                    choice = (a, m)
                    break
                entry = next(
                    (e for e in entries if _same(outputs[id(e)] + s * total, block_out, tol)),
                    None,
                )
                if entry is not None:  # block 0 normalises its input first (RWKV)
                    parts.stream_entry, block_in = entry, outputs[id(entry)]
                    choice = (a, m)
                    break
            if choice:
                break
        if choice is None:
            tried = [type(c).__name__ for c in found.attn_out_choices[layer]]
            parts.refused["decomposition"] = (
                f"{found.model_type}: block {layer}'s output is not its input plus one "
                f"token-mixer output ({', '.join(tried) or 'none found'}) and one MLP output"
                f"{_why_not_additive(found, layer, tape, outputs)}, so attn_out / mlp_out / "
                "resid_mid and the lens's mid stage are not shown"
            )
            parts.attn_outs = [None] * len(found.blocks)
            parts.mlp_outs = [None] * len(found.blocks)
            parts.parallel_residual = False
            return False
        parts.attn_outs[layer], parts.mlp_outs[layer] = choice
        for kind, side in zip(("attn", "mlp"), choice, strict=True):
            if isinstance(side, tuple):
                parts.contribution_notes[(kind, layer)] = (
                    f"layer {layer}'s {kind}_out is the sum of what its "
                    f"{' and '.join(_child_name(block, x) for x in side)} add to the stream"
                )
        if choice[0] is not None and choice[1] is not None:
            mid = block_in + s * _summed(choice[0], outputs, block_out)
            readers = [found.mlps[layer], *(c for _, c in block.named_children())]
            serial = any(
                r is not None
                and id(r) in tape.inputs
                and _same(_as_stream(tape.inputs[id(r)], mid), mid, tol)
                for r in readers
            )
            if not serial:
                parallel_layers.append(layer)
    parts.parallel_residual = bool(parallel_layers)
    return True


def _entry_choices(found: Candidates, tape: _Tape) -> list[nn.Module]:
    """Norms of block 0 that read its input exactly and that no other block has (RWKV's
    pre_ln, applied to the embeddings in block 0 only): what may start the stream."""
    first = found.blocks[0]
    later = {name for b in found.blocks[1:] for name, _ in b.named_children()}
    block_in = tape.inputs.get(id(first))
    return [
        child
        for name, child in first.named_children()
        if name not in later
        and _is_norm_choice(child)
        and id(child) in tape.outputs
        and _same(tape.inputs.get(id(child)), block_in, 0.0)
    ]


def _child_name(block: nn.Module, module: nn.Module) -> str:
    return next((n for n, c in block.named_modules() if c is module), type(module).__name__)


def _members(side) -> tuple:
    return () if side is None else side if isinstance(side, tuple) else (side,)


def _overlap(a, m) -> bool:
    return bool({id(x) for x in _members(a)} & {id(x) for x in _members(m)})


def _summed(side, outputs: dict, like: torch.Tensor) -> torch.Tensor:
    """What one side adds: a module's output, or the sum of a pair's."""
    values = [_as_stream(outputs[id(module)], like) for module in _members(side)]
    if len(values) == 1:
        return values[0]
    if values[0].shape != values[1].shape:
        return None  # not two contributions to the stream (an MLP's hidden layer...)
    return values[0] + values[1]


def _other_adders(found: Candidates, layer: int, tape: _Tape) -> list[nn.Module]:
    """Children of a block that ran, have weights and are neither its mixer, its MLP nor a
    norm: what may add to the stream beside them."""
    known = {id(m) for m in (found.mixers[layer], found.mlps[layer]) if m is not None}
    children = [c for _, c in found.blocks[layer].named_children() if id(c) in tape.outputs]
    adders = [
        child
        for child in children
        if id(child) not in known
        and not _is_norm_choice(child)
        and any(True for _ in child.parameters())
    ]
    # a norm reading an adder's output is what the block adds (Gemma 4's per-layer-input
    # branch ends in post_per_layer_input_norm): tried first
    readers = [
        norm
        for norm in children
        if _is_norm_choice(norm)
        and any(_same(tape.inputs.get(id(norm)), tape.outputs[id(a)], 0.0) for a in adders)
    ]
    return readers + adders


_MULTIPLIER_NAME = ("alpha", "beta", "scale", "scalar", "multiplier", "factor", "add_idx")


def _why_not_additive(found: Candidates, layer: int, tape: _Tape, outputs: dict) -> str:
    """The missing piece, in words, when a block is not input + mixer + MLP: a norm applied
    after the residual add (post-LN: BERT, GPT-1), multipliers on the residual itself, or
    other modules that add to the stream (per-layer inputs, short convolutions, a second
    attention, hyper-connections)."""
    block = found.blocks[layer]
    block_out = tape.outputs.get(id(block))
    for name, child in block.named_children():
        if _is_norm_choice(child) and _same(outputs.get(id(child)), block_out, 0.0):
            return (
                f": its output is its {name} ({type(child).__name__}), a norm after the "
                "residual add (post-LN), which renormalises the whole stream in every block"
            )
    if block_out is not None and block_out.dim() > 3:
        return f": its stream has shape {tuple(block_out.shape)} (several residual streams)"
    scalars = []
    for name, value in [*vars(block).items(), *block.named_buffers(recurse=False)]:
        if name.startswith("_") or not any(k in name.lower() for k in _MULTIPLIER_NAME):
            continue
        number = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        if isinstance(number, int | float) and not isinstance(number, bool) and number != 1:
            scalars.append(name)
    if scalars:
        return f": it rescales its residual or sub-layers by {', '.join(scalars)}"
    known = {id(m) for m in (found.mixers[layer], found.mlps[layer]) if m is not None}
    others = [
        name
        for name, child in block.named_children()
        if id(child) not in known
        and not _is_norm_choice(child)
        and id(child) in tape.outputs
        and any(True for _ in child.parameters())
    ]
    if others:
        return f": it also adds what {', '.join(others)} compute, which lmscope does not decompose"
    return ": the block adds something else"


def _as_stream(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` as a [1, seq, d] stream tensor: as it is, or a batch of one's tokens flattened
    (some MoE blocks return [seq, d]), exactly as `capture.recording` reads it; a shape that
    is neither is returned unchanged, so that the comparison fails."""
    if t.dim() == 2 and like.dim() == 3 and t.shape == like.shape[1:]:
        return t[None]
    return t


def _valid(choices: list[nn.Module], sublayer: nn.Module | None, tape: _Tape) -> list[nn.Module]:
    """Candidates that ran: the sub-layer, a module inside it (Bloom's projection), or a
    module of the block only if it reads the sub-layer's output (a post-norm, Inkling's short
    convolution after each sub-layer), never the input side."""
    out, readers = [], []
    sub_out = tape.outputs.get(id(sublayer)) if sublayer is not None else None
    inside = {id(m) for m in sublayer.modules()} if sublayer is not None else set()
    for module in choices:
        if id(module) not in tape.outputs:
            continue
        reads = sub_out is not None and _same(tape.inputs.get(id(module)), sub_out, 0.0)
        if module is not sublayer and reads:
            readers.append(module)
            continue
        if id(module) in inside:
            out.append(module)
    # a module after the sub-layer, when there is one, is what is added: try it first
    return readers + out


def _is_norm_choice(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()


def _choose_final_norm(found: Candidates, parts: ModelParts, tape: _Tape, output, tol) -> None:
    last = tape.outputs.get(id(found.blocks[-1]))
    logits = output.logits[0]
    gaps = []
    for norm in found.final_norms:
        for scale in found.logit_scales:
            parts.final_norm, parts.logit_scale = norm, scale
            try:  # accelerate's hooks move it where the modules run
                mine = parts._unembed(last[0])
            except Exception:  # a candidate that cannot take the stream is not the final norm
                mine = None
            gaps.append(_gap(mine, logits))
            if gaps[-1] <= tol:
                return
    parts.final_norm, parts.logit_scale = found.final_norms[0], found.logit_scales[0]
    parts.refused["unembed"] = (
        f"{found.model_type}: the final norm and unembedding of the last block's output do not "
        f"give the model's logits (relative gap {min(gaps):.2g}): the model does more after "
        "its last block, so the logit lens is not shown"
    )


def _attention_kind(model_config, layer: int, attention: nn.Module) -> tuple:
    """Layers of one kind share their masking and scaling code: proving one proves all."""
    types = getattr(model_config, "layer_types", None)
    return (
        type(attention),
        types[layer] if isinstance(types, list | tuple) and layer < len(types) else None,
        getattr(attention, "sliding_window", None),
        getattr(attention, "is_sliding", None),
    )


def _check_patterns(
    found: Candidates, parts: ModelParts, tape: _Tape, tol: float, text_config
) -> None:
    """Recompute the first layer of each attention kind and check it reproduces the model's
    attention output; its verdict (and route) holds for every layer of that kind."""
    verdicts: dict[tuple, tuple[str | None, str | None]] = {}  # kind -> (route, refusal)
    for layer, attention in enumerate(found.attentions):
        if attention is None:
            continue
        kind = _attention_kind(text_config, layer, attention)
        if kind not in verdicts:
            verdicts[kind] = _prove_pattern(layer, attention, tape, tol)
        route, refusal = verdicts[kind]
        if refusal is not None:
            parts.attention_refused[layer] = refusal
        else:
            parts.pattern_route[layer] = route


def _prove_pattern(layer: int, attention: nn.Module, tape: _Tape, tol: float):
    """(route, None) for the first route whose recomputed attention reproduces the model's
    own attention output, else (None, why). The module's own eager code is tried a second
    time with the model's boolean mask kept in its own convention (MPT: True means masked),
    which lmscope's additive mask would invert."""
    call = tape.calls.get(id(attention))
    if call is None:
        return None, f"layer {layer}'s attention did not run"
    expected = tape.outputs.get(id(attention))
    why = None
    for route in (None, capture.OWN_MASK_ROUTE):
        try:
            _, _, out, used = capture.recompute(attention, call, route=route)
        except Exception as err:  # any failure is a refusal of this view
            why = why or (
                f"the attention pattern of layer {layer} and its kind cannot be recomputed: {err}"
            )
            continue
        if used == "interface" and out is None:
            return None, f"layer {layer}'s attention copy returned nothing to check"
        gap = _gap(_first(out), expected)
        if gap <= tol:
            return used, None
        if route is None or why is None:
            why = (
                f"the recomputed attention of layer {layer} (and layers of its kind) does not "
                f"reproduce the model's own attention output (relative gap {gap:.2g}), so its "
                "pattern is not shown"
            )
        if used == "interface":
            break  # the module's own code is only a second route for modules outside it
    return None, why
