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
import { parseFont, SvgContext, splitAlpha, TooManyMarks } from "../lib/vector.js";

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

test("a canvas drawing recorded as SVG marks: shapes, text as escaped text, transforms", () => {
  const canvas = { width: 200, height: 100 };
  // a 2x canvas shown at 100 x 50 CSS px, placed at (10, 20) in the figure
  const ctx = new SvgContext({ canvas, base: [0.5, 0, 0, 0.5, 10, 20] });
  ctx.setTransform(2, 0, 0, 2, 0, 0); // what a view does for devicePixelRatio 2
  ctx.fillStyle = "rgba(255, 0, 0, 0.5)";
  ctx.fillRect(1, 2, 30, 10);
  ctx.font = "bold 11px Menlo, monospace";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillStyle = "#000";
  ctx.fillText("<img src=x onerror=alert(1)>", 5, 6);
  ctx.strokeStyle = "#00f";
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.moveTo(0, 0);
  ctx.lineTo(10, 10);
  ctx.stroke();
  const svg = ctx.svg();
  assert.match(
    svg,
    /<rect x="11" y="22" width="30" height="10" fill="rgb\(255,0,0\)" fill-opacity="0.5"\/>/,
  );
  assert.match(
    svg,
    /<text x="15" y="26" fill="#000" font-family="Menlo, monospace" font-size="11" font-weight="bold" text-anchor="middle" dominant-baseline="central"/,
  );
  assert.ok(svg.includes(">&lt;img src=x onerror=alert(1)&gt;</text>"));
  assert.ok(!svg.includes("<img"));
  assert.match(svg, /<path d="M10 20L20 30" stroke="#00f" stroke-width="2" fill="none"\/>/);
  ctx.clearRect(0, 0, 100, 50); // the whole canvas: the picture starts again
  assert.equal(ctx.svg(), "");
  ctx.save();
  ctx.globalAlpha = 0;
  ctx.fillRect(0, 0, 1, 1); // invisible: not written
  ctx.restore();
  assert.equal(ctx.svg(), "");
});

test("canvas fonts split into SVG font attributes", () => {
  assert.deepEqual(parseFont("11px monospace"), {
    size: 11,
    family: "monospace",
    weight: null,
    style: null,
  });
  assert.deepEqual(parseFont("italic bold 13.5px/1.2 'A B', serif"), {
    size: 13.5,
    family: "'A B', serif",
    weight: "bold",
    style: "italic",
  });
  assert.deepEqual(splitAlpha("rgba(1, 2, 3, 0.25)"), ["rgb(1,2,3)", 0.25]);
  assert.deepEqual(splitAlpha("#abcdef"), ["#abcdef", 1]);
});

test("a recorder stops past its limit of marks (the canvas is then embedded as an image)", () => {
  const ctx = new SvgContext({ canvas: { width: 10, height: 10 }, limit: 3 });
  ctx.fillRect(0, 0, 1, 1);
  ctx.fillRect(1, 0, 1, 1);
  ctx.fillRect(2, 0, 1, 1);
  assert.throws(() => ctx.fillRect(3, 0, 1, 1), TooManyMarks);
});
