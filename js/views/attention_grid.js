// A grid of attention heatmaps: every head of one layer, or one head through every layer,
// for one trace, two traces side by side, or their difference. Each heatmap arrives pooled to
// at most size x size (uint8 probabilities, float16 differences) and is drawn on its own canvas.
import { textOn } from "../lib/theme.js";
import { defineView } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const CSS = `
.lms-ag { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color0, #fff); max-width: 980px; position: relative; }
.lms-ag-bar { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: center; padding: 4px 0 6px; }
.lms-ag-bar label { display: inline-flex; gap: 4px; align-items: center; white-space: nowrap; }
.lms-ag-bar select { font: inherit; color: inherit; background: var(--jp-layout-color1, #fff);
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 2px; }
.lms-ag-panels { display: flex; gap: 16px; align-items: flex-start; }
.lms-ag-panel { flex: 1 1 0; min-width: 0; }
.lms-ag-title { font-weight: 600; padding: 2px 0 4px; white-space: pre; overflow: hidden; text-overflow: ellipsis; }
.lms-ag-cells { display: grid; gap: 6px; }
.lms-ag-cell { cursor: pointer; }
.lms-ag-cell canvas { display: block; width: 100%; aspect-ratio: 1; image-rendering: pixelated;
  outline: 1px solid var(--jp-border-color2, #ddd); }
.lms-ag-cell.selected canvas { outline: 2px solid var(--jp-brand-color1, #1976d2); }
.lms-ag-key { font-size: 11px; color: var(--jp-ui-font-color2, #555); padding: 0 0 4px; white-space: pre-wrap; }
.lms-ag-label { font-size: 11px; color: var(--jp-ui-font-color2, #555); padding: 1px 0; }
.lms-ag-legend { color: var(--jp-ui-font-color2, #555); padding: 6px 0 0; }
.lms-ag-tip { position: absolute; pointer-events: none; display: none; z-index: 2; padding: 3px 6px;
  background: var(--jp-layout-color2, #eee); border: 1px solid var(--jp-border-color1, #bbb);
  border-radius: 3px; white-space: pre; font-family: var(--jp-code-font-family, ui-monospace, monospace); }
.lms-ag-error { color: var(--jp-error-color1, #d32f2f); white-space: pre-wrap; }
`;

// Up to this many tokens a heatmap is drawn unpooled at screen resolution with its weights
// written in the cells and the tokens listed above it, like the classic annotated heatmaps.
const ANNOTATE_MAX = 12;

function el(tag, cls, parent) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (parent) parent.appendChild(node);
  return node;
}

function option(select, value, text) {
  const o = el("option", "", select);
  o.value = String(value);
  o.textContent = text;
  return o;
}

// Resolve any CSS colour (including var(--jp-…) with fallbacks) to [r, g, b].
function rgb(node, expr) {
  const probe = el("span", "", node);
  probe.style.color = expr;
  const m = getComputedStyle(probe).color.match(/[\d.]+/g) || ["0", "0", "0"];
  probe.remove();
  return m.slice(0, 3).map(Number);
}

function lut(from, to) {
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const s = Math.sqrt(i / 255); // √ so weak structure stays visible beside a strong sink
    for (let c = 0; c < 3; c++) table[i * 3 + c] = from[c] + (to[c] - from[c]) * s;
  }
  return table;
}

// Which tokens pooled row i of r covers (same bounds as torch's adaptive pooling).
function span(i, r, n) {
  return [Math.floor((i * n) / r), Math.ceil(((i + 1) * n) / r) - 1];
}

// Two decimals without the leading zero (".42"), signed for differences.
function cellText(v, diff) {
  const text = Math.abs(v).toFixed(2).replace(/^0/, "");
  return diff ? `${v < 0 ? "−" : "+"}${text}` : text;
}

function tokenText(tokens, [a, b]) {
  return a === b ? `${JSON.stringify(tokens[a] ?? "")} (${a})` : `tokens ${a}–${b}`;
}

function render({ model, el: root }) {
  el("style", "", root).textContent = CSS;
  const box = el("div", "lms-ag", root);
  const bar = el("div", "lms-ag-bar", box);
  const panelsBox = el("div", "lms-ag-panels", box);
  const legend = el("div", "lms-ag-legend", box);
  const tip = el("div", "lms-ag-tip", box);
  const errorBox = el("div", "lms-ag-error", box);

  const by = el("select", "", el("label", "", bar));
  by.parentNode.prepend("show");
  option(by, "layer", "all heads of a layer");
  option(by, "head", "one head in every layer");
  const pickLabel = el("label", "", bar);
  const pickText = el("span", "", pickLabel);
  const pick = el("select", "", pickLabel);
  const muteLabel = el("label", "", bar);
  const mute = el("input", "", muteLabel);
  mute.type = "checkbox";
  muteLabel.append("mute first token");
  const modeLabel = el("label", "", bar);
  modeLabel.append("compare");
  const mode = el("select", "", modeLabel);
  option(mode, "side", "side by side");
  const diffOpt = option(mode, "diff", "difference (first − second)");
  option(mode, "single", "first only");

  by.addEventListener("change", () => {
    model.set("by", by.value);
    model.save_changes();
  });
  pick.addEventListener("change", () => {
    model.set(model.get("by") === "layer" ? "layer" : "head", Number(pick.value));
    model.save_changes();
  });
  mute.addEventListener("change", () => {
    model.set("mute_sink", mute.checked);
    model.save_changes();
  });
  mode.addEventListener("change", () => {
    model.set("mode", mode.value);
    model.save_changes();
  });

  let cellNodes = [];

  function controls() {
    const isLayer = model.get("by") === "layer";
    by.value = model.get("by");
    pickText.textContent = isLayer ? "layer" : "head";
    const n = isLayer ? model.get("n_layers") : model.get("n_heads");
    if (pick.options.length !== n || pick.dataset.by !== by.value) {
      pick.replaceChildren();
      for (let i = 0; i < n; i++) option(pick, i, String(i));
      pick.dataset.by = by.value;
    }
    pick.value = String(isLayer ? model.get("layer") : model.get("head"));
    mute.checked = model.get("mute_sink");
    modeLabel.style.display = model.get("names").length > 1 ? "" : "none";
    diffOpt.disabled = !model.get("can_diff");
    mode.value = model.get("mode");
  }

  function draw() {
    // theme colours only resolve once the view is in the document (Jupyter renders detached)
    if (!box.isConnected) {
      requestAnimationFrame(draw);
      return;
    }
    const t0 = performance.now();
    controls();
    errorBox.textContent = model.get("error") || "";
    const labels = model.get("labels");
    const where = model.get("cells");
    const names = model.get("names");
    const m = model.get("mode");
    const diff = m === "diff";
    const raw = model.get("panels") || [];
    const panels = raw.map((env) => ({ data: decode(env), shape: env.shape }));
    const tokenSets = [model.get("tokens"), model.get("tokens_b")];
    const titles = diff ? [`${names[0]}  −  ${names[1]}`] : names.slice(0, panels.length);
    const bg = rgb(box, "var(--jp-layout-color0, #fff)");
    const pos = lut(bg, rgb(box, "var(--jp-brand-color1, #1976d2)"));
    const neg = lut(bg, rgb(box, "var(--jp-error-color1, #d32f2f)"));
    let maxAbs = 0;
    if (diff && panels[0]) for (const v of panels[0].data) maxAbs = Math.max(maxAbs, Math.abs(v));
    maxAbs = maxAbs || 1;
    const dpr = window.devicePixelRatio || 1;
    const ink = rgb(box, "var(--jp-ui-font-color1, #222)");
    const family = getComputedStyle(box).fontFamily; // canvas fonts cannot read CSS variables

    // Each cell's weight in the middle of it, light on dark fills and theme ink on light ones;
    // masked cells and weights that round to .00 stay blank.
    function writeWeights(ctx, pixels, values, off, n, isDiff) {
      const step = ctx.canvas.width / n;
      const size = Math.min(step * 0.34, 13 * dpr);
      if (size < 9 * dpr) return; // too small to read: the colours alone say more
      ctx.font = `${Math.round(size)}px ${family}`;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          const v = isDiff ? values[off + i * n + j] : values[off + i * n + j] / 255;
          if (Math.abs(v) < 0.005) continue;
          const px = (i * n + j) * 4;
          const fill = [pixels[px], pixels[px + 1], pixels[px + 2]];
          ctx.fillStyle = textOn(fill) === "#fff" ? "#fff" : `rgb(${ink.join(",")})`;
          ctx.fillText(cellText(v, isDiff), (j + 0.5) * step, (i + 0.5) * step);
        }
      }
    }

    panelsBox.replaceChildren();
    cellNodes = [];
    const cols = Math.ceil(Math.sqrt(labels.length * (panels.length > 1 ? 0.5 : 1.5)));
    // canvases are painted once every panel is laid out (a lone first panel measures wider)
    const paints = [];
    panels.forEach((panel, p) => {
      const [n, r, r2] = panel.shape;
      const pane = el("div", "lms-ag-panel", panelsBox);
      const title = el("div", "lms-ag-title", pane);
      title.textContent = titles[p] ?? "";
      const tokens = diff ? tokenSets[0] : tokenSets[p];
      const annotate = r === tokens.length && r2 === tokens.length && r <= ANNOTATE_MAX;
      if (annotate) {
        const key = el("div", "lms-ag-key", pane);
        key.textContent = `rows (queries) and columns (keys): ${tokens.join("  ")}`;
      }
      const grid = el("div", "lms-ag-cells", pane);
      grid.style.gridTemplateColumns = `repeat(${Math.min(cols, n)}, minmax(0, 1fr))`;
      const scratch = document.createElement("canvas");
      scratch.width = r2;
      scratch.height = r;
      const sctx = scratch.getContext("2d");
      for (let c = 0; c < n; c++) {
        const cell = el("div", "lms-ag-cell", grid);
        el("div", "lms-ag-label", cell).textContent = labels[c];
        const canvas = el("canvas", "", cell);
        const img = sctx.createImageData(r2, r);
        const off = c * r * r2;
        for (let i = 0; i < r * r2; i++) {
          let table = pos;
          let level;
          if (diff) {
            const v = panel.data[off + i];
            table = v < 0 ? neg : pos;
            level = Math.round((Math.abs(v) / maxAbs) * 255);
          } else level = panel.data[off + i];
          img.data[i * 4] = table[level * 3];
          img.data[i * 4 + 1] = table[level * 3 + 1];
          img.data[i * 4 + 2] = table[level * 3 + 2];
          img.data[i * 4 + 3] = 255;
        }
        paints.push(() => {
          // annotated: as many pixels as on screen, so the numbers are crisp
          const side = annotate ? Math.round(canvas.getBoundingClientRect().width * dpr) : 0;
          canvas.width = side || Math.max(r2, 96);
          canvas.height = side || Math.max(r, 96);
          sctx.putImageData(img, 0, 0);
          const ctx = canvas.getContext("2d");
          ctx.imageSmoothingEnabled = false;
          ctx.drawImage(scratch, 0, 0, canvas.width, canvas.height);
          if (annotate) writeWeights(ctx, img.data, panel.data, off, r, diff);
        });
        const [ly, hd] = where[c];
        cell.dataset.layer = String(ly);
        cell.dataset.head = String(hd);
        cell.classList.toggle(
          "selected",
          ly === model.get("selected_layer") && hd === model.get("selected_head"),
        );
        cellNodes.push(cell);
        canvas.addEventListener("mousemove", (ev) => {
          const b = canvas.getBoundingClientRect();
          const i = Math.min(r - 1, Math.floor(((ev.clientY - b.top) / b.height) * r));
          const j = Math.min(r2 - 1, Math.floor(((ev.clientX - b.left) / b.width) * r2));
          const q = span(i, r, tokens.length);
          const k = span(j, r2, tokens.length);
          const v = panel.data[off + i * r2 + j];
          const value = diff ? `${v >= 0 ? "+" : ""}${v.toFixed(3)}` : (v / 255).toFixed(3);
          const pooled = q[0] !== q[1] || k[0] !== k[1] ? " (max of block)" : "";
          tip.textContent = `${labels[c]}\nquery ${tokenText(tokens, q)}\nkey   ${tokenText(tokens, k)}\n${diff ? "difference" : "weight"} ${value}${pooled}`;
          const host = box.getBoundingClientRect();
          tip.style.display = "block";
          tip.style.left = `${Math.min(ev.clientX - host.left + 14, host.width - 220)}px`;
          tip.style.top = `${ev.clientY - host.top + 14}px`;
          root.dataset.hover = `${c}:${i}:${j}`;
        });
        canvas.addEventListener("mouseleave", () => {
          tip.style.display = "none";
        });
        cell.addEventListener("click", () => {
          model.set("selected_layer", ly);
          model.set("selected_head", hd);
          model.save_changes();
          for (const node of cellNodes) {
            node.classList.toggle(
              "selected",
              node.dataset.layer === String(ly) && node.dataset.head === String(hd),
            );
          }
        });
      }
    });
    for (const paint of paints) paint();
    root.dataset.annotated = String(box.querySelector(".lms-ag-key") !== null);
    const first = panels[0];
    const pooled = first && first.shape[1] < tokenSets[0].length;
    legend.textContent = diff
      ? `red: second prompt attends more, blue: first attends more; full colour = ±${maxAbs.toFixed(3)}`
      : `rows: queries, columns: keys; colour √weight from 0 to 1${pooled ? `; ${tokenSets[0].length} tokens pooled to ${first.shape[1]} (max per block)` : ""}; click a heatmap to open it`;
    root.dataset.cells = String(cellNodes.length);
    root.dataset.renderMs = (performance.now() - t0).toFixed(2);
  }

  draw();
  for (const name of ["panels", "labels", "error", "mode", "can_diff"])
    model.on(`change:${name}`, draw);
  for (const name of ["by", "layer", "head", "mute_sink"]) model.on(`change:${name}`, controls);
}

export default defineView(render);
