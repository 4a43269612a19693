"""TokenColors without a browser: what it syncs (uint8 colours, an int32 neighbour table for
the shown layer) and its checks."""

from __future__ import annotations

import numpy as np
import pytest

from _models import tiny_ids, tiny_inspector
from lmscope import _wire
from lmscope.errors import InputError, OutOfRangeError
from lmscope.widgets.token_colors import TokenColors


def test_widget_state_and_errors():
    tr = tiny_inspector("llama").run(tiny_ids(12))
    w = TokenColors(tr, layer=1, n_neighbors=3)
    # every row of every layer: slices (row, layer) in order
    assert w.colors["dtype"] == "uint8" and w.colors["shape"] == [9, 12, 3]
    assert w.color_slices == [[r, layer] for r in range(3) for layer in range(3)]
    assert w.colors_at("mlp_out", 2).tolist() == _wire.decode(w.colors)[5].tolist()
    assert w.neighbors["dtype"] == "int32" and w.neighbors["shape"] == [3, 12, 3]
    assert w.neighbors_layer == 1 and w.titles[0] == "attention output"
    assert isinstance(w.colors["data"], memoryview)
    w.layer = 2
    assert w.neighbors_layer == 2
    assert np.array_equal(
        np.frombuffer(bytes(w.neighbors["data"]), np.int32).reshape(3, 12, 3), w.neighbor_table(2)
    )
    with pytest.raises(OutOfRangeError, match=r"0\.\.2"):
        w.layer = 3
    with pytest.raises(OutOfRangeError, match=r"0\.\.11"):
        w.token = 12
    w.token = -1
    with pytest.raises(InputError, match="streams"):
        TokenColors(tr, streams=("resid_mid",))
    with pytest.raises(InputError, match="n_neighbors must be"):
        TokenColors(tr, n_neighbors=0)
    with pytest.raises(OutOfRangeError):
        TokenColors(tr, layer=5)
    one = TokenColors(tr, streams=("mlp_out",))
    assert one.colors["shape"] == [3, 12, 3] and one.color_slices == [[0, 0], [0, 1], [0, 2]]
    with pytest.raises(InputError, match="stream"):
        one.colors_at("attn_out", 0)
