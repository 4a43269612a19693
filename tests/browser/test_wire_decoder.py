"""js/lib/wire.js in Chromium: every dtype the wire sends decodes bit for bit, from each
container Jupyter, Colab and saved pages hand over, at an odd byte offset."""

from __future__ import annotations

import pathlib
import struct

import numpy as np
import pytest

from lmscope import _wire

pytestmark = pytest.mark.browser
WIRE_JS = pathlib.Path(__file__).resolve().parents[2] / "js" / "lib" / "wire.js"


def _load_wire(page):
    page.set_content("<html><body></body></html>")
    page.evaluate(
        """async (code) => {
          const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
          window.wire = await import(url);
        }""",
        WIRE_JS.read_text(),
    )


def test_wire_round_trips_bit_exactly_into_javascript(page):
    _load_wire(page)
    rng = np.random.default_rng(0)
    specials = np.array([0, -0.0, 1, -2, 65504, 6e-8, np.inf, -np.inf], dtype=np.float16)
    cases = {
        "float16": np.concatenate([rng.standard_normal(500).astype(np.float16), specials]),
        "uint8": rng.integers(0, 256, 300, dtype=np.uint8),
        "float32": rng.standard_normal(300).astype(np.float32),
        "int32": rng.integers(-(2**31), 2**31 - 1, 300, dtype=np.int64),
    }
    for dtype, values in cases.items():
        env = _wire.encode(values)
        assert env["dtype"] == dtype
        padded = b"\x00" * 3 + bytes(env["data"])  # an odd offset, as a DataView into a message
        for container in ("dataview", "uint8array", "arraybuffer", "fallback"):
            got = page.evaluate(
                """([bytes, dtype, shape, container]) => {
                  const all = new Uint8Array(bytes);
                  const data = container === "dataview" ? new DataView(all.buffer, 3)
                    : container === "uint8array" ? all.subarray(3) : all.buffer.slice(3);
                  if (container === "fallback") {
                    return Array.from(window.wire.decodeHalf(data, false), (v) => Object.is(v, -0) ? "-0" : v);
                  }
                  const out = window.wire.decode({ data, dtype, shape });
                  return Array.from(out, (v) => Object.is(v, -0) ? "-0" : v);
                }""",
                [list(padded), dtype, env["shape"], container],
            )
            if container == "fallback" and dtype != "float16":
                continue
            expected = values.astype(dtype).astype(np.float64 if dtype != "float16" else np.float32)
            got = np.array([-0.0 if v == "-0" else v for v in got], dtype=expected.dtype)
            # compare bits, so -0.0 and infinities count too
            assert got.tobytes() == expected.tobytes(), (dtype, container)
    assert struct.pack("<e", 65504) == np.float16(65504).tobytes()
