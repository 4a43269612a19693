// Direct logit attribution: a layers x heads grid of each head's share of one logit on a
// diverging scale (red pushes the target, blue against it), then each layer's attention bias
// (when the model has one), MLP and total. Hover shows a value; clicking a head selects it
// (`layer`, `head`) and Python answers with its share by source position, drawn over the
// prompt's tokens.
import { diverging, rgb } from "../lib/colors.js";
import { el } from "../lib/dom.js";
import { cssVar, textOn } from "../lib/theme.js";
import { tokenElement } from "../lib/tokens.js";
import { drawsWith } from "../lib/vector.js";
import { defineView, injectCss } from "../lib/view.js";
import { decode } from "../lib/wire.js";
import {
  cellAt,
  cellName,
  gridLayout,
  headline,
  layerTotals,
  maxAbs,
  share,
} from "../parts/attribution_grid.js";
import CSS from "../styles/attribution.css";

const COLUMN_LABELS = { bias: "bias", mlp: "MLP", total: "sum" };

function read(model) {
  const nLayers = model.get("n_layers");
  const nHeads = model.get("n_heads");
  const heads = decode(model.get("heads")) ?? new Float32Array(nLayers * nHeads);
  const mlps = decode(model.get("mlps")) ?? new Float32Array(nLayers);
  const bias = decode(model.get("attn_bias")) ?? new Float32Array(nLayers);
  const totals = layerTotals(heads, mlps, bias, nLayers, nHeads);
  const layout = gridLayout(nLayers, nHeads, { bias: bias.some((v) => v !== 0) });
  const scale = maxAbs(heads, mlps, bias);
  return { nHeads, heads, mlps, bias, totals, layout, scale, totalScale: maxAbs(totals) };
}

function cellValue(state, cell) {
  if (cell.kind === "head") return state.heads[cell.layer * state.nHeads + cell.head];
  if (cell.kind === "bias") return state.bias[cell.layer];
  if (cell.kind === "mlp") return state.mlps[cell.layer];
  return state.totals[cell.layer];
}

function sizeGrid(canvas, { layout }) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.ceil(layout.width * ratio);
  canvas.height = Math.ceil(layout.height * ratio);
  canvas.style.width = `${layout.width}px`;
  canvas.style.height = `${layout.height}px`;
  return canvas.getContext("2d");
}

function drawGrid(ctx, root, state, selected) {
  const { layout } = state;
  const ratio = window.devicePixelRatio || 1;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, layout.width, layout.height);
  ctx.font = "10px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  ctx.fillStyle = cssVar(root, "--jp-ui-font-color2", "#57606a");
  ctx.textAlign = "center";
  for (const column of layout.columns) {
    const label = column.kind === "head" ? String(column.head) : COLUMN_LABELS[column.kind];
    if (column.kind !== "head" || layout.cellW >= 14 || column.head % 5 === 0)
      ctx.fillText(label, column.x + column.w / 2, layout.headerHeight / 2);
  }
  ctx.textAlign = "right";
  for (let l = 0; l < layout.nLayers; l++) {
    if (layout.cellH >= 10 || l % 5 === 0) {
      const y = layout.headerHeight + (l + 0.5) * layout.cellH;
      ctx.fillText(String(l), layout.labelWidth - 4, y);
    }
  }
  for (const column of layout.columns) {
    const scale = column.kind === "total" ? state.totalScale : state.scale;
    for (let l = 0; l < layout.nLayers; l++) {
      const value = cellValue(state, { kind: column.kind, layer: l, head: column.head });
      ctx.fillStyle = rgb(diverging(value / scale));
      const y = layout.headerHeight + l * layout.cellH;
      ctx.fillRect(column.x, y, column.w - 1, layout.cellH - 1);
    }
  }
  if (selected) {
    const column = layout.columns[selected.head];
    const y = layout.headerHeight + selected.layer * layout.cellH;
    ctx.strokeStyle = cssVar(root, "--jp-brand-color1", "#1976d2");
    ctx.lineWidth = 2;
    ctx.strokeRect(column.x - 1, y - 1, column.w + 1, layout.cellH + 1);
  }
}

function render({ model, el: host }) {
  injectCss(CSS);
  const root = el("div", { className: "lms-attr", parent: host });
  const title = el("div", { className: "lms-attr-head", parent: root });
  const parts = el("div", { className: "lms-attr-parts lms-note", parent: root });
  const canvas = el("canvas", { parent: root });
  const legend = el("div", { className: "lms-attr-legend lms-note", parent: root });
  const sourcesTitle = el("div", { className: "lms-attr-sources-title", parent: root });
  const sourcesRow = el("div", { className: "lms-attr-sources", parent: root });
  const tip = el("div", { className: "lms-tip", parent: root });
  let state = read(model);
  drawsWith(canvas, (ctx) => drawGrid(ctx, root, state, selected()));

  const selected = () => {
    const layer = model.get("layer");
    const head = model.get("head");
    return layer >= 0 && head >= 0 ? { layer, head } : null;
  };

  const draw = () => {
    const chosen = selected();
    drawGrid(sizeGrid(canvas, state), root, state, chosen);
    host.dataset.selected = chosen ? `${chosen.layer},${chosen.head}` : "";
  };

  const describe = () => {
    const summary = model.get("summary") || {};
    title.textContent = headline(summary, model.get("tokens") || [], model.get("token"));
    const sum = (values) => values.reduce((a, b) => a + b, 0);
    const bias = sum(state.bias);
    parts.textContent = [
      `= heads ${share(sum(state.heads))} + MLPs ${share(sum(state.mlps))}` +
        `${bias ? ` + attention bias ${share(bias)}` : ""} + embeddings ` +
        `${share(summary.embed ?? 0)} + rest ${share(summary.rest ?? 0)}`,
      `attributed: ${summary.attributed ?? ""}; final norm frozen at its scale ` +
        `(${summary.final_norm ?? ""}); unexplained ${(summary.unexplained ?? 0).toExponential(1)}`,
    ].join("\n");
    const target = JSON.stringify(summary.target_token ?? "");
    const against = summary.foil_token ? ` over ${JSON.stringify(summary.foil_token)}` : "";
    legend.textContent =
      `red pushes ${target}${against}, blue against; heads, bias and MLPs share one scale ` +
      `(\u00b1${state.scale.toFixed(2)}), layer totals their own (\u00b1${state.totalScale.toFixed(2)}). ` +
      "Rows are layers, columns heads; click a head for its sources.";
  };

  const drawSources = () => {
    const chosen = selected();
    const values = decode(model.get("sources"));
    sourcesRow.replaceChildren();
    if (!chosen || !values || values.length === 0) {
      sourcesTitle.textContent = "Click a head to split its share by source position.";
      host.dataset.sources = "0";
      return;
    }
    const tokens = model.get("tokens") || [];
    const at = model.get("token");
    const total = values.reduce((a, b) => a + b, 0);
    sourcesTitle.textContent =
      `L${chosen.layer} H${chosen.head}: ${share(total)}, by the token it read from ` +
      "(weight \u00d7 value through the head's output columns)";
    if (model.get("can_open")) {
      const open = el("button", { text: "open in attention view", parent: sourcesTitle });
      open.addEventListener("click", () => {
        model.set("open_head", model.get("open_head") + 1);
        model.save_changes();
      });
    }
    const scale = maxAbs(values);
    tokens.slice(0, at + 1).forEach((text, i) => {
      const chip = tokenElement(text, { className: "lms-attr-src" });
      const color = diverging(values[i] / scale);
      chip.style.background = rgb(color);
      chip.style.color = textOn(color);
      chip.classList.toggle("at", i === at);
      chip.title = `${i} ${JSON.stringify(text)}: ${share(values[i])}`;
      chip.dataset.share = String(values[i]);
      sourcesRow.append(chip);
    });
    host.dataset.sources = String(sourcesRow.childElementCount);
  };

  const cellUnder = (event) => {
    const box = canvas.getBoundingClientRect();
    return cellAt(state.layout, event.clientX - box.left, event.clientY - box.top);
  };
  canvas.addEventListener("pointermove", (event) => {
    const cell = cellUnder(event);
    tip.style.display = cell ? "block" : "none";
    if (!cell) return;
    tip.textContent = `${cellName(cell)}: ${share(cellValue(state, cell))}`;
    const box = root.getBoundingClientRect();
    tip.style.left = `${event.clientX - box.left + 12}px`;
    tip.style.top = `${event.clientY - box.top + 12}px`;
    host.dataset.hover = tip.textContent;
  });
  canvas.addEventListener("pointerleave", () => {
    tip.style.display = "none";
  });
  canvas.addEventListener("click", (event) => {
    const cell = cellUnder(event);
    if (!cell) return;
    model.set("layer", cell.layer);
    model.set("head", cell.kind === "head" ? cell.head : -1);
    model.save_changes();
  });

  const refresh = () => {
    state = read(model);
    draw();
    describe();
    drawSources();
  };
  refresh();
  for (const name of ["heads", "mlps", "attn_bias", "summary", "tokens", "token"])
    model.on(`change:${name}`, refresh);
  for (const name of ["layer", "head", "sources", "can_open"])
    model.on(`change:${name}`, () => {
      draw();
      drawSources();
    });
}

export default defineView(render);
