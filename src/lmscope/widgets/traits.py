"""A trait for arrays that validates, narrows and serializes itself to the wire envelope."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from lmscope import _wire


class WireArray(t.TraitType):
    """Holds an envelope; assigning a tensor or ndarray encodes it with the trait's kind.

    `WireArray(kind="prob").tag(sync=True)`: the value on the Python side is already the
    envelope, so `get_state` hands ipywidgets a memoryview it sends as a binary buffer.
    """

    info_text = "an array (torch tensor or numpy array) or a wire envelope"

    def __init__(self, kind: _wire.Kind = "auto", **kwargs: Any) -> None:
        self.kind = kind
        kwargs.setdefault("default_value", None)
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)

    def validate(self, obj: Any, value: Any) -> dict | None:
        if value is None:
            return None
        if isinstance(value, dict) and {"data", "dtype", "shape"} <= value.keys():
            return value
        try:
            return _wire.encode(value, self.kind)
        except (TypeError, ValueError) as err:
            raise t.TraitError(f"{self.name}: {err}") from None

    @staticmethod
    def to_numpy(envelope: dict | None) -> np.ndarray | None:
        return None if envelope is None else _wire.decode(envelope)
