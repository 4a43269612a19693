// Token colours' text layout and lookups, as pure functions (checked by js/tests).

export const LINE = 21; // px per text line
const PAD_X = 1; // px of color either side of a token's text
const MIN_CELL = 5; // px: empty pieces stay visible and hoverable
const NEWLINE_W = 12; // px of the cell that shows a newline's color

/**
 * Lay the text pieces out in lines of at most `width` px (`measure(text)` gives a width); a
 * piece with newlines spans lines and shows each newline as a "↵" cell.
 * @returns {{cells: object[], byLine: object[][], byToken: object[][], height: number}}
 */
export function reflow(measure, texts, width) {
  const cells = []; // {token, line, x, w, text, newline}
  let x = 0;
  let line = 0;
  const place = (token, text, w, newline) => {
    if (x > 0 && x + w > width) {
      line += 1;
      x = 0;
    }
    cells.push({ token, line, x, w, text, newline });
    x += w;
  };
  texts.forEach((piece, token) => {
    const parts = piece.replace(/\t/g, "    ").split("\n");
    parts.forEach((part, i) => {
      const last = i === parts.length - 1;
      if (part.length || (last && parts.length === 1)) {
        place(token, part, Math.max(MIN_CELL, measure(part) + 2 * PAD_X), false);
      }
      if (!last) {
        place(token, "↵", NEWLINE_W, true);
        line += 1;
        x = 0;
      }
    });
  });
  const byLine = Array.from({ length: line + 1 }, () => []);
  const byToken = Array.from({ length: texts.length }, () => []);
  for (const c of cells) {
    byLine[c.line].push(c);
    byToken[c.token].push(c);
  }
  return { cells, byLine, byToken, height: (line + 1) * LINE };
}

/** The token drawn at (x, y) of the text (y from the text's top), or -1. */
export function tokenAt(lay, x, y) {
  for (const c of lay?.byLine[Math.floor(y / LINE)] ?? [])
    if (x >= c.x && x < c.x + c.w) return c.token;
  return -1;
}

/** [r, g, b] of `token` in slice `slice` of the [slices, seq, 3] colour bytes. */
export function colorAt(colors, { slice, token, seq }) {
  const i = (slice * seq + token) * 3;
  return [colors[i], colors[i + 1], colors[i + 2]];
}

/** The neighbours of `token` in stream row `s` (the table is [streams, seq, k], -1 = none). */
export function neighborsOf(table, { s, token, k, seq }) {
  const out = [];
  for (let j = 0; j < k; j++) {
    const n = table[(s * seq + token) * k + j];
    if (n >= 0) out.push(n);
  }
  return out;
}

/** The line under the rows. */
export function infoText({ tokens, hover, near, title, layer, selected }) {
  if (!hover) {
    return selected >= 0 && selected < tokens.length
      ? `selected: ${tokens[selected]}  (#${selected})`
      : "Hover a token to outline its nearest neighbours at this layer; click to select it.";
  }
  const list = near ? near.map((n) => `${tokens[n]} (#${n})`).join(",  ") : "…";
  return `${tokens[hover.token]} (#${hover.token}) — nearest in ${title} at layer ${layer}:  ${list}`;
}
