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

/** The largest |value| over arrays (1 when all are zero, so colours stay defined). */
export function maxAbs(...arrays) {
  let best = 0;
  for (const values of arrays) for (const v of values ?? []) best = Math.max(best, Math.abs(v));
  return best || 1;
}

/** A share as text: signed, three decimals, a true minus sign. */
export function share(v) {
  return `${v < 0 ? "\u2212" : "+"}${Math.abs(v).toFixed(3)}`;
}
