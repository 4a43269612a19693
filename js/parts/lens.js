// The logit-lens table's layout and words, as pure functions (checked by js/tests). `data` is
// the decoded state: {top, probs, tprobs, tranks} by stage, each over every position, strings,
// P positions, k, T targets, L layers, and `have` by stage: which columns are decoded (the lens
// decodes the columns on screen first and the rest as they are scrolled to).

/** A probability as a short percentage. */
export function pct(p) {
  if (p >= 0.995) return "100%";
  if (p >= 0.1) return `${(p * 100).toFixed(0)}%`;
  if (p >= 0.001) return `${(p * 100).toFixed(1)}%`;
  return p > 0 ? p.toExponential(0) : "≈0";
}

/** A rank in at most four characters. */
export function rankText(r) {
  if (r >= 10000) return `${Math.round(r / 1000)}k`;
  if (r >= 1000) return `${(r / 1000).toFixed(1)}k`;
  return String(r);
}

/** The lens stages a shown `stage` ("post", "mid" or "both") draws. */
export function stagesOf(stage) {
  return stage === "both" ? ["post", "mid"] : [stage];
}

/**
 * Rows top to bottom: the target row, then layers from last to first; with both stages each
 * layer shows post above mid (mid is computed first, so reading upwards follows the model).
 * Stages not decoded yet are left out.
 */
export function lensRows({ stage, nLayers, hasTargets, decoded }) {
  const out = hasTargets ? [{ kind: "target" }] : [];
  for (let layer = nLayers - 1; layer >= 0; layer--) {
    for (const s of stagesOf(stage))
      if (decoded.includes(s)) out.push({ kind: "layer", layer, stage: s });
  }
  return out;
}

/** The columns in view at horizontal scroll `scrollLeft`. */
export function visibleColumns(scrollLeft, width, positions, { cellW, gutter }) {
  const first = Math.max(0, Math.floor(scrollLeft / cellW));
  const last = Math.min(positions - 1, Math.floor((scrollLeft + width - gutter) / cellW));
  return { first, last };
}

/** The stage the target row reads. */
export const targetStage = (stage) => (stage === "mid" ? "mid" : "post");

/** Index of (layer, position, j) in a [layers, positions, width] array. */
export const at = (data, layer, p, j, width) => (layer * data.P + p) * width + j;

/** Whether column `p` of `stage` is decoded (data without `have` is decoded whole). */
export const decodedAt = (data, stage, p) => !data.have || Boolean(data.have[stage]?.[p]);

/** A stage's arrays over every position, nothing decoded yet. */
export function emptyStage(data, stage) {
  const { L, P, k, T } = data;
  data.top[stage] = new Int32Array(L * P * k).fill(-1);
  data.probs[stage] = new Float32Array(L * P * k);
  if (T) {
    data.tprobs[stage] = new Float32Array(L * P * T);
    data.tranks[stage] = new Int32Array(L * P * T).fill(-1);
  }
  data.have[stage] = new Uint8Array(P);
}

/** Each of `strings` as its index in `data.strings`, appending the new ones. */
export function internStrings(data, strings) {
  return strings.map((s) => {
    let i = data.stringIndex.get(s);
    if (i === undefined) {
      i = data.strings.length;
      data.strings.push(s);
      data.stringIndex.set(s, i);
    }
    return i;
  });
}

/**
 * Write decoded columns `cols` of `stage` into its arrays over every position. `part` holds
 * [L, C, width] arrays (C = cols.length): top (indices that `remap` turns into indices of
 * data.strings), probs, and tprobs/tranks with targets.
 */
export function mergeColumns(data, stage, cols, part, remap) {
  const { L, P, k, T } = data;
  const C = cols.length;
  for (let l = 0; l < L; l++) {
    for (let j = 0; j < C; j++) {
      const p = cols[j];
      for (let r = 0; r < k; r++) {
        const src = (l * C + j) * k + r;
        const dst = (l * P + p) * k + r;
        data.top[stage][dst] = remap[part.top[src]];
        data.probs[stage][dst] = part.probs[src];
      }
      for (let t = 0; t < T; t++) {
        data.tprobs[stage][(l * P + p) * T + t] = part.tprobs[(l * C + j) * T + t];
        data.tranks[stage][(l * P + p) * T + t] = part.tranks[(l * C + j) * T + t];
      }
    }
  }
  for (const p of cols) data.have[stage][p] = 1;
}

/**
 * The columns to ask Python for next: the undecoded ones on screen (first..last), else those
 * within a screen to either side; null when all are there. Returns {start, stop} (stop
 * exclusive) spanning the missing ones.
 */
export function columnsToFetch(data, stages, first, last) {
  const span = (a, b) => {
    let lo = -1;
    let hi = -1;
    for (let p = Math.max(0, a); p <= Math.min(data.P - 1, b); p++) {
      if (stages.some((s) => !decodedAt(data, s, p))) {
        if (lo < 0) lo = p;
        hi = p;
      }
    }
    return lo < 0 ? null : { start: lo, stop: hi + 1 };
  };
  const width = last - first + 1;
  return span(first, last) || span(first - width, last + width);
}

/** What a cell not decoded yet shows. */
const PENDING = { prob: 0, text: "…", isTarget: false, pending: true };

/**
 * What one cell shows: its shade (a probability), its text and whether it is the target.
 * The target row shows the target's probability (or its rank when under 1%) at `layer`.
 */
export function cellContent(data, row, p, { stage, layer, target, targetString }) {
  if (!decodedAt(data, row.kind === "target" ? targetStage(stage) : row.stage, p)) return PENDING;
  if (row.kind === "target") {
    const st = targetStage(stage);
    const i = at(data, layer, p, target, data.T);
    const prob = data.tprobs[st] ? data.tprobs[st][i] : 0;
    const rank = data.tranks[st] ? data.tranks[st][i] : -1;
    return { prob, text: prob >= 0.01 ? pct(prob) : `#${rankText(rank)}`, isTarget: false };
  }
  const i = at(data, row.layer, p, 0, data.k);
  const text = data.strings[data.top[row.stage][i]];
  const isTarget = targetString !== null && text === targetString;
  return { prob: data.probs[row.stage][i], text, isTarget };
}

/** The tooltip of a cell: a heading and [text, probability, isTarget] rows. */
export function tipContent(data, row, p, { stage, nLayers, target, targets }) {
  const token = data.tokens[p];
  const targetString = data.T ? targets[target] : null;
  if (!decodedAt(data, row.kind === "target" ? targetStage(stage) : row.stage, p)) {
    return { head: `position ${p} (${token})`, rows: [["decoding…", "", false]] };
  }
  if (row.kind === "target") {
    const st = targetStage(stage);
    const rows = [];
    for (let l = nLayers - 1; l >= 0; l--) {
      if (l % 5 !== 0 && l !== nLayers - 1) continue;
      const i = at(data, l, p, target, data.T);
      rows.push([`L${l} #${data.tranks[st][i]}`, pct(data.tprobs[st][i]), false]);
    }
    return { head: `target ${targetString} after position ${p} (${token})`, rows };
  }
  const where = row.stage === "mid" ? "after attention" : "after block";
  const rows = [];
  for (let j = 0; j < data.k; j++) {
    const i = at(data, row.layer, p, j, data.k);
    const s = data.strings[data.top[row.stage][i]];
    rows.push([s, pct(data.probs[row.stage][i]), s === targetString]);
  }
  if (data.T) {
    const i = at(data, row.layer, p, target, data.T);
    rows.push([
      `${targetString} #${data.tranks[row.stage][i]}`,
      pct(data.tprobs[row.stage][i]),
      true,
    ]);
  }
  return { head: `L${row.layer} ${where} · after ${token} (${p})`, rows };
}

/** The gutter label of a row. */
export function rowLabel(row, targetString) {
  if (row.kind === "target") return targetString;
  return `L${row.layer}${row.stage === "mid" ? " mid" : ""}`;
}

/** Cut a string to fit `w` pixels (as `measure` reports widths), with an ellipsis. */
export function fitText(measure, text, w) {
  if (measure(text) <= w) return text;
  let s = text;
  while (s.length > 1 && measure(`${s}…`) > w) s = s.slice(0, -1);
  return `${s}…`;
}
