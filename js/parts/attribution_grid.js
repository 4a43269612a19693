// Geometry of the attribution grid, kept pure so node can test it: one row per layer, one
// column per head, then (after a gap) the attention bias when the model has one, the MLP and
// the layer's total. Everything is in CSS pixels of one canvas.

export const GAP = 8;

/**
 * @param {number} nLayers
 * @param {number} nHeads
 * @param {{bias?: boolean, labelWidth?: number, headerHeight?: number}} [options]
 */
export function gridLayout(
  nLayers,
  nHeads,
  { bias = false, labelWidth = 28, headerHeight = 18 } = {},
) {
  const cellW = Math.max(8, Math.min(30, Math.floor(560 / Math.max(1, nHeads))));
  const cellH = Math.max(6, Math.min(16, Math.floor(640 / Math.max(1, nLayers))));
  const sideW = Math.max(cellW, 34);
  const headsEnd = labelWidth + nHeads * cellW;
  const columns = [];
  for (let h = 0; h < nHeads; h++)
    columns.push({ kind: "head", head: h, x: labelWidth + h * cellW, w: cellW });
  let x = headsEnd + GAP;
  if (bias) {
    columns.push({ kind: "bias", head: -1, x, w: sideW });
    x += sideW;
  }
  columns.push({ kind: "mlp", head: -1, x, w: sideW });
  x += sideW + GAP;
  columns.push({ kind: "total", head: -1, x, w: sideW });
  x += sideW;
  return {
    nLayers,
    nHeads,
    cellW,
    cellH,
    labelWidth,
    headerHeight,
    columns,
    width: x,
    height: headerHeight + nLayers * cellH,
  };
}

/**
 * The cell under a point, or null.
 * @returns {{kind: string, layer: number, head: number} | null}
 */
export function cellAt(layout, x, y) {
  const row = Math.floor((y - layout.headerHeight) / layout.cellH);
  if (row < 0 || row >= layout.nLayers) return null;
  const column = layout.columns.find((c) => x >= c.x && x < c.x + c.w);
  return column ? { kind: column.kind, layer: row, head: column.head } : null;
}

/** The largest finite |value| over arrays (1 when there is none, so colours stay defined);
 * NaN marks a block not split yet. */
export function maxAbs(...arrays) {
  let best = 0;
  for (const values of arrays)
    for (const v of values ?? []) if (Number.isFinite(v)) best = Math.max(best, Math.abs(v));
  return best || 1;
}

/** The sum of the finite values (a block not split yet is NaN: counted apart). */
export function finiteSum(values) {
  let sum = 0;
  for (const v of values ?? []) if (Number.isFinite(v)) sum += v;
  return sum;
}

/** A share as text: signed, three decimals, a true minus sign. */
export function share(v) {
  return `${v < 0 ? "\u2212" : "+"}${Math.abs(v).toFixed(3)}`;
}

/** Each layer's total: its heads, its attention bias and its MLP. */
export function layerTotals(heads, mlps, bias, nLayers, nHeads) {
  return Array.from({ length: nLayers }, (_, l) => {
    let sum = mlps[l] + bias[l];
    for (let h = 0; h < nHeads; h++) sum += heads[l * nHeads + h];
    return sum;
  });
}

/** The header: what is attributed, at which token, and its value. */
export function headline(summary, tokens, at) {
  const q = (text) => JSON.stringify(text ?? "");
  const foil = summary.foil_token ? ` \u2212 logit(${q(summary.foil_token)})` : "";
  return `logit(${q(summary.target_token)})${foil} after token ${at} ${q(tokens[at])} = ${share(summary.total ?? 0)}`;
}

/** The name of a cell in tooltips: "L23 H4", "MLP 23", "attention bias 23", "layer total 23". */
export function cellName(cell) {
  if (cell.kind === "head") return `L${cell.layer} H${cell.head}`;
  return `${{ bias: "attention bias", mlp: "MLP", total: "layer total" }[cell.kind]} ${cell.layer}`;
}

/**
 * The source positions a head's row draws: every one of 0..at when they are at most `limit`,
 * otherwise the `limit - 1` earlier ones with the largest |share| and `at` itself, in position
 * order (an 8k prompt's row stays a few hundred chips).
 */
export function shownSources(values, at, limit) {
  const n = Math.min(at + 1, values.length);
  const all = Array.from({ length: n }, (_, i) => i);
  if (n <= limit) return all;
  const earlier = all.slice(0, n - 1);
  earlier.sort((a, b) => Math.abs(values[b]) - Math.abs(values[a]) || a - b);
  return [...earlier.slice(0, limit - 1), n - 1].sort((a, b) => a - b);
}
