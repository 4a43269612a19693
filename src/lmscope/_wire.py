"""The one binary format every array travels in: `{"data": bytes, "dtype": str, "shape": [..]}`.

ipywidgets lifts the `data` memoryview out of the JSON into a binary buffer, so no array ever
becomes a JSON list. Kinds choose the narrowest faithful type:

- "prob": probabilities in [0, 1] as float16 (≈3 significant digits everywhere, including the
  tiny weights that decide which attention lines are drawn; uint8 would flatten those to 0).
- "unit": values in [0, 1] (colours, drawing strengths, pooled heatmaps) as uint8, x*255
  rounded: 1/510 is plenty for what the eye tells apart, at half float16's bytes.
- "byte": values already in 0..255 as uint8.
- "activation": float16. "table": float32 for small tables that must stay exact.
- "index": integers narrowed to int32 (int64 does not exist in JS typed arrays we use).
- "auto": float16/float32 kept, float64 → float32, int64 → int32, bool → uint8.

`js/lib/wire.js` decodes it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

Kind = Literal["auto", "prob", "unit", "byte", "activation", "table", "index"]
KINDS: tuple[str, ...] = ("auto", "prob", "unit", "byte", "activation", "table", "index")

_FLOAT_KIND = {"prob": np.float16, "activation": np.float16, "table": np.float32}


def as_numpy(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach()
        if array.dtype == torch.bfloat16:  # numpy has no bfloat16
            array = array.float()
        return array.cpu().numpy()
    return np.asarray(array)


def narrow(array: np.ndarray, kind: Kind = "auto") -> np.ndarray:
    if kind in _FLOAT_KIND:
        return array.astype(_FLOAT_KIND[kind], copy=False)
    if kind == "unit":
        values = np.asarray(array, dtype=np.float32)
        if values.size and not (np.all(values >= -1e-6) and np.all(values <= 1 + 1e-6)):
            raise ValueError("a 'unit' array must hold values in [0, 1]")
        return np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8)
    if kind == "byte":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError("a 'byte' array must hold values in 0..255")
        return array.astype(np.uint8, copy=False)
    if kind == "auto" and np.issubdtype(array.dtype, np.integer) and array.dtype.itemsize <= 4:
        return array  # uint8/int16/int32 already travel as they are
    if kind == "index" or (kind == "auto" and np.issubdtype(array.dtype, np.integer)):
        if array.size and (array.min() < -(2**31) or array.max() >= 2**31):
            raise ValueError("integer values do not fit the wire's int32")
        return array.astype(np.int32, copy=False)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        return array if array.dtype in (np.float16, np.float32) else array.astype(np.float32)
    raise TypeError(f"cannot send arrays of dtype {array.dtype}")


def encode(array: Any, kind: Kind = "auto") -> dict[str, Any]:
    """A tensor or array (any device) as the wire envelope, little-endian, C order."""
    if kind not in KINDS:
        raise ValueError(f"unknown wire kind {kind!r}; choose one of {', '.join(KINDS)}")
    values = np.ascontiguousarray(narrow(as_numpy(array), kind))
    if values.dtype.byteorder == ">":
        values = values.astype(values.dtype.newbyteorder("<"))
    return {
        "data": memoryview(values.tobytes()),
        "dtype": values.dtype.name,
        "shape": list(values.shape),
    }


def decode(envelope: dict[str, Any]) -> np.ndarray:
    """The inverse of `encode` (for tests and for reading exported state)."""
    data = envelope["data"]
    raw = bytes(data) if not isinstance(data, bytes) else data
    return np.frombuffer(raw, dtype=np.dtype(envelope["dtype"]).newbyteorder("<")).reshape(
        envelope["shape"]
    )


def nbytes(value: Any) -> int:
    """Bytes a trait value costs on the wire: binary buffers plus a JSON estimate of the rest."""
    if isinstance(value, memoryview | bytes | bytearray):
        return memoryview(value).nbytes
    if isinstance(value, dict):
        return sum(nbytes(v) + len(str(k)) + 4 for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(nbytes(v) + 1 for v in value) + 2
    return len(repr(value))
