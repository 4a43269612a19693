import assert from "node:assert/strict";
import { test } from "node:test";
import { bytesOf, decode, decodeArray, decodeHalf, halfToFloat, row } from "../lib/wire.js";

const halfBits = new Uint16Array([0x0000, 0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0xfc00, 0x3555]);
const halfValues = [0, 1, -2, 65504, 2 ** -24, Infinity, -Infinity, 0.333251953125];

test("half floats decode exactly, with and without Float16Array", () => {
  assert.deepEqual([...halfBits].map(halfToFloat), halfValues);
  assert.deepEqual([...decodeHalf(halfBits.buffer, false)], halfValues);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
});

test("every container Jupyter or Colab may hand over is read at its offset", () => {
  const backing = new Uint8Array(16);
  backing.set(new Uint8Array(new Float32Array([1.5, -2.25]).buffer), 4);
  const env = (data) => ({ data, dtype: "float32", shape: [2] });
  const expected = [1.5, -2.25];
  assert.deepEqual([...decode(env(new DataView(backing.buffer, 4, 8)))], expected);
  assert.deepEqual([...decode(env(backing.subarray(4, 12)))], expected);
  assert.deepEqual([...decode(env(backing.buffer.slice(4, 12)))], expected);
  assert.equal(bytesOf(backing.subarray(4, 12)).byteLength, 8);
});

test("odd offsets are copied so typed arrays stay aligned", () => {
  const backing = new Uint8Array(9);
  backing.set(new Uint8Array(new Int32Array([7, -9]).buffer), 1);
  assert.deepEqual(
    [...decode({ data: backing.subarray(1, 9), dtype: "int32", shape: [2] })],
    [7, -9],
  );
});

test("shape, scale and rows", () => {
  const arr = decodeArray({
    data: new Uint8Array([1, 2, 3, 4, 5, 6]),
    dtype: "uint8",
    shape: [2, 3],
    scale: 255,
  });
  assert.equal(arr.scale, 255);
  assert.deepEqual([...row(arr, 1)], [4, 5, 6]);
  assert.throws(
    () => decodeArray({ data: new Uint8Array(5), dtype: "uint8", shape: [2, 3] }),
    RangeError,
  );
  assert.throws(
    () => decode({ data: new Uint8Array(8), dtype: "complex64", shape: [1] }),
    TypeError,
  );
  assert.equal(decode(null), null);
});
