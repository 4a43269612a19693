// Patching: the sweep's normalised effect as a heatmap (layers down, positions or heads
// across) on a diverging scale; hover says the cell's values, a click selects it and Python
// answers with the patched run's top next tokens and the answer's lens probability per layer.
import { diverging, rgb } from "../lib/colors.js";
import { setTokenText } from "../lib/tokens.js";
import { defineView, injectCss } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const CSS = `
.lms-pt-header { margin-bottom: 6px; color: var(--jp-ui-font-color1, #1f2328); }
.lms-pt-body { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.lms-pt-map { position: relative; }
.lms-pt-map canvas { display: block; cursor: pointer; }
.lms-pt-cols { display: flex; margin-left: var(--lms-pt-left); }
.lms-pt-col { writing-mode: vertical-rl; transform: rotate(180deg); white-space: pre; overflow: hidden;
  height: 64px; font: 11px var(--jp-code-font-family, ui-monospace, monospace); text-align: right; }
.lms-pt-status { min-height: 1.4em; margin-top: 4px; font-size: 12px; color: var(--jp-ui-font-color2, #57606a); }
.lms-pt-legend { display: flex; align-items: center; gap: 6px; font-size: 11px; margin-top: 4px; }
.lms-pt-legend canvas { border: 1px solid var(--jp-border-color2, #ccc); }
.lms-pt-side { min-width: 260px; font-size: 12px; }
.lms-pt-label { font-family: var(--jp-code-font-family, ui-monospace, monospace); margin-bottom: 6px; }
.lms-pt-tops { display: grid; grid-template-columns: 1fr 1fr; gap: 2px 12px; }
.lms-pt-tops .h { font-weight: 600; }
.lms-pt-row { display: flex; justify-content: space-between; gap: 6px; white-space: pre;
  font-family: var(--jp-code-font-family, ui-monospace, monospace); }
.lms-pt-row.answer { font-weight: 700; }
`;

const LEFT = 34; // px for the layer numbers

/** Cell size that keeps the map within about 760 x 420 px, readable but not huge. */
export function cellSize(rows, cols) {
  const w = Math.max(12, Math.min(40, Math.floor(760 / Math.max(1, cols))));
  const h = Math.max(8, Math.min(22, Math.floor(420 / Math.max(1, rows))));
  return { w, h };
}

/** The [row, col] under canvas point (x, y), or null outside the cells. */
export function cellAt(x, y, rows, cols, size, left = LEFT) {
  const col = Math.floor((x - left) / size.w);
  const row = Math.floor(y / size.h);
  if (x < left || col < 0 || row < 0 || col >= cols || row >= rows) return null;
  return [row, col];
}

/** Fill colour of an effect: the diverging map clamped to [-1, 1]; grey where not patched. */
export function effectColor(value) {
  return Number.isFinite(value) ? rgb(diverging(value)) : "rgb(200,200,200)";
}

function drawMap(canvas, effect, rows, cols, size, layers, selected) {
  const dpr = window.devicePixelRatio || 1;
  const width = LEFT + cols * size.w;
  const height = rows * size.h;
  canvas.width = width * dpr;
  canvas.height = height * dpr;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "10px sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  ctx.fillStyle = getComputedStyle(canvas).color || "#222";
  const every = Math.ceil(11 / size.h); // label every n-th layer so numbers never overlap
  for (let r = 0; r < rows; r++) {
    if (r % every === 0) ctx.fillText(String(layers[r]), LEFT - 4, r * size.h + size.h / 2);
    for (let c = 0; c < cols; c++) {
      ctx.fillStyle = effectColor(effect[r * cols + c]);
      ctx.fillRect(LEFT + c * size.w, r * size.h, size.w, size.h);
    }
    ctx.fillStyle = getComputedStyle(canvas).color || "#222";
  }
  if (selected) {
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 2;
    ctx.strokeRect(
      LEFT + selected[1] * size.w + 1,
      selected[0] * size.h + 1,
      size.w - 2,
      size.h - 2,
    );
  }
}

function drawLegend(canvas) {
  canvas.width = 120;
  canvas.height = 10;
  const ctx = canvas.getContext("2d");
  for (let x = 0; x < 120; x++) {
    ctx.fillStyle = effectColor((x / 119) * 2 - 1);
    ctx.fillRect(x, 0, 1, 10);
  }
}

/** The answer's probability after every block: corrupted (grey) and patched (red). */
function drawLens(canvas, lens, n) {
  const width = 260;
  const height = 90;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "rgba(128,128,128,0.4)";
  ctx.strokeRect(0.5, 0.5, width - 1, height - 1);
  const line = (offset, colour) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    for (let i = 0; i < n; i++) {
      const x = 4 + (i / Math.max(1, n - 1)) * (width - 8);
      const y = height - 4 - lens[offset + i] * (height - 8);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    }
    ctx.stroke();
  };
  line(0, "rgb(140,140,140)");
  line(n, "rgb(178,24,43)");
}

function render({ model, el }) {
  injectCss(CSS);
  const header = document.createElement("div");
  header.className = "lms-pt-header";
  const body = document.createElement("div");
  body.className = "lms-pt-body";
  const mapBox = document.createElement("div");
  mapBox.className = "lms-pt-map";
  const canvas = document.createElement("canvas");
  const colsRow = document.createElement("div");
  colsRow.className = "lms-pt-cols";
  colsRow.style.setProperty("--lms-pt-left", `${LEFT}px`);
  const status = document.createElement("div");
  status.className = "lms-pt-status";
  const legend = document.createElement("div");
  legend.className = "lms-pt-legend";
  const legendBar = document.createElement("canvas");
  legend.append("−1", legendBar, "+1 · effect: 0 = corrupted run, 1 = clean run restored");
  drawLegend(legendBar);
  mapBox.append(canvas, colsRow, legend, status);
  const side = document.createElement("div");
  side.className = "lms-pt-side";
  body.append(mapBox, side);
  el.append(header, body);

  let effect = new Float32Array(0);
  let metric = new Float32Array(0);
  let size = { w: 12, h: 8 };
  const shape = () => [model.get("layers").length, model.get("column_labels").length];
  const selectedCell = () => {
    const row = model.get("layers").indexOf(model.get("layer"));
    const pick = model.get("axis") === "head" ? model.get("head") : model.get("token");
    const col = model.get("columns").indexOf(pick);
    return row >= 0 && col >= 0 ? [row, col] : null;
  };
  const redraw = () =>
    drawMap(canvas, effect, ...shape(), size, model.get("layers"), selectedCell());

  const build = () => {
    header.textContent = model.get("header");
    effect = decode(model.get("effect")) || new Float32Array(0);
    metric = decode(model.get("metric")) || new Float32Array(0);
    const [rows, cols] = shape();
    size = cellSize(rows, cols);
    colsRow.replaceChildren();
    for (const label of model.get("column_labels")) {
      const span = setTokenText(document.createElement("span"), label);
      span.className = "lms-pt-col";
      span.style.width = `${size.w}px`;
      colsRow.append(span);
    }
    el.dataset.rows = String(rows);
    el.dataset.cols = String(cols);
    redraw();
  };

  const describeCell = (row, col) => {
    const cols = shape()[1];
    const layer = model.get("layers")[row];
    const label = model.get("column_labels")[col];
    const source = (model.get("source_labels") || [])[col];
    const from = source && source !== label ? `, clean '${source}'` : "";
    const where =
      model.get("axis") === "head"
        ? label
        : `'${label}' (position ${model.get("columns")[col]}${from})`;
    const value = effect[row * cols + col];
    if (!Number.isFinite(value)) return `layer ${layer} · ${where}: not patched`;
    return `layer ${layer} · ${where}: effect ${value.toFixed(3)} · ${model.get("metric_name")} ${metric[row * cols + col].toFixed(3)}`;
  };
  const onMove = (event) => {
    const rect = canvas.getBoundingClientRect();
    const [rows, cols] = shape();
    const cell = cellAt(event.clientX - rect.left, event.clientY - rect.top, rows, cols, size);
    status.textContent = cell ? describeCell(...cell) : "";
  };
  const onClick = (event) => {
    const rect = canvas.getBoundingClientRect();
    const cell = cellAt(event.clientX - rect.left, event.clientY - rect.top, ...shape(), size);
    if (!cell) return;
    model.set("layer", model.get("layers")[cell[0]]);
    model.set(model.get("axis") === "head" ? "head" : "token", model.get("columns")[cell[1]]);
    model.save_changes();
  };
  canvas.addEventListener("mousemove", onMove);
  canvas.addEventListener("click", onClick);

  const showComparison = () => {
    side.replaceChildren();
    const label = model.get("patch_label");
    const tops = model.get("top_tokens") || [];
    const probs = decode(model.get("top_probs"));
    const values = decode(model.get("answer_lens"));
    if (!label || tops.length !== 2 || !probs || !values) {
      side.textContent = "Click a cell to apply that one patch to the corrupted run.";
      el.dataset.compared = "";
      return;
    }
    const title = document.createElement("div");
    title.className = "lms-pt-label";
    title.textContent = label;
    const grid = document.createElement("div");
    grid.className = "lms-pt-tops";
    const k = tops[0].length;
    for (const name of ["corrupted", "patched"]) {
      const h = document.createElement("div");
      h.className = "h";
      h.textContent = name;
      grid.append(h);
    }
    for (let i = 0; i < k; i++) {
      for (let run = 0; run < 2; run++) {
        const row = document.createElement("div");
        row.className = "lms-pt-row";
        if (tops[run][i] === model.get("answer_token")) row.classList.add("answer");
        const tok = setTokenText(document.createElement("span"), tops[run][i]);
        const p = document.createElement("span");
        p.textContent = `${(probs[run * k + i] * 100).toFixed(1)}%`;
        row.append(tok, p);
        grid.append(row);
      }
    }
    const lensTitle = document.createElement("div");
    lensTitle.style.marginTop = "8px";
    lensTitle.textContent = `p(${model.get("answer_token")}) after each block (logit lens, 0..1): corrupted grey, patched red`;
    const lens = document.createElement("canvas");
    drawLens(lens, values, values.length / 2);
    side.append(title, grid, lensTitle, lens);
    el.dataset.compared = label;
  };

  build();
  showComparison();
  model.on("change:effect", build);
  model.on("change:header", build);
  for (const trait of ["layer", "token", "head"]) model.on(`change:${trait}`, redraw);
  model.on("change:patch_label", showComparison);
  model.on("change:top_tokens", showComparison);
  model.on("change:answer_lens", showComparison);
  return () => {
    canvas.removeEventListener("mousemove", onMove);
    canvas.removeEventListener("click", onClick);
  };
}

export default defineView(render);
