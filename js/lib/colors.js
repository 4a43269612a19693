// Colour maps shared by the views. Each returns [r, g, b] in 0..255.

const clamp = (x) => Math.min(1, Math.max(0, x));
const mix = (a, b, t) => a.map((v, i) => Math.round(v + (b[i] - v) * t));

const WHITE = [255, 255, 255];
const BLUE = [33, 102, 172];
const RED = [178, 24, 43];

/** Sequential white → blue for a probability in [0, 1]. */
export function sequential(p) {
  return mix(WHITE, BLUE, clamp(p));
}

/** Diverging blue ← white → red for a difference in [-1, 1]. */
export function diverging(d) {
  const t = Math.max(-1, Math.min(1, d));
  return t < 0 ? mix(WHITE, BLUE, -t) : mix(WHITE, RED, t);
}

/**
 * The sequential map as a CSS colour over the theme's background, so a probability of 0 is
 * the page itself in light and dark themes alike (needs CSS color-mix, any 2023+ browser).
 * @param {number} p probability in [0, 1]
 * @param {string} [base] CSS colour of zero
 */
export function sequentialCss(p, base = "var(--jp-layout-color0, #fff)") {
  const pct = Math.round(clamp(p) * 1000) / 10;
  return `color-mix(in srgb, ${rgb(BLUE)} ${pct}%, ${base})`;
}

/** CSS string for an [r, g, b] triple. */
export function rgb([r, g, b]) {
  return `rgb(${r},${g},${b})`;
}
