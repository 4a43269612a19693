// Patching: the sweep's normalised effect as a heatmap (layers down, positions or heads
// across) on a diverging scale; hover says the cell's values, a click selects it and Python
// answers with the patched run's top next tokens and the answer's lens probability per layer.
import { cellAt, cellSize, effectColor, LEFT } from "../parts/patching.js";
import CSS from "../styles/patching.css";
import { el } from "../lib/dom.js";
import { setTokenText } from "../lib/tokens.js";
import { drawsWith } from "../lib/vector.js";
import { defineView, injectCss } from "../lib/view.js";
import { decode } from "../lib/wire.js";

function sizeMap(canvas, rows, cols, size) {
  const dpr = window.devicePixelRatio || 1;
  const width = LEFT + cols * size.w;
  const height = rows * size.h;
  canvas.width = width * dpr;
  canvas.height = height * dpr;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  return canvas.getContext("2d");
}

function drawMap(ctx, effect, rows, cols, size, layers, selected) {
  const { canvas } = ctx;
  const dpr = window.devicePixelRatio || 1;
  const width = LEFT + cols * size.w;
  const height = rows * size.h;
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

function drawLegend(ctx) {
  for (let x = 0; x < 120; x++) {
    ctx.fillStyle = effectColor((x / 119) * 2 - 1);
    ctx.fillRect(x, 0, 1, 10);
  }
}

/** The answer's probability after every block: corrupted (grey) and patched (red). */
function drawLens(ctx, lens, n) {
  const width = 260;
  const height = 90;
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

function render({ model, el: root }) {
  injectCss(CSS);
  const header = el("div", { className: "lms-pt-header", parent: root });
  const body = el("div", { className: "lms-pt-body", parent: root });
  const mapBox = el("div", { className: "lms-pt-map", parent: body });
  const side = el("div", { className: "lms-pt-side", parent: body });
  const canvas = el("canvas", { parent: mapBox });
  const colsRow = el("div", { className: "lms-pt-cols", parent: mapBox });
  colsRow.style.setProperty("--lms-pt-left", `${LEFT}px`);
  const legend = el("div", { className: "lms-pt-legend", parent: mapBox });
  const status = el("div", { className: "lms-pt-status", parent: mapBox });
  const legendBar = el("canvas");
  legend.append("−1", legendBar, "+1 · effect: 0 = corrupted run, 1 = clean run restored");
  [legendBar.width, legendBar.height] = [120, 10];
  drawLegend(drawsWith(legendBar, drawLegend).getContext("2d"));

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
  const paintMap = (ctx) =>
    drawMap(ctx, effect, ...shape(), size, model.get("layers"), selectedCell());
  drawsWith(canvas, paintMap);
  const redraw = () => paintMap(sizeMap(canvas, ...shape(), size));

  const build = () => {
    header.textContent = model.get("header");
    effect = decode(model.get("effect")) || new Float32Array(0);
    metric = decode(model.get("metric")) || new Float32Array(0);
    const [rows, cols] = shape();
    size = cellSize(rows, cols);
    colsRow.replaceChildren();
    for (const label of model.get("column_labels")) {
      const span = setTokenText(el("span", { className: "lms-pt-col" }), label);
      span.style.width = `${size.w}px`;
      colsRow.append(span);
    }
    root.dataset.rows = String(rows);
    root.dataset.cols = String(cols);
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
      root.dataset.compared = "";
      return;
    }
    el("div", { className: "lms-pt-label", text: label, parent: side });
    const grid = el("div", { className: "lms-pt-tops", parent: side });
    const k = tops[0].length;
    for (const name of ["corrupted", "patched"])
      el("div", { className: "h", text: name, parent: grid });
    for (let i = 0; i < k; i++) {
      for (let run = 0; run < 2; run++) {
        const row = el("div", { className: "lms-pt-row", parent: grid });
        if (tops[run][i] === model.get("answer_token")) row.classList.add("answer");
        row.append(setTokenText(el("span"), tops[run][i]));
        el("span", { text: `${(probs[run * k + i] * 100).toFixed(1)}%`, parent: row });
      }
    }
    const answer = model.get("answer_token");
    const lensTitle = `p(${answer}) after each block (logit lens, 0..1): corrupted grey, patched red`;
    el("div", { className: "lms-pt-lens-title", text: lensTitle, parent: side });
    const lensCanvas = el("canvas", { parent: side });
    [lensCanvas.width, lensCanvas.height] = [260, 90];
    const paintLens = (ctx) => drawLens(ctx, values, values.length / 2);
    paintLens(drawsWith(lensCanvas, paintLens).getContext("2d"));
    root.dataset.compared = label;
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
