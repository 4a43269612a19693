// Figures: a view as it is drawn now, as one SVG document (text stays <text>, canvases become
// embedded images, bqplot's own SVG is inlined with its styles), and that SVG as a PNG at a
// chosen scale. The one drawing route: the in-view download control and Python's
// save_svg/save_png (a headless browser on the saved page) both call figureSvg.

const SVG_NS = "http://www.w3.org/2000/svg";
/** Parts of a view that are not the picture: controls, notes, the download control. */
const SKIP =
  ".lms-figure-skip, .lms-static-note, .lms-figure-control, .lms-tip, button, script, style";
const TITLE_HEIGHT = 24;
const PAD = 8;
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

/** Text for an SVG document: every token string passes here, so markup stays text. */
export function escapeXml(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;")
    .replace(/[^\t\n\r\u0020-\ufffd]/gu, (c) => (c.length > 1 ? c : "\ufffd"));
}

/** ` name="value"` for each attribute whose value is not null/undefined. */
export function attrs(map) {
  return Object.entries(map)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => ` ${k}="${escapeXml(typeof v === "number" ? round(v) : v)}"`)
    .join("");
}

export function round(x) {
  return Math.round(x * 100) / 100;
}

export function rectSvg(x, y, width, height, { fill, stroke, strokeWidth, rx } = {}) {
  return `<rect${attrs({ x, y, width, height, fill: fill || "none", stroke, "stroke-width": strokeWidth, rx })}/>`;
}

export function textSvg(x, y, text, { fill, font = {}, anchor } = {}) {
  const a = attrs({
    x,
    y,
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
  if (rects.length === 1) {
    const r = rects[0];
    return textSvg(
      r.left - ox,
      r.top - oy + r.height / 2,
      show(text).trim() ? show(text) : text,
      opts,
    );
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

function controlSvg(node, style, r, ox, oy) {
  // a select or a number/text field shows its value; sliders and checkboxes are not drawn
  let value = null;
  if (node.tagName === "SELECT") value = node.selectedOptions[0]?.textContent ?? "";
  else if (["text", "number", ""].includes(node.type)) value = node.value;
  if (value === null) return "";
  const pad = Number.parseFloat(style.paddingLeft) || 2;
  return textSvg(r.left - ox + pad, r.top - oy + r.height / 2, value, {
    fill: style.color,
    font: fontOf(style),
  });
}

function inlineSvg(node, r, ox, oy) {
  const copy = node.cloneNode(true);
  const src = [node, ...node.querySelectorAll("*")];
  const dst = [copy, ...copy.querySelectorAll("*")];
  src.forEach((s, i) => {
    const cs = getComputedStyle(s);
    const d = dst[i];
    d.setAttribute(
      "style",
      SVG_STYLE.map((p) => `${p}:${cs.getPropertyValue(p)}`)
        .filter((decl) => !decl.endsWith(":"))
        .join(";"),
    );
    if (d.tagName?.toLowerCase() === "foreignobject") d.remove();
  });
  copy.setAttribute("x", round(r.left - ox));
  copy.setAttribute("y", round(r.top - oy));
  copy.setAttribute("width", round(r.width));
  copy.setAttribute("height", round(r.height));
  copy.removeAttribute("class");
  return new XMLSerializer().serializeToString(copy);
}

let clipIds = 0;

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
    const href = node.toDataURL("image/png");
    return `${out}<image${attrs({ x, y, width, height, preserveAspectRatio: "none", href })}/>`;
  }
  if (["SELECT", "INPUT", "TEXTAREA"].includes(node.tagName)) {
    return out + controlSvg(node, style, r, ox, oy);
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

function withLightTheme(root, work) {
  const saved = Object.keys(LIGHT).map((k) => [k, root.style.getPropertyValue(k)]);
  for (const [k, v] of Object.entries(LIGHT)) root.style.setProperty(k, v);
  try {
    return work();
  } finally {
    for (const [k, v] of saved) {
      if (v) root.style.setProperty(k, v);
      else root.style.removeProperty(k);
    }
  }
}

/**
 * The picture of `root` as drawn now, as an SVG document string, with `title` above it.
 * Options: `width`/`height` (output size; the other keeps the aspect), `theme`: "light"
 * (default: the theme's colours replaced by light ones while drawing) or "current".
 */
export function figureSvg(root, { title = "", width, height, theme = "light" } = {}) {
  const draw = () => {
    const r = root.getBoundingClientRect();
    const top = title ? TITLE_HEIGHT : 0;
    const ox = r.left - PAD;
    const oy = r.top - PAD - top;
    const naturalWidth = r.width + 2 * PAD;
    const naturalHeight = r.height + 2 * PAD + top;
    const bg = theme === "light" ? "#ffffff" : themeBackground(root);
    let content = rectSvg(0, 0, naturalWidth, naturalHeight, { fill: bg });
    if (title) {
      content += textSvg(PAD, PAD + TITLE_HEIGHT / 2 - 2, title, {
        fill: theme === "light" ? "#000000" : getComputedStyle(root).color,
        font: { family: "system-ui, sans-serif", size: "14px", weight: "600" },
      });
    }
    for (const child of root.childNodes) content += nodeSvg(child, ox, oy);
    return svgDocument({ naturalWidth, naturalHeight, width, height, content });
  };
  return theme === "light" ? withLightTheme(root, draw) : draw();
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

/** Base64 of a Blob's bytes (what Python reads back from the page). */
export async function blobBase64(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}
