// Direct logit attribution: a layers x heads grid of each head's share of one logit on a
// diverging scale (red pushes the target, blue against it), then each layer's attention bias
// (when the model has one), MLP and total. Hover shows a value; clicking a head selects it
// (`layer`, `head`) and Python answers with its share by source position, drawn over the
// prompt's tokens (on a long prompt, its largest sources only).
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
  finiteSum,
  gridLayout,
  headline,
  layerTotals,
  maxAbs,
  share,
  shownSources,
} from "../parts/attribution_grid.js";
import CSS from "../styles/attribution.css";

const COLUMN_LABELS = { bias: "bias", mlp: "MLP", total: "sum" };
// at most this many source chips in a head's row (its largest shares on a long prompt)
const SOURCE_CHIPS = 256;

function read(model) {
  const nLayers = model.get("n_layers");
  const nHeads = model.get("n_heads");
  const heads = decode(model.get("heads")) ?? new Float32Array(nLayers * nHeads);
  const mlps = decode(model.get("mlps")) ?? new Float32Array(nLayers);
  const bias = decode(model.get("attn_bias")) ?? new Float32Array(nLayers);
  // each block's share from the stream (known before it is split), else its parts' sum
  const blocks = decode(model.get("blocks"));
  const totals =
    blocks?.length === nLayers ? blocks : layerTotals(heads, mlps, bias, nLayers, nHeads);
  const layout = gridLayout(nLayers, nHeads, {
    bias: bias.some((v) => v !== 0 && !Number.isNaN(v)),
  });
  const scale = maxAbs(heads, mlps, bias);
  const pending = Array.from({ length: nLayers }, (_, l) => Number.isNaN(mlps[l]));
  return { nHeads, heads, mlps, bias, totals, pending, layout, scale, totalScale: maxAbs(totals) };
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
  const pendingFill = cssVar(root, "--jp-layout-color3", "#d0d7de");
  for (const column of layout.columns) {
    const scale = column.kind === "total" ? state.totalScale : state.scale;
    for (let l = 0; l < layout.nLayers; l++) {
      const value = cellValue(state, { kind: column.kind, layer: l, head: column.head });
      // a block not split yet: its cells grey until they come (its total is known)
      ctx.fillStyle = Number.isNaN(value) ? pendingFill : rgb(diverging(value / scale));
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
  const status = el("div", { className: "lms-attr-status lms-note", parent: root });
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
    const bias = finiteSum(state.bias);
    const waiting = state.pending.some(Boolean)
      ? ` + blocks not split yet ${share(finiteSum(state.totals.filter((_, l) => state.pending[l])))}`
      : "";
    parts.textContent = [
      `= heads ${share(finiteSum(state.heads))} + MLPs ${share(finiteSum(state.mlps))}` +
        `${bias ? ` + attention bias ${share(bias)}` : ""}${waiting} + embeddings ` +
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
    status.textContent = model.get("status") || "";
    status.hidden = !status.textContent;
    host.dataset.exact = String(model.get("exact"));
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
    const shown = shownSources(values, at, SOURCE_CHIPS);
    if (shown.length < at + 1) {
      const left = total - shown.reduce((a, i) => a + values[i], 0);
      sourcesTitle.append(
        el("div", {
          className: "lms-note",
          text:
            `the ${shown.length - 1} of ${at} earlier tokens with the largest shares, in order, ` +
            `and this one; … stands for the tokens between (${share(left)} in all)`,
        }),
      );
    }
    let previous = -1;
    for (const i of shown) {
      if (i > previous + 1) {
        const gap = el("span", { className: "lms-attr-gap", text: "…", parent: sourcesRow });
        gap.title = `tokens ${previous + 1}–${i - 1} left out`;
      }
      previous = i;
      const text = tokens[i] ?? "";
      const chip = tokenElement(text, { className: "lms-attr-src" });
      const color = diverging(values[i] / scale);
      chip.style.background = rgb(color);
      chip.style.color = textOn(color);
      chip.classList.toggle("at", i === at);
      chip.title = `${i} ${JSON.stringify(text)}: ${share(values[i])}`;
      chip.dataset.share = String(values[i]);
      chip.dataset.position = String(i);
      sourcesRow.append(chip);
    }
    host.dataset.sources = String(shown.length);
  };

  const cellUnder = (event) => {
    const box = canvas.getBoundingClientRect();
    return cellAt(state.layout, event.clientX - box.left, event.clientY - box.top);
  };
  canvas.addEventListener("pointermove", (event) => {
    const cell = cellUnder(event);
    tip.style.display = cell ? "block" : "none";
    if (!cell) return;
    const value = cellValue(state, cell);
    tip.textContent = Number.isNaN(value)
      ? `${cellName(cell)}: not split yet (block ${cell.layer}: ${share(state.totals[cell.layer])})`
      : `${cellName(cell)}: ${share(value)}`;
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
  for (const name of ["heads", "mlps", "attn_bias", "blocks", "summary", "tokens", "token"])
    model.on(`change:${name}`, refresh);
  for (const name of ["layer", "head", "sources", "can_open"])
    model.on(`change:${name}`, () => {
      draw();
      drawSources();
    });
  model.on("change:status", describe);
}

export default defineView(render);
