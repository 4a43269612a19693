// The views' pure parts: layout and drawing decisions checked without a browser.
import assert from "node:assert/strict";
import { test } from "node:test";
import { choicesKey, parseLike } from "../lib/controls.js";
import {
  cellText,
  colorRamp,
  gridColumns,
  maxAbsOf,
  paintCells,
  pooledSpan,
  tipText,
} from "../parts/heatmap.js";
import {
  cellContent,
  columnsToFetch,
  emptyStage,
  fitText,
  internStrings,
  lensRows,
  mergeColumns,
  pct,
  rankText,
  tipContent,
  visibleColumns,
} from "../parts/lens.js";
import {
  bucketLines,
  focusText,
  formatValue,
  hitToken,
  indexLines,
  linesOf,
  partners,
  sliceName,
  staleControls,
  visibleRows,
} from "../parts/lines.js";
import { colorAt, infoText, LINE, neighborsOf, reflow, tokenAt } from "../parts/reflow.js";
import { chipTitle, infoText as tokenInfo, nextTokens } from "../parts/tokens.js";

// lines: query -> key, strength 0..255; 4 tokens
const LINES = {
  query: Uint16Array.from([0, 1, 1, 2, 2, 3, 3]),
  key: Uint16Array.from([0, 0, 1, 0, 2, 0, 3]),
  strength: Uint8Array.from([255, 200, 55, 10, 245, 128, 127]),
  value: Float32Array.from([1, 0.78, 0.22, 0.04, 0.96, 0.5, 0.5]),
};
const IDX = indexLines(LINES, 4);

test("lines are indexed by query and by key", () => {
  assert.deepEqual(linesOf(IDX, { side: "q", i: 2 }), [3, 4]);
  assert.deepEqual(linesOf(IDX, { side: "k", i: 0 }), [0, 1, 3, 5]);
  assert.deepEqual(Array.from(IDX.byQ), [0, 1, 3, 5, 7]);
});

test("only the lines touching the rows on screen are drawn, the focused ones on top", () => {
  const all = bucketLines(LINES, IDX, { first: 0, last: 3, cut: 0, focus: null, buckets: 4 });
  assert.equal(all.buckets.flat().length, 7);
  assert.deepEqual(all.buckets[3].sort(), [0, 1, 4]); // strength >= 192
  const cut = bucketLines(LINES, IDX, { first: 0, last: 3, cut: 100, focus: null, buckets: 4 });
  assert.equal(cut.buckets.flat().length, 5); // 55 and 10 are under the cut
  // rows 3..3 on screen: lines of query 3, and lines into key 3 from queries off screen
  const part = bucketLines(LINES, IDX, { first: 3, last: 3, cut: 0, focus: null, buckets: 4 });
  assert.deepEqual(part.buckets.flat().sort(), [5, 6]);
  // a focused token off screen still has its lines drawn
  const focus = { side: "q", i: 1 };
  const hot = bucketLines(LINES, IDX, { first: 3, last: 3, cut: 0, focus, buckets: 4 });
  assert.deepEqual(hot.hot.sort(), [1, 2]);
});

test("a focused token's partners, status line and tooltips", () => {
  assert.deepEqual(
    [...partners(LINES, IDX, { side: "q", i: 1 })],
    [
      [0, 1],
      [1, 2],
    ],
  );
  const tokens = ["a", "b", "c", "d"];
  assert.equal(
    focusText(LINES, IDX, { side: "q", i: 1 }, tokens, "prob"),
    "b (1) attends to: a (0) 0.780, b (1) 0.220",
  );
  assert.match(
    focusText(LINES, IDX, { side: "k", i: 3 }, tokens, "prob"),
    /^d \(3\) is attended by: d \(3\)/,
  );
  assert.equal(formatValue(Number.NEGATIVE_INFINITY, "score"), "masked");
  assert.equal(formatValue(1.23456, "score"), "1.23");
});

test("stale controls, slice names, rows in view and hits", () => {
  const of = { layer: 1, layer_end: 1, head: "mean" };
  assert.deepEqual(
    staleControls(of, (n) => ({ layer: 1, layer_end: 2, head: "mean" })[n]),
    ["layer_end"],
  );
  assert.equal(sliceName(of), "1-1:mean");
  assert.deepEqual(visibleRows(0, 100, 50, 18), { first: 0, last: 6 });
  assert.deepEqual(visibleRows(180, 100, 12, 18), { first: 9, last: 11 });
  const at = { scrollTop: 0, width: 700, rows: 10, rowHeight: 18, labelWidth: 150 };
  assert.deepEqual(hitToken({ ...at, x: 10, y: 4 + 18 * 2 + 1 }), { side: "q", i: 2 });
  assert.deepEqual(hitToken({ ...at, x: 690, y: 5 }), { side: "k", i: 0 });
  assert.equal(hitToken({ ...at, x: 350, y: 5 }), null);
  assert.equal(hitToken({ ...at, x: 10, y: 4 + 18 * 10 }), null);
});

test("heatmap pixels follow the ramp; differences take the negative ramp below zero", () => {
  const pos = colorRamp([255, 255, 255], [0, 0, 255]);
  const neg = colorRamp([255, 255, 255], [255, 0, 0]);
  assert.deepEqual(Array.from(pos.slice(0, 3)), [255, 255, 255]);
  assert.deepEqual(Array.from(pos.slice(255 * 3)), [0, 0, 255]);
  const px = paintCells(new Uint8ClampedArray(8), Uint8Array.from([0, 255]), 0, 2, { pos, neg });
  assert.deepEqual(Array.from(px), [255, 255, 255, 255, 0, 0, 255, 255]);
  const diff = paintCells(new Uint8ClampedArray(4), Float32Array.from([-0.5]), 0, 1, {
    pos,
    neg,
    diff: true,
    maxAbs: 0.5,
  });
  assert.deepEqual(Array.from(diff), [255, 0, 0, 255]);
  assert.equal(maxAbsOf(Float32Array.from([0.1, -0.3])), Float32Array.from([0.3])[0]);
  assert.equal(maxAbsOf([0, 0]), 1);
});

test("heatmap words: pooled spans, cell text, tooltips, columns", () => {
  assert.deepEqual(pooledSpan(0, 2, 5), [0, 2]);
  assert.deepEqual(pooledSpan(1, 2, 5), [2, 4]);
  assert.equal(cellText(0.4251, false), ".43");
  assert.equal(cellText(-0.1, true), "−.10");
  const tip = tipText({
    label: "L1 H2",
    tokens: ["a", "b"],
    r: 2,
    r2: 2,
    i: 1,
    j: 0,
    value: 128,
    diff: false,
  });
  assert.equal(tip, 'L1 H2\nquery "b" (1)\nkey   "a" (0)\nweight 0.502');
  assert.equal(gridColumns(9, 1), 4);
  assert.equal(gridColumns(9, 2), 3);
});

// lens: 2 layers, 2 positions, k = 2, one target
const LENS = {
  top: { post: Int32Array.from([0, 1, 1, 0, 2, 0, 0, 2]) },
  probs: { post: Float32Array.from([0.6, 0.3, 0.5, 0.2, 0.9, 0.05, 0.7, 0.1]) },
  tprobs: { post: Float32Array.from([0.001, 0.3, 0.02, 0.005]) },
  tranks: { post: Int32Array.from([1500, 0, 3, 12000]) },
  tokens: ["x", "y"],
  P: 2,
  k: 2,
  T: 1,
  strings: ["a", "b", "c"],
};

test("lens rows: the target row, then layers last to first, only decoded stages", () => {
  const rows = lensRows({ stage: "both", nLayers: 2, hasTargets: true, decoded: ["post"] });
  assert.deepEqual(rows, [
    { kind: "target" },
    { kind: "layer", layer: 1, stage: "post" },
    { kind: "layer", layer: 0, stage: "post" },
  ]);
  assert.equal(
    lensRows({ stage: "both", nLayers: 3, hasTargets: false, decoded: ["post", "mid"] }).length,
    6,
  );
  assert.deepEqual(visibleColumns(66 * 3 + 10, 300, 100, { cellW: 66, gutter: 58 }), {
    first: 3,
    last: 6,
  });
});

test("lens columns merged one range at a time equal the whole table", () => {
  const data = {
    ...LENS,
    L: 2,
    top: {},
    probs: {},
    tprobs: {},
    tranks: {},
    have: {},
    strings: ["a"],
    stringIndex: new Map([["a", 0]]),
  };
  emptyStage(data, "post");
  const state = { stage: "post", layer: 1, target: 0, targetString: "c" };
  const cell = (p) => cellContent(data, { kind: "layer", layer: 1, stage: "post" }, p, state);
  assert.deepEqual(cell(0), { prob: 0, text: "…", isTarget: false, pending: true });
  assert.deepEqual(columnsToFetch(data, ["post"], 0, 1), { start: 0, stop: 2 });
  // column 1 arrives first, with its own string table ["b", "a", "c"]
  const pick = (arr, width, p) =>
    [0, 1].flatMap((l) => [...arr.slice((l * 2 + p) * width, (l * 2 + p + 1) * width)]);
  const remap = internStrings(data, ["b", "a", "c"]);
  const local = (i) => ["b", "a", "c"].indexOf(LENS.strings[i]);
  mergeColumns(
    data,
    "post",
    [1],
    {
      top: Int32Array.from(pick(LENS.top.post, 2, 1).map(local)),
      probs: Float32Array.from(pick(LENS.probs.post, 2, 1)),
      tprobs: Float32Array.from(pick(LENS.tprobs.post, 1, 1)),
      tranks: Int32Array.from(pick(LENS.tranks.post, 1, 1)),
    },
    remap,
  );
  assert.deepEqual(columnsToFetch(data, ["post"], 0, 1), { start: 0, stop: 1 });
  assert.equal(columnsToFetch(data, ["post"], 1, 1).start, 0); // on screen: none; a screen left: 0
  mergeColumns(
    data,
    "post",
    [0],
    {
      top: Int32Array.from(pick(LENS.top.post, 2, 0)),
      probs: Float32Array.from(pick(LENS.probs.post, 2, 0)),
      tprobs: Float32Array.from(pick(LENS.tprobs.post, 1, 0)),
      tranks: Int32Array.from(pick(LENS.tranks.post, 1, 0)),
    },
    internStrings(data, ["a", "b", "c"]),
  );
  assert.equal(columnsToFetch(data, ["post"], 0, 1), null);
  for (const p of [0, 1]) {
    for (const row of [
      { kind: "target" },
      { kind: "layer", layer: 0, stage: "post" },
      { kind: "layer", layer: 1, stage: "post" },
    ]) {
      assert.deepEqual(cellContent(data, row, p, state), cellContent(LENS, row, p, state));
    }
  }
  assert.deepEqual(data.strings, ["a", "b", "c"]);
});

test("lens cells and tooltips read the right entries", () => {
  const state = { stage: "post", layer: 1, target: 0, targetString: "c" };
  assert.deepEqual(cellContent(LENS, { kind: "layer", layer: 1, stage: "post" }, 0, state), {
    prob: LENS.probs.post[4],
    text: "c",
    isTarget: true,
  });
  assert.deepEqual(cellContent(LENS, { kind: "target" }, 1, state), {
    prob: LENS.tprobs.post[3],
    text: "#12k",
    isTarget: false,
  });
  assert.equal(cellContent(LENS, { kind: "target" }, 0, state).text, "2.0%");
  const tip = tipContent(LENS, { kind: "layer", layer: 0, stage: "post" }, 1, {
    stage: "post",
    nLayers: 2,
    target: 0,
    targets: ["c"],
  });
  assert.equal(tip.head, "L0 after block · after y (1)");
  assert.deepEqual(tip.rows, [
    ["b", "50%", false],
    ["a", "20%", false],
    ["c #0", "30%", true],
  ]);
  assert.equal(pct(0.0004), "4e-4");
  assert.equal(rankText(1500), "1.5k");
  assert.equal(
    fitText((s) => s.length * 10, "abcdef", 40),
    "abc…",
  );
});

test("text reflows in lines; newlines start one; hits find the token", () => {
  const lay = reflow((s) => s.length * 10, ["ab", " cd", "\nef", "g"], 70);
  assert.deepEqual(
    lay.cells.map((c) => [c.token, c.line, c.x, c.text]),
    [
      [0, 0, 0, "ab"],
      [1, 0, 22, " cd"],
      [2, 0, 54, "↵"],
      [2, 1, 0, "ef"],
      [3, 1, 22, "g"],
    ],
  );
  assert.equal(lay.height, 2 * LINE);
  assert.equal(tokenAt(lay, 25, 3), 1);
  assert.equal(tokenAt(lay, 5, LINE + 3), 2);
  assert.equal(tokenAt(lay, 500, 3), -1);
});

test("colours and neighbours are read from their flat tables", () => {
  const colors = Uint8Array.from({ length: 2 * 2 * 3 * 3 }, (_, i) => i);
  assert.deepEqual(colorAt(colors, { slice: 2, token: 2, seq: 3 }), [24, 25, 26]);
  const table = Int32Array.from([1, 2, 0, -1, 0, 1]);
  assert.deepEqual(neighborsOf(table, { s: 0, token: 1, k: 2, seq: 3 }), [0]);
  const tokens = ["a", "b", "c"];
  assert.equal(infoText({ tokens, hover: null, selected: 1 }), "selected: b  (#1)");
  assert.equal(
    infoText({ tokens, hover: { token: 0 }, near: [2], title: "MLP output", layer: 4 }),
    "a (#0) — nearest in MLP output at layer 4:  c (#2)",
  );
});

test("token chips and controls", () => {
  assert.equal(chipTitle("a (1)", 1, 0.25), "a (1): p = 25.0% as predicted");
  assert.deepEqual(nextTokens(["x", "y"], Float32Array.from([0, 0, 0.5, 0.25]), 1, 2), [
    "x 50.0%",
    "y 25.0%",
  ]);
  assert.equal(tokenInfo(-1, []), "Click a token to see what the model predicts after it.");
  assert.equal(tokenInfo(2, ["a 5%"]), "after token 2: a 5%");
  assert.equal(parseLike(3, "4"), 4);
  assert.equal(parseLike("mean", "max"), "max");
  assert.notEqual(choicesKey([[1, "1"]]), choicesKey([[1, "2"]]));
});
