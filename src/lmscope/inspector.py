"""Inspector: a model, its tokenizer and where it runs; runs prompts and returns Traces.

A model may sit on one device or be dispatched by accelerate (`device_map`, CPU or disk
offload); lmscope takes it exactly as it is placed and never moves it.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from lmscope import architectures, capture, memory, placement, tokens
from lmscope import edits as edits_module
from lmscope.default_model import DEFAULT_MODEL_NAME, ensure_converted
from lmscope.errors import InputError, MemoryBudgetError, UnknownModelError
from lmscope.trace import Trace

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
TRACE_INTERNALS = ("auto", "keep", "recompute")


def pick_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    return torch.device(device)


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached, or None. One TCP connect instead of the client's retries."""
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout).close()
    except OSError as err:
        return f"{constants.ENDPOINT} is unreachable ({err})"
    return None


def _locate(name: str) -> tuple[str, bool]:
    """(where to load from, whether to stay offline), or an UnknownModelError naming the id."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser()), True
    if not _REPO_ID.match(name):
        raise UnknownModelError(
            f"{name!r} is neither a local folder nor a Hugging Face model id like 'gpt2' or 'org/name'"
        )
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return name, _offline()
    if _offline():
        raise UnknownModelError(
            f"model {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            "download it once while online, pass a local folder, or call "
            "Inspector.from_pretrained() for the bundled default model"
        )
    reason = _hub_unreachable()
    if reason:
        raise UnknownModelError(
            f"model {name!r} is not in the local Hugging Face cache and {reason}; pass a local "
            "folder, or call Inspector.from_pretrained() for the bundled default model"
        )
    return name, False


def _oom_device(err: BaseException) -> str | None:
    """The device an out-of-memory error names ("GPU 1 has a total capacity ...")."""
    found = re.search(r"GPU (\d+)", str(err))
    return f"cuda:{found.group(1)}" if found else None


def _per_device(needs: Mapping[torch.device, int]) -> str:
    if len(needs) == 1:
        return memory.human(next(iter(needs.values())))
    return ", ".join(f"{memory.human(n)} on {d}" for d, n in needs.items())


class Inspector:
    """Wraps a causal LM (and tokenizer) so prompts can be run and inspected."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer=None,
        *,
        name: str | None = None,
        memory_budget: int | str | Mapping | None = None,
        trace_internals: str = "auto",
        trace_device: str | torch.device | None = None,
        trace_dtype: torch.dtype | None = None,
        layout: architectures.Layout | None = None,
        prove: bool = True,
    ) -> None:
        """`layout` names the parts of a model lmscope cannot map by itself; `prove=False`
        skips the load-time proof (one short forward, see `lmscope.proof`): only the residual
        stream entering and leaving each block is then shown, and what rests on the proof's
        choices (attention/MLP outputs, the unembedding and lens, patterns, attribution) is
        refused in words naming prove=False."""
        self.parts = architectures.resolve(model, layout, prove=prove)
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.config = model.config
        #: bytes (or "6GB") for every device, or {device: size}; None means
        #: LMSCOPE_MEMORY_BUDGET or 80% of each device's free memory
        self.memory_budget = memory_budget
        if trace_internals not in TRACE_INTERNALS:
            raise InputError(
                f"trace_internals must be one of {', '.join(TRACE_INTERNALS)}, got {trace_internals!r}"
            )
        #: "keep" stores every block's internals, "recompute" reruns one block when a view asks,
        #: "auto" keeps them while they take at most memory.KEEP_INTERNALS_SHARE of each
        #: device's budget
        self.trace_internals = trace_internals
        #: where a trace stores its tensors (None: beside each block) and in which dtype (None:
        #: the model's; a lower one rounds the stored stream, and internals are recomputed from it)
        self.trace_device = torch.device(trace_device) if trace_device is not None else None
        self.trace_dtype = trace_dtype

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name: str | os.PathLike | None = None,
        *,
        device: str | torch.device | None = "auto",
        device_map: str | dict | None = None,
        max_memory: dict | None = None,
        offload_folder: str | os.PathLike | None = None,
        dtype: torch.dtype | str | None = None,
        trust_remote_code: bool = False,
        memory_budget: int | str | Mapping | None = None,
        trace_internals: str = "auto",
        trace_device: str | torch.device | None = None,
        trace_dtype: torch.dtype | None = None,
    ) -> Inspector:
        """Load a Hugging Face causal LM by id or folder; no name means the bundled SmolLM2-135M.

        `device` puts the whole model on one device. `device_map` ("auto", or a map of module
        names to devices, "cpu" or "disk"), `max_memory` and `offload_folder` are passed to
        transformers and accelerate instead, which spread or offload the model; lmscope then
        uses it as placed. The `trace_*` settings are the Inspector's (what a trace stores).
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device_map is None and (max_memory is not None or offload_folder is not None):
            raise InputError("max_memory and offload_folder need a device_map (e.g. 'auto')")
        if device_map is not None and device not in (None, "auto"):
            raise InputError(
                f"pass either device={device!r} or device_map, not both: a device map "
                "already says where every module goes"
            )
        if name is None:
            where, local_only = str(ensure_converted()), True
            display = DEFAULT_MODEL_NAME
        else:
            where, local_only = _locate(str(name))
            display = str(name)
        placement_kwargs = {}
        if device_map is not None:
            placement_kwargs = {"device_map": device_map, "max_memory": max_memory}
            if offload_folder is not None:
                placement_kwargs["offload_folder"] = str(offload_folder)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                where, local_files_only=local_only, trust_remote_code=trust_remote_code
            )
            model = AutoModelForCausalLM.from_pretrained(
                where,
                dtype=dtype if dtype is not None else "auto",
                local_files_only=local_only,
                trust_remote_code=trust_remote_code,
                **placement_kwargs,
            )
        except OSError as err:
            raise UnknownModelError(f"could not load model {display!r}: {err}") from err
        except (
            ValueError
        ) as err:  # accelerate's words for a map that does not fit or lacks a folder
            if device_map is None:
                raise
            raise InputError(f"could not place {display!r} with that device_map: {err}") from err
        if device_map is None:
            model.to(pick_device(device))
        model.eval()
        return cls(
            model,
            tokenizer,
            name=display,
            memory_budget=memory_budget,
            trace_internals=trace_internals,
            trace_device=trace_device,
            trace_dtype=trace_dtype,
        )

    # -- facts --------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where inputs go: the device the input embedding runs on."""
        return placement.execution_device(self.model.get_input_embeddings())

    @property
    def device_map(self) -> dict | None:
        """accelerate's placement of the model's modules, or None for a model on one device."""
        return getattr(self.model, "hf_device_map", None)

    @cached_property
    def layer_devices(self) -> list[torch.device]:
        """The device each block runs on (offloaded blocks run where their hook brings them)."""
        return [placement.execution_device(block) for block in self.parts.blocks]

    def _storage_devices(self) -> list[torch.device]:
        if self.trace_device is not None:
            return [self.trace_device] * self.n_layers
        return self.layer_devices

    def _output_device(self) -> torch.device:
        # a dispatched model hands its logits back where its inputs came from
        return self.trace_device or self.device

    def devices(self) -> list[torch.device]:
        """Every device a run computes or stores on, input device first."""
        found = [self.device, *self.layer_devices, *self._storage_devices()]
        return list(dict.fromkeys(found))

    @property
    def _text_config(self):
        """The decoder's own config (a multimodal wrapper's config holds it as a sub-config)."""
        get = getattr(self.config, "get_text_config", None)
        return get(decoder=True) if get is not None else self.config

    @property
    def n_layers(self) -> int:
        return len(self.parts.blocks)

    @property
    def n_heads(self) -> int:
        return self.parts.n_heads

    @property
    def max_length(self) -> int | None:
        return self.parts.n_ctx

    @property
    def vocab_size(self) -> int:
        return self.parts.unembed.weight.shape[0]

    @property
    def d_mlp(self) -> int:
        config = self._text_config
        width = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
        return int(width or 4 * config.hidden_size)

    def budget(self, device: torch.device | None = None) -> int:
        """The memory budget of `device` (default: the input device), in bytes."""
        return memory.budget_bytes(device or self.device, self.memory_budget)

    def budgets(self) -> dict[torch.device, int]:
        return {device: self.budget(device) for device in self.devices()}

    @property
    def _element_size(self) -> int:
        return next(self.model.parameters()).element_size()

    def _stored_element_size(self) -> int:
        return self.trace_dtype.itemsize if self.trace_dtype is not None else self._element_size

    def keeps_internals(self, n_tokens: int, budgets: Mapping | None = None) -> bool:
        """Whether a run of `n_tokens` stores every block's internals (see `trace_internals`)."""
        if self.trace_internals != "auto":
            return self.trace_internals == "keep"
        budgets = budgets or self.budgets()
        per_layer = memory.internals_layer_bytes(
            n_tokens=n_tokens,
            d_model=self._text_config.hidden_size,
            d_mlp=self.d_mlp,
            element_size=self._stored_element_size(),
        )
        share: dict[torch.device, int] = {}
        for device in self._storage_devices():
            share[device] = share.get(device, 0) + per_layer
        return all(share[d] <= memory.KEEP_INTERNALS_SHARE * budgets[d] for d in share)

    def estimate_run(
        self, n_tokens: int, *, internals: bool | None = None
    ) -> dict[torch.device, int]:
        """Bytes a run of `n_tokens` needs on each device: what the trace stores there, plus the
        largest transient of a block running there (and an offloaded block's weights, which are
        brought in for its forward)."""
        if internals is None:
            internals = self.keeps_internals(n_tokens)
        d_model, stored = self._text_config.hidden_size, self._stored_element_size()
        per_layer = memory.stream_layer_bytes(
            n_tokens=n_tokens, d_model=d_model, element_size=stored
        )
        if internals:
            per_layer += memory.internals_layer_bytes(
                n_tokens=n_tokens, d_model=d_model, d_mlp=self.d_mlp, element_size=stored
            )
        needs = dict.fromkeys(self.devices(), 0)
        storage = self._storage_devices()
        for device in storage:
            needs[device] += per_layer
        needs[storage[-1]] += memory.stream_layer_bytes(
            n_tokens=n_tokens, d_model=d_model, element_size=stored
        )  # the last block's output
        needs[self._output_device()] += n_tokens * self.vocab_size * self._element_size
        transient = memory.transient_bytes(
            n_tokens=n_tokens,
            n_heads=self.n_heads,
            d_mlp=self.d_mlp,
            element_size=self._element_size,
        )
        brought_in: dict[torch.device, int] = {}
        for block, device in zip(self.parts.blocks, self.layer_devices, strict=True):
            if placement.is_offloaded(block):
                weights = placement.weight_bytes(block)
                brought_in[device] = max(brought_in.get(device, 0), weights)
        for device in dict.fromkeys(self.layer_devices):
            needs[device] += transient + brought_in.get(device, 0)
        return needs

    def estimate_run_bytes(self, n_tokens: int) -> int:
        """`estimate_run` summed over the devices."""
        return sum(self.estimate_run(n_tokens).values())

    def __repr__(self) -> str:
        where = placement.describe(self.devices(), self.device_map)
        return f"Inspector({self.name}: {self.n_layers} layers, {self.n_heads} heads, on {where})"

    # -- input handling -------------------------------------------------------------------
    def encode(self, text_or_ids: str | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """A 1-D LongTensor of token ids, validated against the vocabulary and context length."""
        if isinstance(text_or_ids, str):
            if not text_or_ids:
                raise InputError("the text is empty: give at least one character to run")
            if self.tokenizer is None:
                raise InputError(
                    "this Inspector has no tokenizer: pass token ids, or Inspector(model, tokenizer)"
                )
            ids = torch.tensor(self.tokenizer(text_or_ids)["input_ids"], dtype=torch.long)
        else:
            ids = torch.as_tensor(text_or_ids)
            if ids.dim() == 2 and ids.shape[0] == 1:
                ids = ids[0]
            if ids.dim() != 1:
                raise InputError(f"token ids must be 1-D, got shape {tuple(ids.shape)}")
            if ids.numel() and (ids.dtype.is_floating_point or ids.dtype == torch.bool):
                raise InputError(f"token ids must be integers, got {ids.dtype}")
            ids = ids.long()
        if ids.numel() == 0:
            raise InputError("no tokens to run: the input is empty")
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            raise InputError(
                f"token id {int(ids[bad][0])} is outside the vocabulary (valid: 0..{self.vocab_size - 1})"
            )
        if self.max_length and ids.numel() > self.max_length:
            raise InputError(
                f"the input has {ids.numel()} tokens but {self.name} takes at most "
                f"{self.max_length}; shorten the text"
            )
        return ids

    def _strings(self, ids: torch.Tensor) -> tuple[list[str], list[str], list[list[int]]]:
        id_list = ids.tolist()
        if self.tokenizer is None:
            display = [f"#{i}" for i in id_list]
            return display, display, [[j] for j in range(len(id_list))]
        display, texts = tokens.display_strings(self.tokenizer, id_list)
        special_ids = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        groups = tokens.word_groups(texts, [i in special_ids for i in id_list])
        return display, texts, groups

    @contextmanager
    def _eval_mode(self):
        # dropout would make captures random; restore the caller's mode afterwards
        was_training = self.model.training
        if was_training:
            self.model.eval()
        try:
            yield
        finally:
            if was_training:
                self.model.train()

    # -- running ------------------------------------------------------------------------
    def run(
        self,
        text_or_ids: str | Sequence[int] | torch.Tensor,
        *,
        edits: Sequence[edits_module.Ablate | edits_module.Patch | edits_module.Edit] = (),
        prompt_length=None,
        generated_text="",
    ) -> Trace:
        """Run one forward pass and capture everything the views need.

        `edits`: `lmscope.Ablate` / `lmscope.Patch` applied during this run only; the trace
        records them (`trace.edits`) and the model is left as it was, also if the run raises.
        """
        ids = self.encode(text_or_ids)
        planned = edits_module.plan(edits, self, ids.numel())
        n_tokens = ids.numel()
        budgets = self.budgets()
        internals = self.keeps_internals(n_tokens, budgets)
        memory.check_devices(
            self.estimate_run(n_tokens, internals=internals),
            budgets,
            f"capturing {n_tokens} tokens",
            "Use a shorter text, or a larger budget if the device really has the room.",
        )
        display, texts, groups = self._strings(ids)
        batch = ids.to(self.device)[None]
        place = self._placer()
        try:
            # no_grad rather than inference_mode: users feed trace tensors back into modules
            with (
                self._eval_mode(),
                torch.no_grad(),
                edits_module.applied(self.parts, planned),  # before recording: it sees the edits
                capture.recording(self.parts, internals=internals, norms=True, place=place) as rec,
            ):
                output = self.model(input_ids=batch, use_cache=False)
        except torch.OutOfMemoryError as err:
            where = _oom_device(err) or " or ".join(str(d) for d in self.devices())
            del err  # its traceback pins the half-built activations
            memory.empty_caches()
            raise MemoryBudgetError(
                f"{where} ran out of memory capturing {n_tokens} tokens (estimated "
                f"{_per_device(self.estimate_run(n_tokens, internals=internals))}). Use a "
                "shorter text or free other tensors; the inspector is still usable."
            ) from None
        logits = output.logits[0]
        if self.trace_device is not None:
            logits = logits.to(self.trace_device)
        return Trace(
            parts=self.parts,
            recording=rec,
            input_ids=ids,
            logits=logits,
            tokens=display,
            token_texts=texts,
            word_groups=groups,
            prompt_length=prompt_length,
            generated_text=generated_text,
            model_name=self.name,
            memory_budget=budgets,
            tokenizer=self.tokenizer,
            place=place,
            edits=planned,
            model=self.model,
        )

    def _placer(self) -> capture.Place | None:
        """How a run stores each layer's tensors: on the trace device (or beside the block, so
        one layer's tensors share a device), in the trace dtype; None when that is as computed."""
        devices = self._storage_devices()
        dtype = self.trace_dtype
        if self.trace_device is None and dtype is None and not placement.is_dispatched(self.model):
            return None

        def place(layer: int, tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device=devices[layer], dtype=dtype or tensor.dtype)

        return place

    def generate(
        self,
        prompt: str | Sequence[int] | torch.Tensor,
        max_new_tokens: int = 20,
        *,
        edits: Sequence[edits_module.Ablate | edits_module.Patch | edits_module.Edit] = (),
        **generate_kwargs,
    ) -> Trace:
        """Greedy continuation (unless generate_kwargs say otherwise), traced over prompt + continuation.

        `edits` apply to every step; their positions count in the prompt (a Patch without
        positions covers the prompt, whose length its source must have).
        """
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        ids = self.encode(prompt)
        if self.max_length and ids.numel() + max_new_tokens > self.max_length:
            raise InputError(
                f"prompt ({ids.numel()} tokens) + max_new_tokens ({max_new_tokens}) exceeds "
                f"{self.name}'s context of {self.max_length} tokens"
            )
        generate_kwargs.setdefault("do_sample", False)
        pad = getattr(self.tokenizer, "pad_token_id", None) or getattr(
            self.tokenizer, "eos_token_id", None
        )
        planned = edits_module.for_generation(edits_module.plan(edits, self, ids.numel()))
        if any(edit.positions is not None for edit in planned):
            # with a KV cache each later step sees one position; without it every step sees
            # the whole sequence, so an edit's prompt positions index the same tokens
            generate_kwargs.setdefault("use_cache", False)
        batch = ids.to(self.device)[None]
        with self._eval_mode(), torch.no_grad(), edits_module.applied(self.parts, planned):
            out = self.model.generate(
                input_ids=batch,
                attention_mask=torch.ones_like(batch),
                max_new_tokens=max_new_tokens,
                pad_token_id=pad,
                **generate_kwargs,
            )[0]
        new_ids = out[ids.numel() :]
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True) if self.tokenizer else ""
        return self.run(out.cpu(), edits=planned, prompt_length=ids.numel(), generated_text=text)

    def show(self, text: str, **dashboard_kwargs):
        """Run `text` and return a `lmscope.Dashboard` of it, with a prompt box for new runs."""
        from lmscope.widgets.dashboard import Dashboard  # widgets stay out of the torch side

        return Dashboard(self.run(text), inspector=self, **dashboard_kwargs)
