import assert from "node:assert/strict";
import { test } from "node:test";
import { diverging, rgb, sequential, sequentialCss } from "../lib/colors.js";
import { luminance, textOn } from "../lib/theme.js";
import { timeoutFor } from "../lib/request.js";

test("sequential map runs white to blue and clamps", () => {
  assert.deepEqual(sequential(0), [255, 255, 255]);
  assert.deepEqual(sequential(1), [33, 102, 172]);
  assert.deepEqual(sequential(7), sequential(1));
  const mid = sequential(0.5);
  assert.ok(mid[0] < 255 && mid[0] > 33);
});

test("diverging map is white at zero, blue below and red above", () => {
  assert.deepEqual(diverging(0), [255, 255, 255]);
  assert.deepEqual(diverging(-1), [33, 102, 172]);
  assert.deepEqual(diverging(1), [178, 24, 43]);
  assert.equal(rgb([1, 2, 3]), "rgb(1,2,3)");
});

test("text colour contrasts with its background", () => {
  assert.equal(textOn([255, 255, 255]), "#000");
  assert.equal(textOn([33, 102, 172]), "#fff");
  assert.ok(luminance([255, 255, 255]) > 0.99 && luminance([0, 0, 0]) === 0);
});

test("black or white text reaches WCAG AA contrast on any background in the RGB cube", () => {
  // an independent luminance, so textOn is not checked against itself
  const lum = (rgb) =>
    rgb
      .map((c) => {
        const s = c / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      })
      .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const ratio = (a, b) => (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  let worst = 99;
  for (let r = 0; r < 256; r += 15)
    for (let g = 0; g < 256; g += 15)
      for (let b = 0; b < 256; b += 15) {
        const fg = textOn([r, g, b]) === "#fff" ? 1 : 0;
        worst = Math.min(worst, ratio(lum([r, g, b]), fg));
      }
  assert.ok(worst >= 4.5, `worst contrast ${worst}`);
});

test("request timeouts grow with the data expected", () => {
  assert.equal(timeoutFor(0), 5000);
  assert.ok(timeoutFor(10_000_000) > 40_000);
});

test("the CSS form of the sequential map mixes blue into the theme's background", () => {
  assert.equal(
    sequentialCss(0.25),
    "color-mix(in srgb, rgb(33,102,172) 25%, var(--jp-layout-color0, #fff))",
  );
  assert.match(sequentialCss(3), / 100%, /);
  assert.match(sequentialCss(-1, "black"), / 0%, black\)$/);
});
