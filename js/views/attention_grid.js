// A grid of attention heatmaps: every head of one layer, or one head through every layer,
// for one trace, two traces side by side, or their difference. Each heatmap arrives pooled to
// at most size x size ("unit" uint8 probabilities, float16 differences) and is drawn on its own
// canvas. `layer` and `head` are the selection: a click on a heatmap sets both.
import {
  cellText,
  colorRamp,
  gridColumns,
  legendText,
  maxAbsOf,
  paintCells,
  tipText,
} from "../parts/heatmap.js";
import CSS from "../styles/attention_grid.css";
import { control, numberChoices } from "../lib/controls.js";
import { el, toolbar } from "../lib/dom.js";
import { cssColor, textOn } from "../lib/theme.js";
import { drawsWith } from "../lib/vector.js";
import { defineView, injectCss } from "../lib/view.js";
import { decodeArray } from "../lib/wire.js";

// Up to this many tokens a heatmap is drawn unpooled at screen resolution with its weights
// written in the cells and the tokens listed above it, like the classic annotated heatmaps.
const ANNOTATE_MAX = 12;

function controls(model, bar) {
  const by = control(model, "by", bar, {
    kind: "select",
    label: "show",
    options: [
      ["layer", "all heads of a layer"],
      ["head", "one head in every layer"],
    ],
  });
  const layer = control(model, "layer", bar, {
    kind: "select",
    label: "layer",
    options: numberChoices(model, "n_layers"),
  });
  const head = control(model, "head", bar, {
    kind: "select",
    label: "head",
    options: numberChoices(model, "n_heads"),
  });
  control(model, "mute_sink", bar, { kind: "checkbox", label: "mute first token" });
  const mode = control(model, "mode", bar, {
    kind: "select",
    label: "compare",
    options: [
      ["side", "side by side"],
      ["diff", "difference (first − second)"],
      ["single", "first only"],
    ],
  });
  const show = () => {
    const isLayer = model.get("by") === "layer";
    layer.label.hidden = !isLayer; // by layer: the head is picked by clicking a heatmap
    head.label.hidden = isLayer;
    mode.label.hidden = model.get("names").length < 2;
    mode.input.querySelector("option[value=diff]").disabled = !model.get("can_diff");
  };
  model.on("change:by", show);
  show();
  return { by, show };
}

/** Each cell's weight written in its middle, light on dark fills and theme ink on light ones. */
function writeWeights(ctx, pixels, values, offset, n, { diff, ink, family, dpr }) {
  const step = ctx.canvas.width / n;
  const size = Math.min(step * 0.34, 13 * dpr);
  if (size < 9 * dpr) return; // too small to read: the colours alone say more
  ctx.font = `${Math.round(size)}px ${family}`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  for (let i = 0; i < n * n; i++) {
    const v = diff ? values[offset + i] : values[offset + i] / 255;
    if (Math.abs(v) < 0.005) continue; // rounds to .00: blank
    const fill = [pixels[i * 4], pixels[i * 4 + 1], pixels[i * 4 + 2]];
    ctx.fillStyle = textOn(fill) === "#fff" ? "#fff" : `rgb(${ink.join(",")})`;
    ctx.fillText(cellText(v, diff), ((i % n) + 0.5) * step, (Math.floor(i / n) + 0.5) * step);
  }
}

function render({ model, el: root }) {
  injectCss(CSS);
  const box = el("div", { className: "lms-ag", parent: root });
  const bar = toolbar(box);
  const panelsBox = el("div", { className: "lms-ag-panels", parent: box });
  const legend = el("div", { className: "lms-ag-legend lms-note", parent: box });
  const tip = el("div", { className: "lms-tip", parent: box });
  const { show } = controls(model, bar);
  // a long prompt's grid starts as a first pass; Python says how far the exact pooling is
  const status = el("span", { className: "lms-note", parent: bar });
  const showStatus = () => {
    status.textContent = model.get("status") || "";
    root.dataset.exact = model.get("exact") === false ? "0" : "1";
  };
  showStatus();
  let cellNodes = [];

  const markSelected = () => {
    const [ly, hd] = [String(model.get("layer")), String(model.get("head"))];
    for (const node of cellNodes) {
      node.classList.toggle("selected", node.dataset.layer === ly && node.dataset.head === hd);
    }
  };

  const showTip = (ev, canvas, cell) => {
    const b = canvas.getBoundingClientRect();
    const i = Math.min(cell.r - 1, Math.floor(((ev.clientY - b.top) / b.height) * cell.r));
    const j = Math.min(cell.r2 - 1, Math.floor(((ev.clientX - b.left) / b.width) * cell.r2));
    const value = cell.values[cell.offset + i * cell.r2 + j];
    tip.textContent = tipText({ ...cell, i, j, value });
    const host = box.getBoundingClientRect();
    tip.style.display = "block";
    tip.style.left = `${Math.min(ev.clientX - host.left + 14, host.width - 220)}px`;
    tip.style.top = `${ev.clientY - host.top + 14}px`;
    root.dataset.hover = `${cell.index}:${i}:${j}`;
  };

  const addCell = (grid, cell, paints, theme, readTheme) => {
    const node = el("div", { className: "lms-ag-cell", parent: grid });
    el("div", { className: "lms-ag-label lms-note", text: cell.label, parent: node });
    const canvas = el("canvas", { parent: node });
    const paint = (ctx, theme) => {
      const img = new ImageData(cell.r2, cell.r);
      paintCells(img.data, cell.values, cell.offset, cell.r * cell.r2, theme);
      const scratch = new OffscreenCanvas(cell.r2, cell.r);
      scratch.getContext("2d").putImageData(img, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(scratch, 0, 0, ctx.canvas.width, ctx.canvas.height);
      if (cell.annotate) writeWeights(ctx, img.data, cell.values, cell.offset, cell.r, theme);
    };
    drawsWith(canvas, (ctx) => paint(ctx, readTheme())); // a figure: in the figure's colours
    paints.push(() => {
      // annotated: as many pixels as on screen, so the numbers are crisp
      const side = cell.annotate ? Math.round(canvas.getBoundingClientRect().width * theme.dpr) : 0;
      canvas.width = side || Math.max(cell.r2, 96);
      canvas.height = side || Math.max(cell.r, 96);
      paint(canvas.getContext("2d"), theme);
    });
    [node.dataset.layer, node.dataset.head] = cell.where.map(String);
    canvas.addEventListener("mousemove", (ev) => showTip(ev, canvas, cell));
    canvas.addEventListener("mouseleave", () => {
      tip.style.display = "none";
    });
    node.addEventListener("click", () => {
      model.set("layer", cell.where[0]);
      model.set("head", cell.where[1]);
      model.save_changes();
      markSelected();
    });
    cellNodes.push(node);
  };

  function draw() {
    // theme colours only resolve once the view is in the document (Jupyter renders detached)
    if (!box.isConnected) return requestAnimationFrame(draw);
    const t0 = performance.now();
    show();
    const names = model.get("names");
    const diff = model.get("mode") === "diff";
    const panels = (diff ? [model.get("diff")] : [model.get("panel_a"), model.get("panel_b")])
      .map(decodeArray)
      .filter(Boolean);
    const tokenSets = [model.get("tokens"), model.get("tokens_b")];
    const titles = diff ? [`${names[0]}  −  ${names[1]}`] : names;
    const maxAbs = diff && panels[0] ? maxAbsOf(panels[0].values) : 1;
    const readTheme = () => {
      const bg = cssColor(box, "var(--jp-layout-color0, #fff)");
      return {
        pos: colorRamp(bg, cssColor(box, "var(--jp-brand-color1, #1976d2)")),
        neg: colorRamp(bg, cssColor(box, "var(--jp-error-color1, #d32f2f)")),
        diff,
        maxAbs,
        dpr: window.devicePixelRatio || 1,
        ink: cssColor(box, "var(--jp-ui-font-color1, #222)"),
        family: getComputedStyle(box).fontFamily, // canvas fonts cannot read CSS variables
      };
    };
    const theme = readTheme();
    const labels = model.get("labels");
    panelsBox.replaceChildren();
    cellNodes = [];
    const paints = []; // painted once every panel is laid out (a lone first panel measures wider)
    panels.forEach((panel, p) => {
      const [n, r, r2] = panel.shape;
      const pane = el("div", { className: "lms-ag-panel", parent: panelsBox });
      el("div", { className: "lms-ag-title", text: titles[p] ?? "", parent: pane });
      const tokens = diff ? tokenSets[0] : tokenSets[p];
      const annotate = r === tokens.length && r2 === tokens.length && r <= ANNOTATE_MAX;
      if (annotate) {
        const key = `rows (queries) and columns (keys): ${tokens.join("  ")}`;
        el("div", { className: "lms-ag-key lms-note", text: key, parent: pane });
      }
      const grid = el("div", { className: "lms-ag-cells", parent: pane });
      grid.style.gridTemplateColumns = `repeat(${gridColumns(n, panels.length)}, minmax(0, 1fr))`;
      for (let c = 0; c < n; c++) {
        const cell = { index: c, label: labels[c], where: model.get("cells")[c], tokens };
        Object.assign(cell, { r, r2, values: panel.values, offset: c * r * r2, annotate, diff });
        addCell(grid, cell, paints, theme, readTheme);
      }
    });
    for (const paint of paints) paint();
    markSelected();
    root.dataset.annotated = String(box.querySelector(".lms-ag-key") !== null);
    const pooledTo = panels[0]?.shape[1] ?? 0;
    legend.textContent = legendText({ diff, maxAbs, tokens: tokenSets[0].length, pooledTo });
    root.dataset.cells = String(cellNodes.length);
    root.dataset.renderMs = (performance.now() - t0).toFixed(2);
  }

  draw();
  for (const name of ["panel_a", "panel_b", "diff", "labels", "mode", "can_diff"]) {
    model.on(`change:${name}`, draw);
  }
  model.on("change:layer", markSelected);
  model.on("change:head", markSelected);
  model.on("change:status", showStatus);
  model.on("change:exact", showStatus);
}

export default defineView(render);
