"""What the two attention widgets share: the bundle they load, an `error` trait shown under the
view, and the binary array envelope `{data, dtype, shape}` (never JSON lists).

Written against the widget-platform contract while that platform is being built; once
`lmscope.widgets.base` and `lmscope._wire` land, these become thin aliases of them.
"""

from __future__ import annotations

import contextlib
import pathlib
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from lmscope.errors import LmscopeError

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"


def envelope(array: np.ndarray) -> dict[str, Any]:
    """One array as a binary buffer plus its dtype and shape (little-endian, C order)."""
    a = np.ascontiguousarray(array)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return {"data": memoryview(a.tobytes()), "dtype": str(a.dtype), "shape": list(a.shape)}


def synced_bytes(value: Any) -> int:
    """Bytes a trait value costs on the wire: binary buffers plus a JSON estimate of the rest."""
    if isinstance(value, memoryview | bytes | bytearray):
        return memoryview(value).nbytes
    if isinstance(value, dict):
        return sum(synced_bytes(v) + len(str(k)) + 4 for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(synced_bytes(v) + 1 for v in value) + 2
    return len(repr(value))


class AttentionWidget(anywidget.AnyWidget):
    error = t.Unicode("").tag(sync=True)

    @contextlib.contextmanager
    def reporting_errors(self):
        """Show a failed update under the view instead of losing it in the kernel log."""
        try:
            yield
        except (LmscopeError, ValueError, IndexError, MemoryError) as err:
            self.error = f"{type(err).__name__}: {err}"

    def synced_bytes(self) -> int:
        """What this widget's state costs on the wire right now."""
        return sum(synced_bytes(getattr(self, name)) for name in self.keys)
