import assert from "node:assert/strict";
import { test } from "node:test";
import {
  blendPoints,
  buildIndex,
  makeScale,
  nearest,
  niceTicks,
  toBytes,
  valueRange,
} from "../parts/norm_strips.js";

test("the scale puts layer 0 and the range's ends where the plot box says", () => {
  const s = makeScale(
    { nLayers: 3, yMin: 0, yMax: 2 },
    { left: 10, top: 5, width: 300, height: 100 },
  );
  assert.equal(s.x(-0.7), 10);
  assert.equal(s.x(2.7), 310);
  assert.equal(s.y(0), 105);
  assert.equal(s.y(2), 5);
});

test("ticks are round and cover the range", () => {
  assert.deepEqual(niceTicks(0.3, 2.9, 6), [0.5, 1, 1.5, 2, 2.5]);
  assert.deepEqual(niceTicks(-1, 1, 4), [-1, -0.5, 0, 0.5, 1]);
  assert.deepEqual(niceTicks(2, 2), [2]);
});

test("the value range skips non-finite norms and pads by 0.2", () => {
  const norms = Float32Array.from([1, Number.NaN, 3, -Number.POSITIVE_INFINITY, 2, 0]);
  // 2 layers x 3 positions, position 2 not drawn
  assert.deepEqual(valueRange(norms, 3, 2, [0, 1]), { yMin: 0.8, yMax: 2.2 }); // 3 is not drawn
  assert.deepEqual(valueRange(Float32Array.from([Number.NaN]), 1, 1, [0]), { yMin: 0, yMax: 1 });
});

test("every point is blended in order, later over earlier, at its opacity", () => {
  const w = 20;
  const h = 10;
  const buffer = new Float32Array(w * h * 4);
  const colors = [
    [255, 0, 0],
    [0, 0, 255],
  ];
  const points = (emit) => {
    emit(5, 5, 0);
    emit(5, 5, 1); // on top of the first
    emit(15, 5, 0);
    emit(Number.NaN, 5, 0); // not drawn
    emit(500, 5, 0); // off the canvas
  };
  const drawn = blendPoints(buffer, w, h, points, { radius: 2, colors, opacity: 0.5 });
  assert.equal(drawn, 3);
  const bytes = toBytes(buffer, new Uint8ClampedArray(buffer.length));
  const at = (x, y) => Array.from(bytes.slice((y * w + x) * 4, (y * w + x) * 4 + 4));
  const [r, , b, a] = at(5, 5);
  assert.ok(b > r && r > 0, `blue over red: ${at(5, 5)}`);
  assert.equal(a, Math.round(0.75 * 255)); // two layers of 0.5
  assert.deepEqual(at(15, 5).slice(0, 3), [255, 0, 0]);
  assert.equal(at(10, 0)[3], 0); // nothing between the points
});

test("the grid index finds the nearest point within reach, and nothing beyond it", () => {
  const pts = [
    [10, 10],
    [12, 10],
    [50, 40],
    [50, 40], // drawn later at the same place: wins the tie
  ];
  const index = buildIndex(
    (emit) => {
      for (const [i, [x, y]] of pts.entries()) emit(x, y, 100 + i);
    },
    {
      width: 64,
      height: 48,
    },
  );
  assert.equal(index.count, 4);
  assert.equal(nearest(index, 10.5, 10), 100);
  assert.equal(nearest(index, 11.6, 10.2), 101);
  assert.equal(nearest(index, 50, 40), 103);
  assert.equal(nearest(index, 30, 30), -1);
  assert.equal(nearest(index, 63.9, 47.9, 6), -1);
  // the same answers as a search over every point
  for (let i = 0; i < 200; i++) {
    const x = (i * 7.3) % 64;
    const y = (i * 3.1) % 48;
    let best = -1;
    let bestD = 36;
    pts.forEach(([px, py], j) => {
      const d = (px - x) ** 2 + (py - y) ** 2;
      if (d < bestD || (d === bestD && best >= 0)) {
        best = 100 + j;
        bestD = d;
      }
    });
    assert.equal(nearest(index, x, y), best, `at ${x}, ${y}`);
  }
});
