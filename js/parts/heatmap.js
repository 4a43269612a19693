// Heatmap pixels and words for the attention grid, as pure functions (checked by js/tests).

/**
 * 256 colours from `from` (weight 0) to `to` (weight 1), on a √ scale so weak structure stays
 * visible beside a strong sink. Flat [r, g, b, r, g, b, ...].
 * @param {number[]} from
 * @param {number[]} to
 */
export function colorRamp(from, to) {
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const s = Math.sqrt(i / 255);
    for (let c = 0; c < 3; c++) table[i * 3 + c] = from[c] + (to[c] - from[c]) * s;
  }
  return table;
}

/**
 * Paint `count` cells of a heatmap into RGBA `pixels`. Probabilities arrive as 0..255 levels;
 * differences as signed floats, drawn on `neg` below zero and scaled by `maxAbs`.
 */
export function paintCells(pixels, values, offset, count, { pos, neg, diff = false, maxAbs = 1 }) {
  for (let i = 0; i < count; i++) {
    const v = values[offset + i];
    const table = diff && v < 0 ? neg : pos;
    const level = diff ? Math.round((Math.abs(v) / maxAbs) * 255) : v;
    pixels[i * 4] = table[level * 3];
    pixels[i * 4 + 1] = table[level * 3 + 1];
    pixels[i * 4 + 2] = table[level * 3 + 2];
    pixels[i * 4 + 3] = 255;
  }
  return pixels;
}

/** Which tokens pooled row `i` of `r` covers (the same bounds as torch's adaptive pooling). */
export function pooledSpan(i, r, n) {
  return [Math.floor((i * n) / r), Math.ceil(((i + 1) * n) / r) - 1];
}

/** Two decimals without the leading zero (".42"), signed for differences. */
export function cellText(v, diff) {
  const text = Math.abs(v).toFixed(2).replace(/^0/, "");
  return diff ? `${v < 0 ? "−" : "+"}${text}` : text;
}

/** One token with its position, or the range a pooled cell covers. */
export function spanText(tokens, [a, b]) {
  return a === b ? `${JSON.stringify(tokens[a] ?? "")} (${a})` : `tokens ${a}–${b}`;
}

/** The tooltip of cell (i, j) of heatmap `label`. */
export function tipText({ label, tokens, r, r2, i, j, value, diff }) {
  const q = pooledSpan(i, r, tokens.length);
  const k = pooledSpan(j, r2, tokens.length);
  const shown = diff ? `${value >= 0 ? "+" : ""}${value.toFixed(3)}` : (value / 255).toFixed(3);
  const pooled = q[0] !== q[1] || k[0] !== k[1] ? " (max of block)" : "";
  return `${label}\nquery ${spanText(tokens, q)}\nkey   ${spanText(tokens, k)}\n${diff ? "difference" : "weight"} ${shown}${pooled}`;
}

/** Columns of the grid: squarish for one panel, narrower when two stand side by side. */
export function gridColumns(cells, panels) {
  return Math.min(cells, Math.ceil(Math.sqrt(cells * (panels > 1 ? 0.5 : 1.5))));
}

/** The line under the grid. */
export function legendText({ diff, maxAbs, tokens, pooledTo }) {
  if (diff) {
    return `red: second prompt attends more, blue: first attends more; full colour = ±${maxAbs.toFixed(3)}`;
  }
  const pooled =
    pooledTo < tokens ? `; ${tokens} tokens pooled to ${pooledTo} (max per block)` : "";
  return `rows: queries, columns: keys; colour √weight from 0 to 1${pooled}; click a heatmap to open it`;
}

/** The largest magnitude in `values` (1 when all are zero). */
export function maxAbsOf(values) {
  let m = 0;
  for (const v of values) m = Math.max(m, Math.abs(v));
  return m || 1;
}
