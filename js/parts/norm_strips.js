// The norm strips' drawing decisions as pure functions (checked by js/tests): where a point
// stands, the axis ticks, every point blended into one pixel buffer, and a grid index that
// finds the point under the mouse without a search over all of them.

/**
 * Where the plot maps data to CSS px: x from -0.7 to nLayers - 0.3 (a layer and its jitter),
 * y over [yMin, yMax] upwards, inside `box` = {left, top, width, height}.
 */
export function makeScale({ nLayers, yMin, yMax }, box) {
  const x0 = -0.7;
  const x1 = nLayers - 0.3;
  const sx = box.width / (x1 - x0);
  const sy = box.height / (yMax - yMin || 1);
  return {
    x: (v) => box.left + (v - x0) * sx,
    y: (v) => box.top + box.height - (v - yMin) * sy,
    box,
  };
}

/** About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
export function niceTicks(lo, hi, count = 6) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  }
  return out;
}

/** The finite range of the drawn values, padded by 0.2 as the bqplot strips were. */
export function valueRange(norms, seq, nLayers, positions) {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let l = 0; l < nLayers; l++) {
    for (const p of positions) {
      const v = norms[l * seq + p];
      if (Number.isFinite(v)) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
  }
  if (lo > hi) return { yMin: 0, yMax: 1 };
  return { yMin: lo - 0.2, yMax: hi + 0.2 };
}

/**
 * A disk of radius `r` device px as coverage per pixel (0..1, antialiased at its edge), on a
 * square of side `size` centred at (size/2, size/2) shifted by the point's subpixel offset.
 */
export function diskMask(r) {
  const size = Math.ceil(2 * r) + 2;
  const mask = new Float32Array(size * size);
  const c = size / 2;
  for (let j = 0; j < size; j++) {
    for (let i = 0; i < size; i++) {
      const d = Math.hypot(i + 0.5 - c, j + 0.5 - c);
      mask[j * size + i] = Math.max(0, Math.min(1, r - d + 0.5));
    }
  }
  return { size, mask };
}

/**
 * Blend every point into a premultiplied RGBA float buffer of `width` x `height` device px,
 * in order (later points over earlier ones), each a disk of `colors[layer]` at `opacity`.
 * `points(emit)` calls emit(x, y, layer) in device px. Returns the number of points drawn.
 */
export function blendPoints(buffer, width, height, points, { radius, colors, opacity }) {
  const { size, mask } = diskMask(radius);
  const half = size / 2;
  let drawn = 0;
  points((x, y, layer) => {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return;
    const x0 = Math.round(x - half);
    const y0 = Math.round(y - half);
    if (x0 >= width || y0 >= height || x0 + size <= 0 || y0 + size <= 0) return;
    const [r, g, b] = colors[layer];
    for (let j = 0; j < size; j++) {
      const py = y0 + j;
      if (py < 0 || py >= height) continue;
      for (let i = 0; i < size; i++) {
        const px = x0 + i;
        if (px < 0 || px >= width) continue;
        const a = mask[j * size + i] * opacity;
        if (a <= 0) continue;
        const k = (py * width + px) * 4;
        const keep = 1 - a;
        buffer[k] = r * a + buffer[k] * keep;
        buffer[k + 1] = g * a + buffer[k + 1] * keep;
        buffer[k + 2] = b * a + buffer[k + 2] * keep;
        buffer[k + 3] = a + buffer[k + 3] * keep;
      }
    }
    drawn += 1;
  });
  return drawn;
}

/** The premultiplied float buffer as straight-alpha bytes for an ImageData. */
export function toBytes(buffer, bytes) {
  for (let k = 0; k < buffer.length; k += 4) {
    const a = buffer[k + 3];
    if (a <= 0) {
      bytes[k + 3] = 0;
      continue;
    }
    bytes[k] = buffer[k] / a;
    bytes[k + 1] = buffer[k + 1] / a;
    bytes[k + 2] = buffer[k + 2] / a;
    bytes[k + 3] = a * 255;
  }
  return bytes;
}

/**
 * A uniform grid over the plot in CSS px: each cell lists the points whose centre falls in it
 * (counting sort into one Int32Array), so the point under the mouse is found among a few.
 * `points(emit)` calls emit(x, y, id) in CSS px.
 */
export function buildIndex(points, { width, height, cell = 8 }) {
  const cols = Math.max(1, Math.ceil(width / cell));
  const rows = Math.max(1, Math.ceil(height / cell));
  const xs = [];
  const ys = [];
  const ids = [];
  points((x, y, id) => {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return;
    xs.push(x);
    ys.push(y);
    ids.push(id);
  });
  const cellOf = (x, y) => {
    const c = Math.min(cols - 1, Math.max(0, Math.floor(x / cell)));
    const r = Math.min(rows - 1, Math.max(0, Math.floor(y / cell)));
    return r * cols + c;
  };
  const start = new Int32Array(cols * rows + 1);
  for (let i = 0; i < xs.length; i++) start[cellOf(xs[i], ys[i]) + 1] += 1;
  for (let c = 0; c < cols * rows; c++) start[c + 1] += start[c];
  const fill = start.slice(0, -1);
  const items = new Int32Array(xs.length);
  for (let i = 0; i < xs.length; i++) items[fill[cellOf(xs[i], ys[i])]++] = i;
  return {
    cols,
    rows,
    cell,
    start,
    items,
    xs: Float32Array.from(xs),
    ys: Float32Array.from(ys),
    ids: Int32Array.from(ids),
    count: xs.length,
  };
}

/**
 * The id of the point nearest (x, y) within `reach` CSS px, or -1; among equally near points
 * the one drawn last (on top) wins. Looks only at the cells `reach` touches.
 */
export function nearest(index, x, y, reach = 6) {
  const { cols, rows, cell, start, items, xs, ys, ids } = index;
  const c0 = Math.max(0, Math.floor((x - reach) / cell));
  const c1 = Math.min(cols - 1, Math.floor((x + reach) / cell));
  const r0 = Math.max(0, Math.floor((y - reach) / cell));
  const r1 = Math.min(rows - 1, Math.floor((y + reach) / cell));
  let best = -1;
  let bestD = reach * reach;
  let bestOrder = -1;
  for (let r = r0; r <= r1; r++) {
    for (let c = c0; c <= c1; c++) {
      const k = r * cols + c;
      for (let n = start[k]; n < start[k + 1]; n++) {
        const i = items[n];
        const d = (xs[i] - x) ** 2 + (ys[i] - y) ** 2;
        if (d < bestD || (d === bestD && i > bestOrder)) {
          best = ids[i];
          bestD = d;
          bestOrder = i;
        }
      }
    }
  }
  return best;
}

/** "#12 text" as the strips' tooltip names a token. */
export function tokenName(tokens, position) {
  return `#${position} ${tokens[position] ?? ""}`;
}
