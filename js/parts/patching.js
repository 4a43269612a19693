// Layout and colour of the patching heatmap, as pure functions (checked by js/tests).
import { diverging, rgb } from "../lib/colors.js";

export const LEFT = 34; // px for the layer numbers

/** Cell size that keeps the map within about 760 x 420 px, readable but not huge. */
export function cellSize(rows, cols) {
  const w = Math.max(12, Math.min(40, Math.floor(760 / Math.max(1, cols))));
  const h = Math.max(8, Math.min(22, Math.floor(420 / Math.max(1, rows))));
  return { w, h };
}

/** The [row, col] under canvas point (x, y), or null outside the cells. */
export function cellAt(x, y, rows, cols, size, left = LEFT) {
  const col = Math.floor((x - left) / size.w);
  const row = Math.floor(y / size.h);
  if (x < left || col < 0 || row < 0 || col >= cols || row >= rows) return null;
  return [row, col];
}

/** Fill colour of an effect: the diverging map clamped to [-1, 1]; grey where not patched. */
export function effectColor(value) {
  return Number.isFinite(value) ? rgb(diverging(value)) : "rgb(200,200,200)";
}
