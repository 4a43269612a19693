import assert from "node:assert/strict";
import { test } from "node:test";
import { cellAt, gridLayout, maxAbs, share, shownSources } from "../parts/attribution_grid.js";

test("grid layout has a column per head, then MLP and total (bias only when present)", () => {
  const plain = gridLayout(30, 9);
  assert.deepEqual(
    plain.columns.map((c) => c.kind),
    [...Array(9).fill("head"), "mlp", "total"],
  );
  const biased = gridLayout(3, 4, { bias: true });
  assert.deepEqual(
    biased.columns.map((c) => c.kind),
    ["head", "head", "head", "head", "bias", "mlp", "total"],
  );
  assert.equal(plain.height, plain.headerHeight + 30 * plain.cellH);
  assert.ok(plain.columns.at(-1).x + plain.columns.at(-1).w === plain.width);
});

test("cells are found under the pointer, and nothing in the gaps or the header", () => {
  const g = gridLayout(30, 9);
  const head4 = g.columns[4];
  assert.deepEqual(cellAt(g, head4.x + 1, g.headerHeight + 23 * g.cellH + 1), {
    kind: "head",
    layer: 23,
    head: 4,
  });
  const mlp = g.columns[9];
  assert.deepEqual(cellAt(g, mlp.x + 2, g.headerHeight + 2), { kind: "mlp", layer: 0, head: -1 });
  assert.equal(cellAt(g, mlp.x - 2, g.headerHeight + 2), null); // the gap before the MLP column
  assert.equal(cellAt(g, head4.x + 1, 2), null); // the header
  assert.equal(cellAt(g, head4.x + 1, g.height + 1), null);
});

test("colour scale and share text", () => {
  assert.equal(maxAbs([1, -3], new Float32Array([2])), 3);
  assert.equal(maxAbs([0, 0]), 1);
  assert.equal(share(-1.1254), "\u22121.125");
  assert.equal(share(0.5), "+0.500");
});

test("a long row shows its largest sources and the attributed token, in order", () => {
  const values = Float32Array.from({ length: 10 }, (_, i) => (i % 3 === 0 ? -i : i / 10));
  assert.deepEqual(shownSources(values, 4, 8), [0, 1, 2, 3, 4]); // short: every one up to at
  assert.deepEqual(shownSources(values, 9, 4), [3, 6, 8, 9]); // |-6|, |-3|, 0.8, then at
  assert.deepEqual(shownSources(new Float32Array(5), 4, 3), [0, 1, 4]); // ties: earliest
});
