// What the token view writes, as pure functions of its state (checked by js/tests).

/** A chip's tooltip: the token, its position and id, and how confidently it was predicted. */
export function chipTitle(label, i, confidence) {
  return i === 0 ? label : `${label}: p = ${(confidence * 100).toFixed(1)}% as predicted`;
}

/** "name 12.3%" for each of a position's top next tokens (probabilities row-major [seq, k]). */
export function nextTokens(names, probs, i, k) {
  return names.map((name, j) => `${name} ${(probs[i * k + j] * 100).toFixed(1)}%`);
}

/** The line under the chips. */
export function infoText(token, predictions) {
  if (token < 0) return "Click a token to see what the model predicts after it.";
  if (predictions.length) return `after token ${token}: ${predictions.join(" · ")}`;
  return `token ${token} selected`;
}

/**
 * Chips of `widths` px laid out in lines of at most `width` px, `gap` px apart (as a wrapping
 * flex row would): each chip's x and line, and every line's first chip, so a view can make
 * elements for the lines on screen only.
 * @returns {{x: Float64Array, line: Int32Array, lineStart: Int32Array, lines: number}}
 */
export function chipLayout(widths, width, gap) {
  const n = widths.length;
  const x = new Float64Array(n);
  const line = new Int32Array(n);
  const starts = [0];
  let at = 0;
  let current = 0;
  for (let i = 0; i < n; i++) {
    if (at > 0 && at + widths[i] > width) {
      current += 1;
      at = 0;
      starts.push(i);
    }
    x[i] = at;
    line[i] = current;
    at += widths[i] + gap;
  }
  starts.push(n);
  return { x, line, lineStart: Int32Array.from(starts), lines: n ? current + 1 : 0 };
}

/** The lines a window of `height` px scrolled to `top` shows, with `extra` lines either side. */
export function visibleLines(top, height, lineHeight, lines, extra = 2) {
  const first = Math.max(0, Math.floor(top / lineHeight) - extra);
  const last = Math.min(lines - 1, Math.floor((top + height) / lineHeight) + extra);
  return { first, last };
}
