"""What the attention and lens views share beyond the platform base: kept as names so their
modules read the same; everything here is the platform's own code."""

from __future__ import annotations

from typing import Any

import numpy as np

from lmscope import _wire
from lmscope.widgets.base import STATIC, LmscopeWidget

__all__ = ["STATIC", "AttentionWidget", "envelope", "synced_bytes"]


def envelope(array: np.ndarray) -> dict[str, Any]:
    """An already-narrowed array as the wire envelope (its dtype travels as it is)."""
    return _wire.encode(array, "auto")


synced_bytes = _wire.nbytes
AttentionWidget = LmscopeWidget
