// Figures: a view as it is drawn now, as one SVG document (text stays <text>, a canvas that
// registered its drawing (lib/vector.js) is redrawn as SVG marks, any other is an embedded
// image, bqplot's own SVG is inlined with its styles), and that SVG as a PNG at a
// chosen scale. The one drawing route: the in-view download control and Python's
// save_svg/save_png (a headless browser on the saved page) both call figureSvg.

import {
  attrs,
  drawingOf,
  escapeXml,
  multiply,
  round,
  SvgContext,
  TooManyMarks,
} from "./vector.js";

const SVG_NS = "http://www.w3.org/2000/svg";
/** Parts of a view that are not the picture: controls, notes, the download control. */
const SKIP =
  ".lms-figure-skip, .lms-static-note, .lms-figure-control, .lms-tip, button, script, style";
const TITLE_HEIGHT = 24;
const CAPTION_LINE = 16;
const CAPTION_FONT = { family: "system-ui, sans-serif", size: "12px" };
// Controls are left out of figures on purpose (a figure is the picture, not the UI): control
// rows are hidden while it is drawn, and the caption under the title says what they were set to.
const CONTROL = "select, input, textarea";
const CONTROL_ROWS = ".lms-bar, .widget-inline-hbox";
const PAD = 8;
// bqplot's colours that its stylesheet resolves on :root or on the theme's <body> (the dark
// theme's orange titles), not on the figure: set on the view, they win over the page's
function bqplotVars(ink, background) {
  return {
    "--bq-content-font-color": ink,
    "--bq-content-scatter-font-color": ink,
    "--bq-default-stroke": ink,
    "--bq-background": background,
  };
}
// light colours for the theme variables the views read, so a figure is light by default
const LIGHT = {
  "--jp-layout-color0": "#ffffff",
  "--jp-layout-color1": "#ffffff",
  "--jp-layout-color2": "#eeeeee",
  "--jp-layout-color3": "#bdbdbd",
  "--jp-ui-font-color0": "rgba(0,0,0,1)",
  "--jp-ui-font-color1": "rgba(0,0,0,0.87)",
  "--jp-ui-font-color2": "rgba(0,0,0,0.54)",
  "--jp-ui-font-color3": "rgba(0,0,0,0.38)",
  "--jp-content-font-color0": "rgba(0,0,0,1)",
  "--jp-content-font-color1": "rgba(0,0,0,0.87)",
  "--jp-content-font-color2": "rgba(0,0,0,0.54)",
  "--jp-border-color0": "#bdbdbd",
  "--jp-border-color1": "#bdbdbd",
  "--jp-border-color2": "#e0e0e0",
  "--jp-widgets-input-background-color": "#ffffff",
  "--jp-widgets-input-color": "rgba(0,0,0,0.87)",
  "--jp-widgets-color": "rgba(0,0,0,0.87)",
  ...bqplotVars("rgba(0,0,0,0.87)", "#ffffff"),
};
// JupyterLab's dark theme's colours, for a dark figure from anywhere (Python included)
const DARK = {
  "--jp-layout-color0": "#111111",
  "--jp-layout-color1": "#212121",
  "--jp-layout-color2": "#424242",
  "--jp-layout-color3": "#616161",
  "--jp-ui-font-color0": "rgba(255,255,255,1)",
  "--jp-ui-font-color1": "rgba(255,255,255,0.87)",
  "--jp-ui-font-color2": "rgba(255,255,255,0.54)",
  "--jp-ui-font-color3": "rgba(255,255,255,0.38)",
  "--jp-content-font-color0": "rgba(255,255,255,1)",
  "--jp-content-font-color1": "rgba(255,255,255,0.87)",
  "--jp-content-font-color2": "rgba(255,255,255,0.54)",
  "--jp-border-color0": "#616161",
  "--jp-border-color1": "#616161",
  "--jp-border-color2": "#424242",
  "--jp-widgets-input-background-color": "#424242",
  "--jp-widgets-input-color": "rgba(255,255,255,0.87)",
  "--jp-widgets-color": "rgba(255,255,255,0.87)",
  ...bqplotVars("#ffffff", "#111111"),
};
/** The figure themes: the variables set while drawing, and the page behind (null: as is). */
export const THEMES = {
  light: { vars: LIGHT, background: "#ffffff", ink: "#000000" },
  dark: { vars: DARK, background: "#111111", ink: "#ffffff" },
  current: { vars: null, background: null, ink: null },
};
// what bqplot's SVG takes from stylesheets, written onto each node of the inlined copy
const SVG_STYLE = [
  "fill",
  "fill-opacity",
  "stroke",
  "stroke-width",
  "stroke-opacity",
  "stroke-dasharray",
  "opacity",
  "font-family",
  "font-size",
  "font-weight",
  "font-style",
  "text-anchor",
  "dominant-baseline",
  "visibility",
  "display",
];

export { attrs, escapeXml, round };

export function rectSvg(x, y, width, height, { fill, stroke, strokeWidth, rx } = {}) {
  return `<rect${attrs({ x, y, width, height, fill: fill || "none", stroke, "stroke-width": strokeWidth, rx })}/>`;
}

export function textSvg(x, y, text, { fill, font = {}, anchor, rotate } = {}) {
  const a = attrs({
    x,
    y,
    transform: rotate ? `rotate(${round(rotate)} ${round(x)} ${round(y)})` : null,
    fill,
    "font-family": font.family,
    "font-size": font.size,
    "font-weight": font.weight,
    "font-style": font.style,
    "text-anchor": anchor,
    "dominant-baseline": "central",
  });
  return `<text${a} xml:space="preserve" style="white-space:pre">${escapeXml(text)}</text>`;
}

/**
 * The outer document: `content` drawn in a `naturalWidth` x `naturalHeight` box, shown at
 * `width` x `height` (one of them given: the other keeps the aspect; neither: natural size).
 */
export function svgDocument({ naturalWidth, naturalHeight, width, height, content }) {
  const size = figureSize(naturalWidth, naturalHeight, { width, height });
  return (
    `<svg xmlns="${SVG_NS}" xmlns:xlink="http://www.w3.org/1999/xlink" version="1.1"` +
    `${attrs({ width: size.width, height: size.height, viewBox: `0 0 ${round(naturalWidth)} ${round(naturalHeight)}` })}>` +
    `${content}</svg>`
  );
}

/** The output size for a natural size and the options width/height/scale. */
export function figureSize(naturalWidth, naturalHeight, { width, height, scale = 1 } = {}) {
  if (width && height) return { width, height };
  if (width) return { width, height: Math.round((naturalHeight * width) / naturalWidth) };
  if (height) return { width: Math.round((naturalWidth * height) / naturalHeight), height };
  return {
    width: Math.round(naturalWidth * scale),
    height: Math.round(naturalHeight * scale),
  };
}

/** Whether a CSS colour paints nothing. */
export function transparent(color) {
  return !color || color === "transparent" || /rgba\([^)]*,\s*0\)$/.test(color);
}

// -- the DOM walk ------------------------------------------------------------------------

function fontOf(style) {
  return {
    family: style.fontFamily,
    size: style.fontSize,
    weight: style.fontWeight === "400" ? null : style.fontWeight,
    style: style.fontStyle === "normal" ? null : style.fontStyle,
  };
}

function boxSvg(style, r, ox, oy) {
  let out = "";
  const x = r.left - ox;
  const y = r.top - oy;
  const rx = Number.parseFloat(style.borderTopLeftRadius) || null;
  if (!transparent(style.backgroundColor)) {
    out += rectSvg(x, y, r.width, r.height, { fill: style.backgroundColor, rx });
  }
  const sides = [
    ["Top", x, y, x + r.width, y],
    ["Bottom", x, y + r.height, x + r.width, y + r.height],
    ["Left", x, y, x, y + r.height],
    ["Right", x + r.width, y, x + r.width, y + r.height],
  ];
  const widths = sides.map(([s]) => Number.parseFloat(style[`border${s}Width`]) || 0);
  const colors = sides.map(([s]) => style[`border${s}Color`]);
  const styles = sides.map(([s]) => style[`border${s}Style`]);
  const uniform =
    widths.every((w) => w === widths[0]) && colors.every((c) => c === colors[0]) && widths[0];
  if (uniform && styles.every((s) => s !== "none") && !transparent(colors[0])) {
    const w = widths[0];
    out += rectSvg(x + w / 2, y + w / 2, r.width - w, r.height - w, {
      stroke: colors[0],
      strokeWidth: w,
      rx,
    });
  } else {
    sides.forEach(([, x1, y1, x2, y2], i) => {
      if (!widths[i] || styles[i] === "none" || transparent(colors[i])) return;
      const dash = styles[i] === "dashed" ? "4 3" : styles[i] === "dotted" ? "1 2" : null;
      out += `<line${attrs({ x1, y1, x2, y2, stroke: colors[i], "stroke-width": widths[i], "stroke-dasharray": dash })}/>`;
    });
  }
  return out;
}

/** A line cut as `text-overflow: ellipsis` shows it: what fits before the box's edge, "…". */
function clipped(parent, style, rect, text) {
  if (style.textOverflow !== "ellipsis" || parent.scrollWidth <= parent.clientWidth) return text;
  const box = parent.getBoundingClientRect();
  const inner = box.right - (Number.parseFloat(style.borderRightWidth) || 0);
  const room = inner - (Number.parseFloat(style.paddingRight) || 0) - rect.left;
  const ctx = scratchContext();
  ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const chars = [...text];
  let lo = 0;
  let hi = chars.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (ctx.measureText(`${chars.slice(0, mid).join("")}…`).width <= room) lo = mid;
    else hi = mid - 1;
  }
  return `${chars.slice(0, lo).join("")}…`;
}

/** Degrees a line of text is turned on screen: by a vertical writing mode (a column label),
 * plus its element's own rotation; 0 for horizontal text. */
function textTurn(style) {
  const mode = style.writingMode;
  let turn = /^vertical|^sideways-rl/.test(mode) ? 90 : mode === "sideways-lr" ? -90 : 0;
  if (!turn) return 0;
  const m = /^matrix\(([^,]+),\s*([^,]+)/.exec(style.transform);
  if (m) turn += (Math.atan2(Number(m[2]), Number(m[1])) * 180) / Math.PI;
  return ((Math.round(turn) + 540) % 360) - 180; // in [-180, 180)
}

function textNodeSvg(node, ox, oy) {
  const text = node.textContent;
  if (!text?.trim()) return "";
  const parent = node.parentElement;
  const style = getComputedStyle(parent);
  const opts = { fill: style.color, font: fontOf(style) };
  const range = document.createRange();
  range.selectNodeContents(node);
  const rects = [...range.getClientRects()].filter((r) => r.width > 0);
  if (rects.length === 0) return "";
  const collapse = !/^pre/.test(style.whiteSpace);
  const show = (s) => (collapse ? s.replace(/\s+/g, " ") : s);
  const turn = textTurn(style);
  if (turn) {
    // one turned line, centred on its glyphs' box as on screen (drawn level at its left
    // edge, labels of different lengths stood at different heights)
    const left = Math.min(...rects.map((r) => r.left));
    const top = Math.min(...rects.map((r) => r.top));
    const right = Math.max(...rects.map((r) => r.right));
    const bottom = Math.max(...rects.map((r) => r.bottom));
    const [cx, cy] = [(left + right) / 2 - ox, (top + bottom) / 2 - oy];
    return textSvg(cx, cy, show(text), { ...opts, anchor: "middle", rotate: turn });
  }
  // one line: a single rect, or a line cut by an ellipsis (which splits its rects in two)
  const cut = style.textOverflow === "ellipsis" && /^(pre|nowrap)$/.test(style.whiteSpace);
  if (rects.length === 1 || (cut && !text.includes("\n"))) {
    const r = rects[0];
    const shown = clipped(parent, style, r, show(text).trim() ? show(text) : text);
    return textSvg(r.left - ox, r.top - oy + r.height / 2, shown, opts);
  }
  // wrapped text: one <text> per line, found by where each character lands
  let out = "";
  let line = "";
  let lineRect = null;
  for (let i = 0; i < text.length; i++) {
    range.setStart(node, i);
    range.setEnd(node, i + 1);
    const r = range.getClientRects()[0];
    if (!r) {
      line += text[i];
      continue;
    }
    if (lineRect && Math.abs(r.top - lineRect.top) > 1) {
      out += textSvg(lineRect.left - ox, lineRect.top - oy + lineRect.height / 2, show(line), opts);
      line = "";
      lineRect = null;
    }
    if (!lineRect) lineRect = { left: r.left, top: r.top, height: r.height };
    line += text[i];
  }
  if (lineRect && line.trim()) {
    out += textSvg(lineRect.left - ox, lineRect.top - oy + lineRect.height / 2, show(line), opts);
  }
  return out;
}

// a theme's ink for plot text its stylesheet paints black (bqplot's titles and axis labels)
let plotInk = null;

function inlineSvg(node, r, ox, oy) {
  const copy = node.cloneNode(true);
  const src = [node, ...node.querySelectorAll("*")];
  const dst = [copy, ...copy.querySelectorAll("*")];
  src.forEach((s, i) => {
    const cs = getComputedStyle(s);
    const d = dst[i];
    const black = plotInk && /^(text|tspan)$/i.test(s.tagName) && cs.fill === "rgb(0, 0, 0)";
    d.setAttribute(
      "style",
      SVG_STYLE.map((p) => `${p}:${black && p === "fill" ? plotInk : cs.getPropertyValue(p)}`)
        .filter((decl) => !decl.endsWith(":"))
        .join(";"),
    );
    if (d.tagName?.toLowerCase() === "foreignobject") d.remove();
  });
  // a plot's legend may stand outside its box, as on screen
  copy.setAttribute(
    "overflow",
    getComputedStyle(node).overflow === "visible" ? "visible" : "hidden",
  );
  copy.setAttribute("x", round(r.left - ox));
  copy.setAttribute("y", round(r.top - oy));
  copy.setAttribute("width", round(r.width));
  copy.setAttribute("height", round(r.height));
  copy.removeAttribute("class");
  return new XMLSerializer().serializeToString(copy);
}

let clipIds = 0;
// more marks than this (a scatter of every point of a long prompt) and the canvas is embedded
// as the image it is: an SVG of 100k elements helps no one
const MAX_MARKS = 40000;
let scratch = null;

function scratchContext() {
  scratch ??= document.createElement("canvas").getContext("2d");
  return scratch;
}

function imageHref(image, crop) {
  const [sx, sy, sw, sh] = crop || [0, 0, image.width, image.height];
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(sw));
  canvas.height = Math.max(1, Math.round(sh));
  const ctx = canvas.getContext("2d");
  if (image instanceof ImageData) ctx.putImageData(image, 0, 0);
  else ctx.drawImage(image, sx, sy, sw, sh, 0, 0, canvas.width, canvas.height);
  return canvas.toDataURL("image/png");
}

const recorderTools = {
  measure(font, text) {
    const ctx = scratchContext();
    ctx.font = font;
    return ctx.measureText(text);
  },
  color(css) {
    const ctx = scratchContext();
    ctx.fillStyle = "#000000";
    ctx.fillStyle = css;
    return ctx.fillStyle;
  },
  imageHref,
};

/** Whether a canvas (2D or WebGL) paints no pixel at all. */
function blank(canvas) {
  const probe = document.createElement("canvas");
  [probe.width, probe.height] = [canvas.width, canvas.height];
  const ctx = probe.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(canvas, 0, 0);
  const pixels = ctx.getImageData(0, 0, probe.width, probe.height).data;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return false;
  return true;
}

// while a figure is drawn: the pixels per CSS pixel of a canvas embedded as an image (the
// PNG's scale), and the most marks a canvas becomes before it is one
let raster = { pixelRatio: 1, maxMarks: MAX_MARKS };

/** A canvas' registered drawing redrawn as SVG marks in its box, or null (embed it instead). */
function canvasMarks(canvas, x, y, width, height) {
  const draw = drawingOf(canvas);
  if (!draw) return null;
  const base = [width / canvas.width, 0, 0, height / canvas.height, x, y];
  const ctx = new SvgContext({ canvas, base, limit: raster.maxMarks, ...recorderTools });
  try {
    draw(ctx, { pixelRatio: raster.pixelRatio });
  } catch (err) {
    // too many marks: stopped early, the image it is; anything else is a bug worth seeing
    if (!(err instanceof TooManyMarks)) console.warn("lmscope figure: canvas as image:", err);
    return null;
  }
  const id = `lms-clip-${++clipIds}`;
  return (
    `<clipPath id="${id}">${rectSvg(x, y, width, height)}</clipPath>` +
    `<g clip-path="url(#${id})">${ctx.svg()}</g>`
  );
}

/**
 * A canvas with a registered drawing painted again at the figure's pixel ratio, as a PNG data
 * URL (null if its drawing fails): a canvas too dense for marks is then as sharp as the PNG
 * around it, not at the screen's resolution. The drawing sees its own canvas (its size) and
 * transforms in that canvas' pixels; the context maps them onto the larger one.
 */
function rasterHref(canvas, width, height) {
  const draw = drawingOf(canvas);
  const ratio = raster.pixelRatio;
  if (!draw || width * ratio <= canvas.width + 0.5) return null; // as sharp already
  const out = document.createElement("canvas");
  out.width = Math.max(1, Math.round(width * ratio));
  out.height = Math.max(1, Math.round(height * ratio));
  const real = out.getContext("2d");
  const base = [out.width / canvas.width, 0, 0, out.height / canvas.height, 0, 0];
  const setTransform = (a, b, c, d, e, f) => {
    if (typeof a === "object" && a !== null) ({ a, b, c, d, e, f } = a);
    real.setTransform(...multiply(base, a === undefined ? [1, 0, 0, 1, 0, 0] : [a, b, c, d, e, f]));
  };
  const putImageData = (data, dx, dy) => {
    // device pixels of the small canvas: drawn scaled onto the large one
    const tmp = document.createElement("canvas");
    [tmp.width, tmp.height] = [data.width, data.height];
    tmp.getContext("2d").putImageData(data, 0, 0);
    real.save();
    real.setTransform(...base);
    real.drawImage(tmp, dx, dy);
    real.restore();
  };
  const own = { canvas, setTransform, resetTransform: () => setTransform(), putImageData };
  const ctx = new Proxy(real, {
    get(target, key) {
      if (key in own) return own[key];
      const value = target[key];
      return typeof value === "function" ? value.bind(target) : value;
    },
    set(target, key, value) {
      target[key] = value;
      return true;
    },
  });
  real.setTransform(...base);
  try {
    draw(ctx, { pixelRatio: ratio });
  } catch (err) {
    console.warn("lmscope figure: canvas at screen resolution:", err);
    return null;
  }
  return out.toDataURL("image/png");
}

function nodeSvg(node, ox, oy) {
  if (node.nodeType === Node.TEXT_NODE) return textNodeSvg(node, ox, oy);
  if (node.nodeType !== Node.ELEMENT_NODE || node.matches(SKIP)) return "";
  const style = getComputedStyle(node);
  if (style.display === "none" || style.visibility === "hidden" || style.opacity === "0") return "";
  const r = node.getBoundingClientRect();
  if (node instanceof SVGElement) {
    return node.tagName.toLowerCase() === "svg" && r.width > 0 ? inlineSvg(node, r, ox, oy) : "";
  }
  let out = boxSvg(style, r, ox, oy);
  if (node.tagName === "CANVAS" || node.tagName === "IMG") {
    // the picture fills the content box, inside the border and padding drawn around it
    const inset = (side) =>
      (Number.parseFloat(style[`border${side}Width`]) || 0) +
      (Number.parseFloat(style[`padding${side}`]) || 0);
    const x = r.left - ox + inset("Left");
    const y = r.top - oy + inset("Top");
    const width = r.width - inset("Left") - inset("Right");
    const height = r.height - inset("Top") - inset("Bottom");
    if (width <= 0 || height <= 0) return out;
    if (node.tagName === "IMG")
      return `${out}<image${attrs({ x, y, width, height, href: node.src })}/>`;
    if (!node.width || !node.height) return out;
    const marks = canvasMarks(node, x, y, width, height);
    if (marks !== null) return out + marks;
    if (blank(node)) return out; // a plot's unused WebGL layer: nothing to embed
    // a canvas without a drawing of its own (another library's) as the screen shows it
    const href = rasterHref(node, width, height) ?? node.toDataURL("image/png");
    return `${out}<image${attrs({ x, y, width, height, preserveAspectRatio: "none", href })}/>`;
  }
  let inner = "";
  for (const child of node.childNodes) inner += nodeSvg(child, ox, oy);
  if (inner && style.overflow !== "visible") {
    const id = `lms-clip-${++clipIds}`;
    out += `<clipPath id="${id}">${rectSvg(r.left - ox, r.top - oy, r.width, r.height)}</clipPath>`;
    return `${out}<g clip-path="url(#${id})">${inner}</g>`;
  }
  return out + inner;
}

/** Text of a control row item that names it: its own text nodes and ipywidgets' label. */
function controlName(item) {
  const own = [...item.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE);
  const labels = item.querySelectorAll(".widget-label, .widget-label-basic > span");
  return [...own, ...labels]
    .map((n) => n.textContent.replace(/\u200b/g, "").trim())
    .filter(Boolean)
    .join(" ");
}

function controlValue(input) {
  if (input.tagName === "SELECT") return input.selectedOptions[0]?.textContent ?? "";
  if (input.type === "checkbox" || input.type === "radio") return input.checked ? "on" : "off";
  return input.value;
}

const shown = (node) => node.getClientRects().length > 0 && !node.closest(SKIP);

/** "name: value" for each control the figure leaves out, and the words in its rows. */
export function controlsCaption(root) {
  const parts = [];
  const items = root.querySelectorAll(".lms-bar > *, .widget-inline-hbox");
  for (const item of items) {
    if (!shown(item) || item.matches("button, .lms-note")) continue;
    const input = item.matches(CONTROL) ? item : item.querySelector(CONTROL);
    if (!input) {
      if (item.closest(".lms-bar")) parts.push(item.textContent.trim());
      continue;
    }
    if (input.type === "hidden") continue;
    const name = controlName(item);
    if (name) parts.push(`${name}: ${controlValue(input)}`); // unnamed: its row says it in words
  }
  return [...new Set(parts.filter(Boolean))].join(" · "); // a composite's views share some
}

/** Run `work` with the control rows (and any other control) of `root` hidden. */
function withoutControls(root, work) {
  const rows = [...root.querySelectorAll(CONTROL_ROWS)].filter(
    (row) => row.matches(".lms-bar") || row.querySelector(CONTROL),
  );
  const loose = [...root.querySelectorAll(`${CONTROL}, button`)].filter(
    (c) => !rows.some((row) => row.contains(c)),
  );
  const hidden = [...rows, ...loose.map((c) => c.closest("label") || c)];
  const saved = hidden.map((node) => [node, node.getAttribute("style")]);
  // no height, but still their width: the view keeps the width it has on screen
  for (const node of hidden) {
    for (const p of ["height", "min-height", "margin", "padding", "border-width"]) {
      node.style.setProperty(p, "0", "important");
    }
    node.style.setProperty("overflow", "hidden", "important");
    node.style.setProperty("visibility", "hidden", "important");
  }
  try {
    return work();
  } finally {
    for (const [node, style] of saved) {
      if (style === null) node.removeAttribute("style");
      else node.setAttribute("style", style);
    }
  }
}

/** Words of `text` in lines no wider than `width` px in `font`. */
function wrapWords(text, width, font) {
  const ctx = scratchContext();
  ctx.font = `${font.size} ${font.family}`;
  const lines = [];
  let line = "";
  for (const word of text.split(" ")) {
    const next = line ? `${line} ${word}` : word;
    if (line && ctx.measureText(next).width > width) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line) lines.push(line);
  return lines;
}

function withTheme(root, vars, work) {
  if (!vars) return work();
  const saved = Object.keys(vars).map((k) => [k, root.style.getPropertyValue(k)]);
  for (const [k, v] of Object.entries(vars)) root.style.setProperty(k, v);
  // the page's own colour too: the views' text that is not themed by variable inherits it
  const color = root.style.color;
  root.style.color = vars["--jp-ui-font-color1"];
  try {
    return work();
  } finally {
    root.style.color = color;
    for (const [k, v] of saved) {
      if (v) root.style.setProperty(k, v);
      else root.style.removeProperty(k);
    }
  }
}

/**
 * The picture of `root` as drawn now, as an SVG document string, with `title` above it and
 * the settings of the controls it leaves out under that. Options: `width`/`height` (output
 * size; the other keeps the aspect), `theme`: "light" (default), "dark" (the theme's
 * colours replaced by those while drawing) or "current" (as it is on screen), `pixelRatio`
 * (pixels per CSS pixel of a canvas that stays an image: the PNG's scale; default the
 * screen's), `maxMarks` (the most marks a canvas becomes before it is embedded as an image).
 */
export function figureSvg(
  root,
  { title = "", width, height, theme = "light", pixelRatio, maxMarks = MAX_MARKS } = {},
) {
  const look = THEMES[theme];
  if (!look) throw new Error(`theme must be one of ${Object.keys(THEMES).join(", ")}`);
  const caption = controlsCaption(root);
  const draw = () => {
    const r = root.getBoundingClientRect();
    const ink = look.ink ?? getComputedStyle(root).color;
    const captionLines = caption ? wrapWords(caption, Math.max(200, r.width), CAPTION_FONT) : [];
    const top = (title ? TITLE_HEIGHT : 0) + captionLines.length * CAPTION_LINE;
    const ox = r.left - PAD;
    const oy = r.top - PAD - top;
    const naturalWidth = r.width + 2 * PAD;
    const naturalHeight = r.height + 2 * PAD + top;
    const bg = look.background ?? themeBackground(root);
    let content = rectSvg(0, 0, naturalWidth, naturalHeight, { fill: bg });
    if (title) {
      content += textSvg(PAD, PAD + TITLE_HEIGHT / 2 - 2, title, {
        fill: ink,
        font: { family: "system-ui, sans-serif", size: "14px", weight: "600" },
      });
    }
    captionLines.forEach((line, i) => {
      const y = PAD + (title ? TITLE_HEIGHT : 0) + (i + 0.5) * CAPTION_LINE - 2;
      content += textSvg(PAD, y, line, { fill: ink, font: CAPTION_FONT });
    });
    for (const child of root.childNodes) content += nodeSvg(child, ox, oy);
    return svgDocument({ naturalWidth, naturalHeight, width, height, content });
  };
  plotInk = theme === "dark" ? look.ink : null;
  raster = { pixelRatio: pixelRatio || window.devicePixelRatio || 1, maxMarks };
  try {
    return withTheme(root, look.vars, () => withoutControls(root, draw));
  } finally {
    plotInk = null;
    raster = { pixelRatio: 1, maxMarks: MAX_MARKS };
  }
}

function themeBackground(node) {
  for (let n = node; n; n = n.parentElement) {
    const bg = getComputedStyle(n).backgroundColor;
    if (!transparent(bg)) return bg;
  }
  return "#ffffff";
}

/** The natural size written in an SVG document's viewBox. */
export function viewBoxSize(svg) {
  const m = /viewBox="0 0 ([\d.]+) ([\d.]+)"/.exec(svg);
  return m ? { width: Number(m[1]), height: Number(m[2]) } : null;
}

/** An SVG document drawn into a PNG Blob at `scale` (or at `width`/`height` pixels). */
export async function pngBlob(svg, { scale = 2, width, height } = {}) {
  const natural = viewBoxSize(svg);
  const size = figureSize(natural.width, natural.height, { width, height, scale });
  const url = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
  try {
    const img = new Image();
    img.width = size.width;
    img.height = size.height;
    await new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error("the figure's SVG did not load as an image"));
      img.src = url;
    });
    const canvas = document.createElement("canvas");
    canvas.width = size.width;
    canvas.height = size.height;
    canvas.getContext("2d").drawImage(img, 0, 0, size.width, size.height);
    return await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  } finally {
    URL.revokeObjectURL(url);
  }
}

let crcTable = null;

function crc32(bytes) {
  crcTable ??= Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  let c = 0xffffffff;
  for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** PNG bytes with a pHYs chunk saying `dpi` (print size = pixels / dpi), after IHDR. */
export function withDpi(png, dpi) {
  const perMetre = Math.round(dpi / 0.0254);
  const chunk = new Uint8Array(21);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, 9);
  chunk.set([0x70, 0x48, 0x59, 0x73], 4); // "pHYs"
  view.setUint32(8, perMetre);
  view.setUint32(12, perMetre);
  chunk[16] = 1; // unit: metre
  view.setUint32(17, crc32(chunk.subarray(4, 17)));
  const end = 8 + 8 + 13 + 4; // signature, IHDR
  const out = new Uint8Array(png.length + chunk.length);
  out.set(png.subarray(0, end));
  out.set(chunk, end);
  out.set(png.subarray(end), end + chunk.length);
  return out;
}

/** Base64 of a Blob's bytes (what Python reads back from the page). */
export async function blobBase64(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}
