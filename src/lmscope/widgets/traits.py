"""Traits for arrays: each validates, narrows and serializes itself to the wire envelope."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets as t

from lmscope import _wire


def _is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and {"data", "dtype", "shape"} <= value.keys()


def _encode(name: str, value: Any, kind: _wire.Kind) -> dict:
    if _is_envelope(value):
        return value
    try:
        return _wire.encode(value, kind)
    except (TypeError, ValueError) as err:
        raise t.TraitError(f"{name}: {err}") from None


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
        return None if value is None else _encode(self.name, value, self.kind)

    @staticmethod
    def to_numpy(envelope: dict | None) -> np.ndarray | None:
        return None if envelope is None else _wire.decode(envelope)


class WireDict(t.TraitType):
    """A dict of named arrays that travel together in one message: `{stage: array}`, or a line
    list `{"query": ..., "key": ..., "of": {...}}`. Each array is encoded with `kinds[key]` (or
    `kind`); values that are not arrays (small JSON tags such as `of`) pass as they are."""

    info_text = "a dict of arrays (torch tensors, numpy arrays or wire envelopes)"

    def __init__(
        self, kind: _wire.Kind = "auto", kinds: dict[str, _wire.Kind] | None = None, **kwargs: Any
    ) -> None:
        self.kind = kind
        self.kinds = dict(kinds or {})
        kwargs.setdefault("default_value", {})
        super().__init__(**kwargs)

    def validate(self, obj: Any, value: Any) -> dict:
        if not isinstance(value, dict):
            self.error(obj, value)
        out = {}
        for key, item in value.items():
            is_array = _is_envelope(item) or isinstance(item, np.ndarray) or hasattr(item, "numpy")
            kind = self.kinds.get(key, self.kind)
            out[key] = _encode(f"{self.name}[{key!r}]", item, kind) if is_array else item
        return out
