// JupyterLab's CSS variables with fallbacks for pages without them (VS Code, Colab, static).

/**
 * Resolve a CSS custom property on `node`, or the fallback when the page does not define it.
 * Call it once the node is attached: a detached node resolves nothing.
 * @param {Element} node
 * @param {string} name e.g. "--jp-ui-font-color1"
 * @param {string} fallback
 */
export function cssVar(node, name, fallback) {
  const value = getComputedStyle(node).getPropertyValue(name).trim();
  return value || fallback;
}

/** Whether the surrounding theme is dark, judged from the page background's luminance. */
export function isDark(node) {
  const bg = cssVar(node, "--jp-layout-color0", "");
  const m = bg.match(/^#([0-9a-f]{6})$/i);
  if (!m) return false;
  const n = Number.parseInt(m[1], 16);
  return luminance([(n >> 16) & 255, (n >> 8) & 255, n & 255]) < 0.4;
}

/** Relative luminance of an sRGB colour given as [r, g, b] in 0..255. */
export function luminance([r, g, b]) {
  const lin = (c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

/** Black or white text, whichever contrasts more with the background [r, g, b]. */
export function textOn(rgb) {
  return luminance(rgb) > 0.179 ? "#000" : "#fff";
}

/**
 * Any CSS colour (a var(--jp-…) with its fallback included) as [r, g, b], resolved where
 * `node` stands: canvases cannot read CSS variables themselves.
 * @param {Element} node an attached element
 * @param {string} expr
 * @returns {number[]}
 */
export function cssColor(node, expr) {
  const probe = document.createElement("span");
  probe.style.color = expr;
  node.append(probe);
  const m = getComputedStyle(probe).color.match(/[\d.]+/g) || ["0", "0", "0"];
  probe.remove();
  return m.slice(0, 3).map(Number);
}
