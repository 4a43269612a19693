import assert from "node:assert/strict";
import { test } from "node:test";
import { figureFileName } from "../lib/download.js";
import {
  attrs,
  escapeXml,
  figureSize,
  svgDocument,
  textSvg,
  transparent,
  viewBoxSize,
} from "../lib/figure.js";

test("token markup stays text in a figure", () => {
  const t = textSvg(1, 2, '<img src=x onerror="a">&amp;');
  assert.match(t, /&lt;img src=x onerror=&quot;a&quot;&gt;&amp;amp;<\/text>$/);
  assert.ok(!t.includes("<img"));
  assert.equal(escapeXml("a\u0001b"), "a\ufffdb"); // not allowed in XML
  assert.equal(escapeXml("😀"), "😀");
  assert.equal(attrs({ x: 1.2345, y: null, fill: '"' }), ' x="1.23" fill="&quot;"');
});

test("figure size: natural, scaled, or one side given keeping the aspect", () => {
  assert.deepEqual(figureSize(200, 100), { width: 200, height: 100 });
  assert.deepEqual(figureSize(200, 100, { scale: 2 }), { width: 400, height: 200 });
  assert.deepEqual(figureSize(200, 100, { width: 500 }), { width: 500, height: 250 });
  assert.deepEqual(figureSize(200, 100, { height: 50 }), { width: 100, height: 50 });
  const svg = svgDocument({ naturalWidth: 200, naturalHeight: 100, width: 400, content: "" });
  assert.match(svg, /width="400" height="200" viewBox="0 0 200 100"/);
  assert.deepEqual(viewBoxSize(svg), { width: 200, height: 100 });
});

test("transparent colours and file names", () => {
  assert.ok(transparent("rgba(0, 0, 0, 0)"));
  assert.ok(!transparent("rgb(0, 0, 0)"));
  assert.equal(
    figureFileName("AttentionLines · SmolLM2 · 14 tokens", "png"),
    "AttentionLines-SmolLM2-14-tokens.png",
  );
  assert.equal(figureFileName("", "svg"), "lmscope-figure.svg");
});
