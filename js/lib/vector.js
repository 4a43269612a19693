// Canvases as vector marks in a figure. A view that draws on a canvas registers how it draws
// (`drawsWith(canvas, draw)`, `draw(ctx)` painting the canvas' current picture on `ctx`
// without resizing it); a figure then calls `draw` with an SvgContext, a recorder that speaks
// the part of the 2D canvas API the views use and writes each mark as an SVG element: rects
// and paths stay shapes, fillText stays <text> (escaped: a token string that is markup stays
// text), drawImage/putImageData (heatmap cells) stay embedded images. A canvas without a
// registered drawing is embedded as an image by figure.js.

// on the canvas itself under a global symbol: each view is its own bundle, with its own copy
// of this module, and the figure code that reads it is in yet another
const DRAWING = Symbol.for("lmscope.canvas-drawing");

/**
 * @param {HTMLCanvasElement} canvas
 * @param {(ctx: CanvasRenderingContext2D) => void} draw paints what the canvas shows now
 */
export function drawsWith(canvas, draw) {
  canvas[DRAWING] = draw;
  return canvas;
}

/** The drawing registered for `canvas`, or undefined. */
export function drawingOf(canvas) {
  return canvas[DRAWING];
}

// SVG text, attributes and numbers, here and in figure.js (which re-exports them)
export function escapeXml(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;")
    .replace(/[^\t\n\r\u0020-\ufffd]/gu, (c) => (c.length > 1 ? c : "\ufffd"));
}

export function round(x) {
  return Math.round(x * 100) / 100;
}

export function attrs(map) {
  return Object.entries(map)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => ` ${k}="${escapeXml(typeof v === "number" ? round(v) : v)}"`)
    .join("");
}

/**
 * A CSS font shorthand as canvases take it ("bold 11px Menlo, monospace") split into SVG's
 * font attributes (a viewer other than a browser does not read the shorthand).
 */
export function parseFont(font) {
  const m = /^\s*((?:[\w-]+\s+)*?)(\d*\.?\d+)px(?:\s*\/\s*\S+)?\s+(.+?)\s*$/.exec(font || "");
  if (!m) return { size: 10, family: "sans-serif" };
  const words = m[1].trim().split(/\s+/).filter(Boolean);
  const weight = words.find((w) => /^(bold|bolder|lighter|[1-9]00)$/.test(w)) || null;
  const style = words.find((w) => /^(italic|oblique)$/.test(w)) || null;
  return { size: Number(m[2]), family: m[3], weight, style };
}

/** A colour as `[rgb, alpha]` for SVG's fill + fill-opacity (rgba() is not SVG 1.1). */
export function splitAlpha(color) {
  const m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)(?:[\s,/]+([\d.]+%?))?\s*\)$/.exec(
    color,
  );
  if (!m) return [color, 1];
  const a = m[4] === undefined ? 1 : m[4].endsWith("%") ? Number.parseFloat(m[4]) / 100 : +m[4];
  return [`rgb(${m[1]},${m[2]},${m[3]})`, a];
}

const ANCHOR = { left: "start", start: "start", center: "middle", right: "end", end: "end" };
const BASELINE = {
  middle: "central",
  top: "text-before-edge",
  hanging: "hanging",
  bottom: "text-after-edge",
  ideographic: "ideographic",
};

/** The product of two 2D affine matrices [a, b, c, d, e, f] (`m` applied after `n`). */
export const multiply = (m, n) => [
  m[0] * n[0] + m[2] * n[1],
  m[1] * n[0] + m[3] * n[1],
  m[0] * n[2] + m[2] * n[3],
  m[1] * n[2] + m[3] * n[3],
  m[0] * n[4] + m[2] * n[5] + m[4],
  m[1] * n[4] + m[3] * n[5] + m[5],
];

const STATE = {
  fillStyle: "#000000",
  strokeStyle: "#000000",
  lineWidth: 1,
  lineCap: "butt",
  lineJoin: "miter",
  font: "10px sans-serif",
  textAlign: "start",
  textBaseline: "alphabetic",
  globalAlpha: 1,
  imageSmoothingEnabled: true,
  dash: [],
  matrix: [1, 0, 0, 1, 0, 0],
};

/** Thrown by an SvgContext past its `limit` of marks: the canvas is better as an image. */
export class TooManyMarks extends Error {
  constructor(limit) {
    super(`more than ${limit} marks`);
    this.name = "TooManyMarks";
  }
}

/**
 * A 2D context that records marks as SVG in the canvas' CSS pixels.
 * @param {{canvas: any, base?: number[], measure?: (font: string, text: string) => any,
 *   color?: (css: string) => string, imageHref?: (image: any, crop?: number[]) => string}} opts
 *   `base`: canvas pixels -> CSS pixels; `measure`: measureText for a font; `color`: a CSS
 *   colour normalised (#rrggbb or rgba()); `imageHref`: a data URL of an image or its crop;
 *   `limit`: the most marks it records (past it, TooManyMarks)
 */
export class SvgContext {
  constructor({ canvas, base = [1, 0, 0, 1, 0, 0], measure, color, imageHref, limit = Infinity }) {
    this.canvas = canvas;
    this.marks = [];
    this.limit = limit;
    this.base = base;
    this._measure =
      measure || ((font, text) => ({ width: text.length * parseFont(font).size * 0.6 }));
    this._color = color || ((c) => c);
    this._imageHref = imageHref || (() => "");
    this._s = { ...STATE, dash: [], matrix: [...STATE.matrix] };
    this._stack = [];
    this._path = "";
    for (const key of Object.keys(STATE)) {
      if (key === "dash" || key === "matrix") continue;
      Object.defineProperty(this, key, {
        get: () => this._s[key],
        set: (v) => {
          this._s[key] = /Style$/.test(key) && typeof v === "string" ? this._color(v) : v;
        },
        enumerable: true,
      });
    }
  }

  _add(mark) {
    this.marks.push(mark);
    if (this.marks.length > this.limit) throw new TooManyMarks(this.limit);
  }

  /** The figure's SVG for what was drawn. */
  svg() {
    return this.marks.join("");
  }

  // -- state -----------------------------------------------------------------------------
  save() {
    this._stack.push({ ...this._s, dash: [...this._s.dash], matrix: [...this._s.matrix] });
  }
  restore() {
    if (this._stack.length) this._s = this._stack.pop();
  }
  setLineDash(dash) {
    this._s.dash = [...dash];
  }
  getLineDash() {
    return [...this._s.dash];
  }
  setTransform(a, b, c, d, e, f) {
    if (typeof a === "object" && a !== null) ({ a, b, c, d, e, f } = a);
    this._s.matrix = a === undefined ? [1, 0, 0, 1, 0, 0] : [a, b, c, d, e, f];
  }
  resetTransform() {
    this.setTransform();
  }
  transform(a, b, c, d, e, f) {
    this._s.matrix = multiply(this._s.matrix, [a, b, c, d, e, f]);
  }
  translate(x, y) {
    this.transform(1, 0, 0, 1, x, y);
  }
  scale(x, y) {
    this.transform(x, 0, 0, y, 0, 0);
  }
  rotate(angle) {
    const [c, s] = [Math.cos(angle), Math.sin(angle)];
    this.transform(c, s, -s, c, 0, 0);
  }
  getTransform() {
    const [a, b, c, d, e, f] = this._s.matrix;
    return { a, b, c, d, e, f };
  }
  measureText(text) {
    return this._measure(this._s.font, String(text));
  }
  clip() {} // the views clip nothing on purpose; the figure clips to the canvas' box
  createLinearGradient() {
    throw new Error("gradients are not drawn as vectors");
  }

  // -- geometry --------------------------------------------------------------------------
  _m() {
    return multiply(this.base, this._s.matrix);
  }
  _pt(x, y, m = this._m()) {
    return [m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5]];
  }
  /** How much the current transform scales lengths (line widths, font sizes). */
  _unit(m = this._m()) {
    return Math.sqrt(Math.abs(m[0] * m[3] - m[1] * m[2]));
  }
  _paint(kind) {
    const [color, alpha] = splitAlpha(kind === "fill" ? this._s.fillStyle : this._s.strokeStyle);
    const opacity = alpha * this._s.globalAlpha;
    if (typeof color !== "string" || opacity <= 0) return null;
    const a = { [kind]: color };
    if (opacity < 1) a[`${kind}-opacity`] = round(opacity * 1000) / 1000;
    if (kind === "stroke") {
      const u = this._unit();
      a["stroke-width"] = this._s.lineWidth * u;
      if (this._s.lineCap !== "butt") a["stroke-linecap"] = this._s.lineCap;
      if (this._s.lineJoin !== "miter") a["stroke-linejoin"] = this._s.lineJoin;
      if (this._s.dash.length)
        a["stroke-dasharray"] = this._s.dash.map((v) => round(v * u)).join(" ");
      a.fill = "none";
    }
    return a;
  }
  _box(x, y, w, h) {
    const m = this._m();
    if (m[1] === 0 && m[2] === 0) {
      const [x0, y0] = this._pt(x, y, m);
      const [x1, y1] = this._pt(x + w, y + h, m);
      return {
        rect: {
          x: Math.min(x0, x1),
          y: Math.min(y0, y1),
          width: Math.abs(x1 - x0),
          height: Math.abs(y1 - y0),
        },
      };
    }
    const corners = [
      [x, y],
      [x + w, y],
      [x + w, y + h],
      [x, y + h],
    ].map(([px, py]) => this._pt(px, py, m).map(round).join(" "));
    return { d: `M${corners.join("L")}Z` };
  }
  _shape(geometry, paint) {
    if (!paint) return;
    if (geometry.rect) this._add(`<rect${attrs({ ...geometry.rect, ...paint })}/>`);
    else this._add(`<path${attrs({ d: geometry.d, ...paint })}/>`);
  }
  fillRect(x, y, w, h) {
    this._shape(this._box(x, y, w, h), this._paint("fill"));
  }
  strokeRect(x, y, w, h) {
    this._shape(this._box(x, y, w, h), this._paint("stroke"));
  }
  clearRect(x, y, w, h) {
    // a clear of the whole canvas starts the picture again; a partial clear leaves marks
    const [x0, y0] = this._pt(x, y);
    const [x1, y1] = this._pt(x + w, y + h);
    const [cx, cy] = this._pt(0, 0, this.base);
    const [cw, ch] = this._pt(this.canvas.width, this.canvas.height, this.base);
    if (x0 <= cx + 0.5 && y0 <= cy + 0.5 && x1 >= cw - 0.5 && y1 >= ch - 0.5) this.marks = [];
  }

  beginPath() {
    this._path = "";
  }
  moveTo(x, y) {
    this._path += `M${this._pt(x, y).map(round).join(" ")}`;
  }
  lineTo(x, y) {
    this._path += `L${this._pt(x, y).map(round).join(" ")}`;
  }
  closePath() {
    this._path += "Z";
  }
  rect(x, y, w, h) {
    this.moveTo(x, y);
    this.lineTo(x + w, y);
    this.lineTo(x + w, y + h);
    this.lineTo(x, y + h);
    this.closePath();
  }
  quadraticCurveTo(cx, cy, x, y) {
    this._path += `Q${[...this._pt(cx, cy), ...this._pt(x, y)].map(round).join(" ")}`;
  }
  bezierCurveTo(c1x, c1y, c2x, c2y, x, y) {
    const pts = [...this._pt(c1x, c1y), ...this._pt(c2x, c2y), ...this._pt(x, y)];
    this._path += `C${pts.map(round).join(" ")}`;
  }
  arc(x, y, r, start, end, ccw = false) {
    // as short line segments: exact enough at print sizes and right under any transform
    let sweep = end - start;
    if (!ccw && sweep < 0) sweep = (sweep % (2 * Math.PI)) + 2 * Math.PI;
    if (ccw && sweep > 0) sweep = (sweep % (2 * Math.PI)) - 2 * Math.PI;
    if (Math.abs(end - start) >= 2 * Math.PI) sweep = ccw ? -2 * Math.PI : 2 * Math.PI;
    const steps = Math.max(8, Math.ceil((Math.abs(sweep) * r * this._unit()) / 2));
    for (let i = 0; i <= Math.min(steps, 256); i++) {
      const a = start + (sweep * i) / Math.min(steps, 256);
      const px = x + r * Math.cos(a);
      const py = y + r * Math.sin(a);
      if (i === 0 && this._path === "") this.moveTo(px, py);
      else this.lineTo(px, py);
    }
  }
  stroke() {
    if (this._path) this._shape({ d: this._path }, this._paint("stroke"));
  }
  fill() {
    if (this._path) this._shape({ d: this._path }, this._paint("fill"));
  }

  // -- text and images -------------------------------------------------------------------
  fillText(text, x, y) {
    const paint = this._paint("fill");
    const value = String(text);
    if (!paint || value === "") return;
    const m = this._m();
    const [px, py] = this._pt(x, y, m);
    const font = parseFont(this._s.font);
    const a = attrs({
      x: px,
      y: py,
      fill: paint.fill,
      "fill-opacity": paint["fill-opacity"],
      "font-family": font.family,
      "font-size": round(font.size * this._unit(m)),
      "font-weight": font.weight,
      "font-style": font.style,
      "text-anchor": ANCHOR[this._s.textAlign] === "start" ? null : ANCHOR[this._s.textAlign],
      "dominant-baseline": BASELINE[this._s.textBaseline],
    });
    this._add(`<text${a} xml:space="preserve" style="white-space:pre">${escapeXml(value)}</text>`);
  }
  strokeText() {} // no view outlines its text
  drawImage(image, ...args) {
    let crop;
    let dest;
    if (args.length === 2) dest = [args[0], args[1], image.width, image.height];
    else if (args.length === 4) dest = args;
    else [crop, dest] = [args.slice(0, 4), args.slice(4, 8)];
    this._image(this._imageHref(image, crop), ...dest);
  }
  putImageData(data, x, y) {
    // not transformed, as on a canvas: device pixels
    const [px, py] = this._pt(x, y, this.base);
    const [qx, qy] = this._pt(x + data.width, y + data.height, this.base);
    const saved = this._s.matrix;
    this._s.matrix = [1, 0, 0, 1, 0, 0];
    const href = this._imageHref(data);
    this._add(
      `<image${attrs({ x: px, y: py, width: qx - px, height: qy - py, preserveAspectRatio: "none", href })}/>`,
    );
    this._s.matrix = saved;
  }
  _image(href, x, y, w, h) {
    const g = this._box(x, y, w, h);
    if (!g.rect || !href) return; // rotated images: no view draws one
    const smooth = this._s.imageSmoothingEnabled;
    const a = attrs({
      ...g.rect,
      preserveAspectRatio: "none",
      opacity: this._s.globalAlpha < 1 ? this._s.globalAlpha : null,
      style: smooth ? null : "image-rendering:pixelated",
      href,
    });
    this._add(`<image${a}/>`);
  }
}
