// Direct logit attribution: a layers x heads grid of each head's share of one logit on a
// diverging scale (red pushes the target, blue against it), then each layer's attention bias
// (when the model has one), MLP and total. Hover shows a value; clicking a head selects it
// (`layer`, `head`) and Python answers with its share by source position, drawn over the
// prompt's tokens.
import CSS from "../styles/attribution.css";
import { diverging, rgb } from "../lib/colors.js";
import { el } from "../lib/dom.js";
import { cssVar, textOn } from "../lib/theme.js";
import { tokenElement } from "../lib/tokens.js";
import { defineView, injectCss } from "../lib/view.js";
import { decode } from "../lib/wire.js";
import { cellAt, gridLayout, maxAbs, share } from "../parts/attribution_grid.js";

const KIND_NAMES = { bias: "attention bias", mlp: "MLP", total: "layer total" };

function quoted(text) {
  return JSON.stringify(text ?? "");
}

function render({ model, el: host }) {
  injectCss(CSS);
  const root = el("div", { className: "lms-attr", parent: host });
  const title = el("div", { className: "lms-attr-head", parent: root });
  const parts = el("div", { className: "lms-attr-parts", parent: root });
  const canvas = el("canvas", { parent: root });
  const legend = el("div", { className: "lms-attr-legend", parent: root });
  const sourcesTitle = el("div", { className: "lms-attr-sources-title", parent: root });
  const sourcesRow = el("div", { className: "lms-attr-sources", parent: root });
  const tip = el("div", { className: "lms-tip lms-attr-tip", parent: root });
  let state = null;

  const read = () => {
    const nLayers = model.get("n_layers");
    const nHeads = model.get("n_heads");
    const heads = decode(model.get("heads")) ?? new Float32Array(nLayers * nHeads);
    const mlps = decode(model.get("mlps")) ?? new Float32Array(nLayers);
    const bias = decode(model.get("attn_bias")) ?? new Float32Array(nLayers);
    const hasBias = bias.some((v) => v !== 0);
    const totals = Array.from({ length: nLayers }, (_, l) => {
      let sum = mlps[l] + bias[l];
      for (let h = 0; h < nHeads; h++) sum += heads[l * nHeads + h];
      return sum;
    });
    const layout = gridLayout(nLayers, nHeads, { bias: hasBias });
    return {
      nLayers,
      nHeads,
      heads,
      mlps,
      bias,
      totals,
      layout,
      scale: maxAbs(heads, mlps, bias),
      totalScale: maxAbs(totals),
    };
  };

  const cellValue = (cell) => {
    const s = state;
    if (cell.kind === "head") return s.heads[cell.layer * s.nHeads + cell.head];
    if (cell.kind === "bias") return s.bias[cell.layer];
    if (cell.kind === "mlp") return s.mlps[cell.layer];
    return s.totals[cell.layer];
  };

  const draw = () => {
    const { layout } = state;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.ceil(layout.width * ratio);
    canvas.height = Math.ceil(layout.height * ratio);
    canvas.style.width = `${layout.width}px`;
    canvas.style.height = `${layout.height}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, layout.width, layout.height);
    const ink = cssVar(root, "--jp-ui-font-color2", "#57606a");
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.fillStyle = ink;
    ctx.textAlign = "center";
    for (const column of layout.columns) {
      const label =
        column.kind === "head"
          ? String(column.head)
          : { bias: "bias", mlp: "MLP", total: "sum" }[column.kind];
      if (column.kind !== "head" || layout.cellW >= 14 || column.head % 5 === 0)
        ctx.fillText(label, column.x + column.w / 2, layout.headerHeight / 2);
    }
    ctx.textAlign = "right";
    for (let l = 0; l < layout.nLayers; l++) {
      if (layout.cellH >= 10 || l % 5 === 0)
        ctx.fillText(
          String(l),
          layout.labelWidth - 4,
          layout.headerHeight + (l + 0.5) * layout.cellH,
        );
    }
    for (const column of layout.columns) {
      const scale = column.kind === "total" ? state.totalScale : state.scale;
      for (let l = 0; l < layout.nLayers; l++) {
        const value = cellValue({ kind: column.kind, layer: l, head: column.head });
        ctx.fillStyle = rgb(diverging(value / scale));
        ctx.fillRect(
          column.x,
          layout.headerHeight + l * layout.cellH,
          column.w - 1,
          layout.cellH - 1,
        );
      }
    }
    const layer = model.get("layer");
    const head = model.get("head");
    if (layer >= 0 && head >= 0) {
      const column = layout.columns[head];
      ctx.strokeStyle = cssVar(root, "--jp-brand-color1", "#1976d2");
      ctx.lineWidth = 2;
      ctx.strokeRect(
        column.x - 1,
        layout.headerHeight + layer * layout.cellH - 1,
        column.w + 1,
        layout.cellH + 1,
      );
    }
    host.dataset.selected = layer >= 0 && head >= 0 ? `${layer},${head}` : "";
  };

  const describe = () => {
    const summary = model.get("summary") || {};
    const tokens = model.get("tokens") || [];
    const at = model.get("token");
    const foil = summary.foil_token ? ` \u2212 logit(${quoted(summary.foil_token)})` : "";
    title.textContent = `logit(${quoted(summary.target_token)})${foil} after token ${at} ${quoted(tokens[at])} = ${share(summary.total ?? 0)}`;
    const headsSum = state.heads.reduce((a, b) => a + b, 0);
    const mlpSum = state.mlps.reduce((a, b) => a + b, 0);
    const biasSum = state.bias.reduce((a, b) => a + b, 0);
    const lines = [
      `= heads ${share(headsSum)} + MLPs ${share(mlpSum)}${biasSum ? ` + attention bias ${share(biasSum)}` : ""} + embeddings ${share(summary.embed ?? 0)} + rest ${share(summary.rest ?? 0)}`,
      `attributed: ${summary.attributed ?? ""}; final norm frozen at its scale (${summary.final_norm ?? ""}); unexplained ${(summary.unexplained ?? 0).toExponential(1)}`,
    ];
    parts.textContent = lines.join("\n");
    const against = summary.foil_token ? ` over ${quoted(summary.foil_token)}` : "";
    legend.textContent = `red pushes ${quoted(summary.target_token)}${against}, blue against; heads, bias and MLPs share one scale (\u00b1${state.scale.toFixed(2)}), layer totals their own (\u00b1${state.totalScale.toFixed(2)}). Rows are layers, columns heads; click a head for its sources.`;
  };

  const drawSources = () => {
    const layer = model.get("layer");
    const head = model.get("head");
    const values = decode(model.get("sources"));
    sourcesRow.replaceChildren();
    if (layer < 0 || head < 0 || !values || values.length === 0) {
      sourcesTitle.textContent = "Click a head to split its share by source position.";
      host.dataset.sources = "0";
      return;
    }
    const tokens = model.get("tokens") || [];
    const at = model.get("token");
    const total = values.reduce((a, b) => a + b, 0);
    sourcesTitle.textContent = `L${layer} H${head}: ${share(total)}, by the token it read from (weight \u00d7 value through the head's output columns)`;
    if (model.get("can_open")) {
      const open = el("button", { parent: sourcesTitle });
      open.textContent = "open in attention view";
      open.addEventListener("click", () => {
        model.set("open_head", model.get("open_head") + 1);
        model.save_changes();
      });
    }
    const scale = maxAbs(values);
    tokens.forEach((text, i) => {
      if (i > at) return;
      const chip = tokenElement(text, { className: "lms-attr-src" });
      const color = diverging(values[i] / scale);
      chip.style.background = rgb(color);
      chip.style.color = textOn(color);
      chip.classList.toggle("at", i === at);
      chip.title = `${i} ${quoted(text)}: ${share(values[i])}`;
      chip.dataset.share = String(values[i]);
      sourcesRow.append(chip);
    });
    host.dataset.sources = String(sourcesRow.childElementCount);
  };

  const refresh = () => {
    state = read();
    draw();
    describe();
    drawSources();
  };

  canvas.addEventListener("pointermove", (event) => {
    const box = canvas.getBoundingClientRect();
    const cell = cellAt(state.layout, event.clientX - box.left, event.clientY - box.top);
    if (!cell) {
      tip.style.display = "none";
      return;
    }
    const name =
      cell.kind === "head"
        ? `L${cell.layer} H${cell.head}`
        : `${KIND_NAMES[cell.kind]} ${cell.layer}`;
    tip.textContent = `${name}: ${share(cellValue(cell))}`;
    tip.style.display = "block";
    tip.style.left = `${event.clientX - root.getBoundingClientRect().left + 12}px`;
    tip.style.top = `${event.clientY - root.getBoundingClientRect().top + 12}px`;
    host.dataset.hover = tip.textContent;
  });
  canvas.addEventListener("pointerleave", () => {
    tip.style.display = "none";
  });
  canvas.addEventListener("click", (event) => {
    const box = canvas.getBoundingClientRect();
    const cell = cellAt(state.layout, event.clientX - box.left, event.clientY - box.top);
    if (!cell) return;
    model.set("layer", cell.layer);
    model.set("head", cell.kind === "head" ? cell.head : -1);
    model.save_changes();
  });

  refresh();
  const names = ["heads", "mlps", "attn_bias", "summary", "tokens", "token", "n_layers", "n_heads"];
  for (const name of names) model.on(`change:${name}`, refresh);
  const reselect = () => {
    draw();
    drawSources();
  };
  for (const name of ["layer", "head", "sources", "can_open"]) model.on(`change:${name}`, reselect);
}

export default defineView(render);
