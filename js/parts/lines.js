// The attention line diagram's bookkeeping, as pure functions (checked by js/tests): which lines
// touch the rows on screen, how they group into strength buckets, what a focused token attends to.

/**
 * Group line ids by query and by key (counting sort) so a window or a token finds its lines
 * fast: the lines of query q are qOrder[byQ[q] .. byQ[q + 1]).
 * @param {{query: ArrayLike<number>, key: ArrayLike<number>}} lines
 * @param {number} n tokens (rows)
 */
export function indexLines(lines, n) {
  const m = lines.query.length;
  const byQ = new Int32Array(n + 1);
  const byK = new Int32Array(n + 1);
  for (let i = 0; i < m; i++) {
    byQ[lines.query[i] + 1]++;
    byK[lines.key[i] + 1]++;
  }
  for (let i = 0; i < n; i++) {
    byQ[i + 1] += byQ[i];
    byK[i + 1] += byK[i];
  }
  const qOrder = new Int32Array(m);
  const kOrder = new Int32Array(m);
  const qFill = byQ.slice(0, n);
  const kFill = byK.slice(0, n);
  for (let i = 0; i < m; i++) {
    qOrder[qFill[lines.query[i]]++] = i;
    kOrder[kFill[lines.key[i]]++] = i;
  }
  return { byQ, byK, qOrder, kOrder };
}

/** The lines of token `focus.i` on its side ("q": as a query, "k": as a key). */
export function linesOf(idx, focus) {
  const [starts, order] = focus.side === "q" ? [idx.byQ, idx.qOrder] : [idx.byK, idx.kOrder];
  return Array.from(order.subarray(starts[focus.i], starts[focus.i + 1]));
}

/** The rows a scroll window shows, one spare above. */
export function visibleRows(scrollTop, height, rows, rowHeight) {
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - 1);
  const last = Math.min(rows - 1, Math.ceil((scrollTop + height) / rowHeight));
  return { first, last };
}

/**
 * Lines to draw for rows first..last: those of the focused token apart ("hot", drawn on top),
 * the rest grouped in `buckets` strength levels (one canvas stroke per level). Lines weaker
 * than `cut` (a 0..255 level) are left out.
 */
export function bucketLines(lines, idx, { first, last, cut, focus, buckets }) {
  const out = Array.from({ length: buckets }, () => []);
  const hot = [];
  const inFocus = (line) =>
    focus && (focus.side === "q" ? lines.query[line] : lines.key[line]) === focus.i;
  const take = (line) => {
    const s = lines.strength[line];
    if (s < cut || s === 0) return;
    if (inFocus(line)) hot.push(line);
    else out[Math.min(buckets - 1, Math.floor((s / 256) * buckets))].push(line);
  };
  for (let j = idx.byQ[first]; j < idx.byQ[last + 1]; j++) take(idx.qOrder[j]);
  for (let j = idx.byK[first]; j < idx.byK[last + 1]; j++) {
    const line = idx.kOrder[j];
    const q = lines.query[line];
    if (q < first || q > last) take(line); // its query is off screen: not taken above
  }
  if (focus && (focus.i < first || focus.i > last)) hot.push(...linesOf(idx, focus));
  return { buckets: out, hot };
}

/** For a focused token: the other column's tokens it has a line to, and that line. */
export function partners(lines, idx, focus) {
  const w = new Map();
  if (!focus) return w;
  const other = focus.side === "q" ? lines.key : lines.query;
  for (const line of linesOf(idx, focus)) w.set(other[line], line);
  return w;
}

/** A weight for a tooltip: probabilities to three places, scores to two. */
export function formatValue(v, values) {
  if (!Number.isFinite(v)) return "masked";
  return values === "score" ? v.toFixed(2) : v.toFixed(3);
}

/** The status line for a focused token: its strongest four lines. */
export function focusText(lines, idx, focus, tokens, values) {
  const other = focus.side === "q" ? lines.key : lines.query;
  const mine = linesOf(idx, focus).sort((a, b) => lines.strength[b] - lines.strength[a]);
  const best = mine
    .slice(0, 4)
    .map((l) => `${tokens[other[l]]} (${other[l]}) ${formatValue(lines.value[l], values)}`)
    .join(", ");
  const what = focus.side === "q" ? "attends to" : "is attended by";
  return `${tokens[focus.i]} (${focus.i}) ${what}: ${best || "nothing above the threshold"}`;
}

/** The controls whose value differs from what the lines on screen are of. */
export function staleControls(of, current) {
  return Object.keys(of).filter((name) => of[name] !== current(name));
}

/** The slice a line list is of, as "layer-layer_end:head" (for tests and tooling). */
export function sliceName(of) {
  return `${of.layer}-${of.layer_end}:${of.head}`;
}

/** Which column and row a point in the stage falls on, or null between the columns. */
export function hitToken({ x, y, scrollTop, width, rows, rowHeight, labelWidth, top = 4 }) {
  const i = Math.floor((y + scrollTop - top) / rowHeight);
  if (i < 0 || i >= rows) return null;
  if (x < labelWidth) return { side: "q", i };
  if (x > width - labelWidth) return { side: "k", i };
  return null;
}
