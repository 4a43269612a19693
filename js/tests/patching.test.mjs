import assert from "node:assert/strict";
import { test } from "node:test";
import { cellAt, cellSize, effectColor } from "../parts/patching.js";

test("cell size stays readable and bounded", () => {
  assert.deepEqual(cellSize(30, 20), { w: 38, h: 14 });
  assert.deepEqual(cellSize(3, 500), { w: 12, h: 22 });
});

test("cellAt maps canvas points to cells and nothing outside them", () => {
  const size = { w: 10, h: 5 };
  assert.deepEqual(cellAt(34, 0, 3, 4, size), [0, 0]);
  assert.deepEqual(cellAt(34 + 39, 14, 3, 4, size), [2, 3]);
  assert.equal(cellAt(20, 2, 3, 4, size), null); // the layer labels
  assert.equal(cellAt(34 + 40, 2, 3, 4, size), null);
  assert.equal(cellAt(40, 15, 3, 4, size), null);
});

test("effects use the diverging scale, clamped; unpatched cells are grey", () => {
  assert.equal(effectColor(0), "rgb(255,255,255)");
  assert.equal(effectColor(1), "rgb(178,24,43)");
  assert.equal(effectColor(3), effectColor(1));
  assert.equal(effectColor(-1), "rgb(33,102,172)");
  assert.equal(effectColor(Number.NaN), "rgb(200,200,200)");
});
