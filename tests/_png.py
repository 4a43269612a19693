"""PNG helpers for the figure tests: size and chunks read from the bytes, pixels decoded by
Chromium (the tests already have one), so they need no imaging library."""

from __future__ import annotations

import base64
import struct

import numpy as np

_DECODE = """
async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  let text = "";
  for (let i = 0; i < data.length; i += 0x8000) text += String.fromCharCode(...data.subarray(i, i + 0x8000));
  return [bitmap.width, bitmap.height, btoa(text)];
}
"""


def read_png(page, data: bytes) -> np.ndarray:
    """The pixels as an [height, width, 4] uint8 array."""
    width, height, b64 = page.evaluate(_DECODE, base64.b64encode(data).decode("ascii"))
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(height, width, 4)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def chunk_kinds(data: bytes) -> list[bytes]:
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds
