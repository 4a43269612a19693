"""Inspector: a model, its tokenizer and a device; runs prompts and returns Traces."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from lmscope import architectures, capture, memory, tokens
from lmscope.default_model import DEFAULT_MODEL_NAME, ensure_converted
from lmscope.errors import InputError, MemoryBudgetError, UnknownModelError
from lmscope.trace import Trace

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


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


class Inspector:
    """Wraps a causal LM (and tokenizer) so prompts can be run and inspected."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer=None,
        *,
        name: str | None = None,
        memory_budget: int | str | None = None,
    ) -> None:
        self.parts = architectures.resolve(model)
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.config = model.config
        #: bytes (or "6GB"); None means LMSCOPE_MEMORY_BUDGET or 80% of free device memory
        self.memory_budget = memory_budget

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name: str | os.PathLike | None = None,
        *,
        device: str | torch.device | None = "auto",
        dtype: torch.dtype | str | None = None,
        trust_remote_code: bool = False,
        memory_budget: int | str | None = None,
    ) -> Inspector:
        """Load a Hugging Face causal LM by id or folder; no name means the bundled SmolLM2-135M."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if name is None:
            where, local_only = str(ensure_converted()), True
            display = DEFAULT_MODEL_NAME
        else:
            where, local_only = _locate(str(name))
            display = str(name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                where, local_files_only=local_only, trust_remote_code=trust_remote_code
            )
            model = AutoModelForCausalLM.from_pretrained(
                where,
                dtype=dtype if dtype is not None else "auto",
                local_files_only=local_only,
                trust_remote_code=trust_remote_code,
            )
        except OSError as err:
            raise UnknownModelError(f"could not load model {display!r}: {err}") from err
        model.to(pick_device(device)).eval()
        return cls(model, tokenizer, name=display, memory_budget=memory_budget)

    # -- facts --------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

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
        config = self.config
        width = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
        return int(width or 4 * config.hidden_size)

    def budget(self) -> int:
        return memory.budget_bytes(self.device, self.memory_budget)

    def estimate_run_bytes(self, n_tokens: int) -> int:
        return memory.estimate_run_bytes(
            n_tokens=n_tokens,
            n_layers=self.n_layers,
            d_model=self.config.hidden_size,
            d_mlp=self.d_mlp,
            n_heads=self.n_heads,
            vocab=self.vocab_size,
            element_size=next(self.model.parameters()).element_size(),
        )

    def __repr__(self) -> str:
        return (
            f"Inspector({self.name}: {self.n_layers} layers, {self.n_heads} heads, "
            f"on {self.device})"
        )

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
        prompt_length=None,
        generated_text="",
    ) -> Trace:
        """Run one forward pass and capture everything the views need."""
        ids = self.encode(text_or_ids)
        budget = self.budget()
        memory.check(
            self.estimate_run_bytes(ids.numel()),
            budget,
            f"capturing {ids.numel()} tokens on {self.device}",
            "Use a shorter text, or a larger budget if the device really has the room.",
        )
        display, texts, groups = self._strings(ids)
        batch = ids.to(self.device)[None]
        try:
            # no_grad rather than inference_mode: users feed trace tensors back into modules
            with self._eval_mode(), torch.no_grad(), capture.recording(self.parts) as rec:
                output = self.model(input_ids=batch, use_cache=False)
        except torch.OutOfMemoryError as err:
            del err  # its traceback pins the half-built activations
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise MemoryBudgetError(
                f"{self.device} ran out of memory capturing {ids.numel()} tokens "
                f"(estimated {memory.human(self.estimate_run_bytes(ids.numel()))}). Use a "
                "shorter text or free other tensors; the inspector is still usable."
            ) from None
        return Trace(
            parts=self.parts,
            recording=rec,
            input_ids=ids,
            logits=output.logits[0],
            tokens=display,
            token_texts=texts,
            word_groups=groups,
            prompt_length=prompt_length,
            generated_text=generated_text,
            model_name=self.name,
            memory_budget=budget,
            tokenizer=self.tokenizer,
        )

    def generate(
        self,
        prompt: str | Sequence[int] | torch.Tensor,
        max_new_tokens: int = 20,
        **generate_kwargs,
    ) -> Trace:
        """Greedy continuation (unless generate_kwargs say otherwise), traced over prompt + continuation."""
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
        batch = ids.to(self.device)[None]
        with self._eval_mode(), torch.no_grad():
            out = self.model.generate(
                input_ids=batch,
                attention_mask=torch.ones_like(batch),
                max_new_tokens=max_new_tokens,
                pad_token_id=pad,
                **generate_kwargs,
            )[0]
        new_ids = out[ids.numel() :]
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True) if self.tokenizer else ""
        return self.run(out.cpu(), prompt_length=ids.numel(), generated_text=text)

    def show(self, text: str, **dashboard_kwargs):
        """Run `text` and return a `lmscope.Dashboard` of it, with a prompt box for new runs."""
        from lmscope.widgets.dashboard import Dashboard  # widgets stay out of the torch side

        return Dashboard(self.run(text), self, **dashboard_kwargs)
