// Logit lens table: one row per layer (and stage), one column per input position. Each cell
// shows the top-1 prediction decoded from that layer, shaded by its probability; hover shows the
// top-k, click focuses a column. Drawn on one canvas the width of the view; only the columns in
// view are drawn, so a few thousand positions scroll as smoothly as ten.
import { defineView, redrawOnScroll } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const CSS = `
.lms-ll { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color0, #fff); position: relative; max-width: 100%; }
.lms-ll-bar { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center; padding: 4px 0 6px; }
.lms-ll-bar label { display: inline-flex; gap: 4px; align-items: center; white-space: nowrap; }
.lms-ll-bar select { font: inherit; color: inherit; background: var(--jp-layout-color1, #fff);
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 2px; }
.lms-ll-hint { color: var(--jp-ui-font-color2, #666); }
.lms-ll-scroll { overflow-x: auto; overflow-y: hidden; border: 1px solid var(--jp-border-color2, #e0e0e0); }
.lms-ll-canvas { position: sticky; left: 0; display: block; cursor: pointer; }
.lms-ll-tip { position: absolute; pointer-events: none; display: none; z-index: 2; padding: 4px 7px;
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bbb);
  box-shadow: 0 2px 6px rgba(0,0,0,.15); font: 12px var(--jp-code-font-family, monospace); white-space: pre; }
.lms-ll-tip .head { font-family: var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color2, #555); padding-bottom: 2px; }
.lms-ll-tip .row { display: grid; grid-template-columns: 11ch 6ch; gap: 8px; }
.lms-ll-tip .row.tgt { color: var(--jp-warn-color0, #e65100); }
.lms-ll-tip .p { text-align: right; }
.lms-ll-err { color: var(--jp-error-color1, #d32f2f); white-space: pre-wrap; padding-top: 4px; }
`;

const CELL_W = 66;
const CELL_H = 19;
const GUTTER = 58;
const AXIS_H = 22;

function el(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined) n.textContent = text;
  return n;
}

function cssVar(node, name, fallback) {
  const v = getComputedStyle(node).getPropertyValue(name).trim();
  return v || fallback;
}

function pct(p) {
  if (p >= 0.995) return "100%";
  if (p >= 0.1) return `${(p * 100).toFixed(0)}%`;
  if (p >= 0.001) return `${(p * 100).toFixed(1)}%`;
  return p > 0 ? p.toExponential(0) : "≈0";
}

function rankText(r) {
  return r >= 10000
    ? `${Math.round(r / 1000)}k`
    : r >= 1000
      ? `${(r / 1000).toFixed(1)}k`
      : String(r);
}

// Cut a string to fit `w` pixels, with an ellipsis.
function fit(ctx, text, w) {
  if (ctx.measureText(text).width <= w) return text;
  let s = text;
  while (s.length > 1 && ctx.measureText(`${s}…`).width > w) s = s.slice(0, -1);
  return `${s}…`;
}

function render({ model, el: root }) {
  const style = el("style");
  style.textContent = CSS;
  const wrap = el("div", "lms-ll");
  const bar = el("div", "lms-ll-bar");
  const scroll = el("div", "lms-ll-scroll");
  const spacer = el("div");
  const canvas = el("canvas", "lms-ll-canvas");
  const tip = el("div", "lms-ll-tip");
  const err = el("div", "lms-ll-err");
  spacer.appendChild(canvas);
  scroll.appendChild(spacer);
  wrap.append(bar, scroll, tip, err);
  root.replaceChildren(style, wrap);
  const ctx = canvas.getContext("2d");

  let data = null; // decoded state
  let hover = null; // {row, col}

  // Rows top to bottom: the target row, then layers from last to first; with both stages each
  // layer shows post above mid (mid is computed first, so reading upwards follows the model).
  function rows() {
    const view = model.get("view");
    const stages = view === "both" ? ["post", "mid"] : [view];
    const out = [];
    if (model.get("targets").length) out.push({ kind: "target" });
    for (let l = model.get("n_layers") - 1; l >= 0; l--) {
      for (const s of stages) if (data.top[s]) out.push({ kind: "layer", layer: l, stage: s });
    }
    return out;
  }

  function load() {
    const top = {};
    const probs = {};
    const tprobs = {};
    const tranks = {};
    for (const [s, env] of Object.entries(model.get("top") || {})) top[s] = decode(env);
    for (const [s, env] of Object.entries(model.get("probs") || {})) probs[s] = decode(env);
    for (const [s, env] of Object.entries(model.get("target_probs") || {})) tprobs[s] = decode(env);
    for (const [s, env] of Object.entries(model.get("target_ranks") || {})) tranks[s] = decode(env);
    const tokens = model.get("tokens");
    data = {
      top,
      probs,
      tprobs,
      tranks,
      tokens,
      P: tokens.length,
      k: model.get("k"),
      T: model.get("targets").length,
      strings: model.get("strings"),
      ids: decode(model.get("string_ids")) || new Int32Array(0),
    };
    buildBar();
    layout();
  }

  function buildBar() {
    bar.replaceChildren();
    const stages = model.get("stages");
    const viewSel = el("select");
    const opts = [
      ["post", "after each block"],
      ["mid", "after attention"],
      ["both", "both, interleaved"],
    ].filter(([v]) => (v === "both" ? stages.length === 2 : stages.includes(v)));
    for (const [v, label] of opts) {
      const o = el("option", "", label);
      o.value = v;
      viewSel.appendChild(o);
    }
    viewSel.value = model.get("view");
    viewSel.addEventListener("change", () => {
      model.set("view", viewSel.value);
      model.save_changes();
    });
    const l1 = el("label", "", "decode ");
    l1.appendChild(viewSel);
    bar.appendChild(l1);
    const targets = model.get("targets");
    if (targets.length) {
      const tSel = el("select");
      targets.forEach((name, i) => {
        const o = el("option", "", name);
        o.value = String(i);
        tSel.appendChild(o);
      });
      tSel.value = String(model.get("target"));
      tSel.addEventListener("change", () => {
        model.set("target", Number(tSel.value));
        model.save_changes();
      });
      const l2 = el("label", "", "target ");
      l2.appendChild(tSel);
      bar.appendChild(l2);
    }
    bar.appendChild(
      el(
        "span",
        "lms-ll-hint",
        "top-1 per layer, shaded by probability · hover: top-k · click: focus a position",
      ),
    );
  }

  function layout() {
    const n = rows().length;
    const width = GUTTER + data.P * CELL_W;
    const height = n * CELL_H + AXIS_H;
    spacer.style.width = `${width}px`;
    spacer.style.height = `${height}px`;
    wrap.dataset.rows = String(n);
    wrap.dataset.cols = String(data.P);
    draw();
  }

  function cellIndex(layer, pos, j) {
    return (layer * data.P + pos) * data.k + j;
  }

  function draw() {
    if (!data) return;
    const dpr = window.devicePixelRatio || 1;
    const rs = rows();
    const vw = Math.min(scroll.clientWidth || 900, GUTTER + data.P * CELL_W);
    const vh = rs.length * CELL_H + AXIS_H;
    if (canvas.width !== Math.round(vw * dpr) || canvas.height !== Math.round(vh * dpr)) {
      canvas.width = Math.round(vw * dpr);
      canvas.height = Math.round(vh * dpr);
      canvas.style.width = `${vw}px`;
      canvas.style.height = `${vh}px`;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const bg = cssVar(wrap, "--jp-layout-color0", "#fff");
    const fg = cssVar(wrap, "--jp-ui-font-color1", "#222");
    const fg2 = cssVar(wrap, "--jp-ui-font-color2", "#666");
    const brand = cssVar(wrap, "--jp-brand-color1", "#1976d2");
    const warn = cssVar(wrap, "--jp-warn-color0", "#e65100");
    const grid = cssVar(wrap, "--jp-border-color2", "#e0e0e0");
    ctx.fillStyle = bg;
    ctx.fillRect(0, 0, vw, vh);
    ctx.font = `11px ${cssVar(wrap, "--jp-code-font-family", "monospace")}`;
    ctx.textBaseline = "middle";
    const sx = scroll.scrollLeft;
    const first = Math.max(0, Math.floor(sx / CELL_W));
    const last = Math.min(data.P - 1, Math.floor((sx + vw - GUTTER) / CELL_W));
    const sel = model.get("selected_token");
    const selLayer = model.get("selected_layer");
    const t = model.get("target");
    const targetString = data.T ? model.get("targets")[t] : null;
    const x0 = (p) => GUTTER + p * CELL_W - sx;
    rs.forEach((r, ri) => {
      const y = ri * CELL_H;
      for (let p = first; p <= last; p++) {
        const x = x0(p);
        let prob = 0;
        let text = "";
        let isTarget = false;
        if (r.kind === "target") {
          const st = model.get("view") === "mid" ? "mid" : "post";
          const L = selLayer >= 0 ? selLayer : model.get("n_layers") - 1;
          const i = (L * data.P + p) * data.T + t;
          prob = data.tprobs[st] ? data.tprobs[st][i] : 0;
          const rank = data.tranks[st] ? data.tranks[st][i] : -1;
          text = prob >= 0.01 ? pct(prob) : `#${rankText(rank)}`;
        } else {
          const i = cellIndex(r.layer, p, 0);
          prob = data.probs[r.stage][i];
          text = data.strings[data.top[r.stage][i]];
          isTarget = targetString !== null && text === targetString;
        }
        ctx.globalAlpha = Math.max(0.04, Math.min(1, prob));
        ctx.fillStyle = r.kind === "target" ? warn : brand;
        ctx.fillRect(x + 1, y + 1, CELL_W - 2, CELL_H - 2);
        ctx.globalAlpha = 1;
        if (isTarget) {
          ctx.strokeStyle = warn;
          ctx.lineWidth = 2;
          ctx.strokeRect(x + 2, y + 2, CELL_W - 4, CELL_H - 4);
        }
        ctx.fillStyle = prob > 0.55 ? "#fff" : fg;
        ctx.fillText(fit(ctx, text, CELL_W - 8), x + 4, y + CELL_H / 2 + 0.5);
      }
      if (r.kind === "layer" && r.stage === "post" && model.get("view") === "both") {
        ctx.fillStyle = grid;
        ctx.fillRect(GUTTER, y, vw - GUTTER, 1);
      }
    });
    // focused column and hovered cell
    if (sel >= first && sel <= last) {
      ctx.strokeStyle = fg;
      ctx.lineWidth = 1.5;
      ctx.strokeRect(x0(sel) + 0.5, 0.5, CELL_W - 1, rs.length * CELL_H + AXIS_H - 1);
    }
    if (hover && hover.col >= first && hover.col <= last && hover.row < rs.length) {
      ctx.strokeStyle = brand;
      ctx.lineWidth = 2;
      ctx.strokeRect(x0(hover.col) + 1, hover.row * CELL_H + 1, CELL_W - 2, CELL_H - 2);
    }
    // input tokens along the bottom
    const ay = rs.length * CELL_H;
    ctx.fillStyle = bg;
    ctx.fillRect(GUTTER, ay, vw - GUTTER, AXIS_H);
    for (let p = first; p <= last; p++) {
      ctx.fillStyle = p === sel ? fg : fg2;
      ctx.font = `${p === sel ? "bold " : ""}11px ${cssVar(wrap, "--jp-code-font-family", "monospace")}`;
      ctx.fillText(fit(ctx, data.tokens[p], CELL_W - 8), x0(p) + 4, ay + AXIS_H / 2);
    }
    // the layer gutter stays put while the columns scroll under it
    ctx.fillStyle = bg;
    ctx.fillRect(0, 0, GUTTER, vh);
    ctx.font = `11px ${cssVar(wrap, "--jp-ui-font-family", "sans-serif")}`;
    rs.forEach((r, ri) => {
      const label =
        r.kind === "target"
          ? `${fit(ctx, targetString, GUTTER - 10)}`
          : `L${r.layer}${r.stage === "mid" ? " mid" : ""}`;
      const selected = r.kind === "layer" && r.layer === selLayer;
      ctx.fillStyle = r.kind === "target" ? warn : selected ? fg : fg2;
      ctx.fillText(label, 4, ri * CELL_H + CELL_H / 2 + 0.5);
    });
    ctx.fillStyle = fg2;
    ctx.fillText("input", 4, ay + AXIS_H / 2);
    wrap.dataset.first = String(first);
    wrap.dataset.last = String(last);
  }

  function at(ev) {
    const box = canvas.getBoundingClientRect();
    const x = ev.clientX - box.left;
    const y = ev.clientY - box.top;
    if (x < GUTTER) return null;
    const col = Math.floor((x - GUTTER + scroll.scrollLeft) / CELL_W);
    const row = Math.floor(y / CELL_H);
    if (col < 0 || col >= data.P) return null;
    return { col, row, x, y };
  }

  function showTip(h) {
    const rs = rows();
    if (!h || h.row >= rs.length) {
      tip.style.display = "none";
      wrap.dataset.hover = "";
      return;
    }
    const r = rs[h.row];
    const p = h.col;
    tip.replaceChildren();
    const tokenLabel = data.tokens[p];
    if (r.kind === "target") {
      const st = model.get("view") === "mid" ? "mid" : "post";
      tip.appendChild(
        el(
          "div",
          "head",
          `target ${model.get("targets")[model.get("target")]} after position ${p} (${tokenLabel})`,
        ),
      );
      for (let l = model.get("n_layers") - 1; l >= 0; l--) {
        const i = (l * data.P + p) * data.T + model.get("target");
        const row = el("div", "row");
        row.append(
          el("span", "", `L${l} #${data.tranks[st][i]}`),
          el("span", "p", pct(data.tprobs[st][i])),
        );
        if (l % 5 === 0 || l === model.get("n_layers") - 1) tip.appendChild(row);
      }
    } else {
      tip.appendChild(
        el(
          "div",
          "head",
          `L${r.layer} ${r.stage === "mid" ? "after attention" : "after block"} · after ${tokenLabel} (${p})`,
        ),
      );
      const targetString = data.T ? model.get("targets")[model.get("target")] : null;
      for (let j = 0; j < data.k; j++) {
        const i = cellIndex(r.layer, p, j);
        const s = data.strings[data.top[r.stage][i]];
        const row = el("div", s === targetString ? "row tgt" : "row");
        row.append(el("span", "", s), el("span", "p", pct(data.probs[r.stage][i])));
        tip.appendChild(row);
      }
      if (data.T) {
        const i = (r.layer * data.P + p) * data.T + model.get("target");
        const row = el("div", "row tgt");
        row.append(
          el("span", "", `${targetString} #${data.tranks[r.stage][i]}`),
          el("span", "p", pct(data.tprobs[r.stage][i])),
        );
        tip.appendChild(row);
      }
    }
    tip.style.display = "block";
    const wbox = wrap.getBoundingClientRect();
    const cbox = canvas.getBoundingClientRect();
    let left = cbox.left - wbox.left + h.x + 14;
    if (left + tip.offsetWidth > wbox.width) left = Math.max(0, left - tip.offsetWidth - 28);
    tip.style.left = `${left}px`;
    tip.style.top = `${cbox.top - wbox.top + h.y + 14}px`;
    wrap.dataset.hover = r.kind === "target" ? `target:${p}` : `${r.stage}:${r.layer}:${p}`;
  }

  canvas.addEventListener("mousemove", (ev) => {
    const h = at(ev);
    hover = h;
    showTip(h);
    draw();
  });
  canvas.addEventListener("mouseleave", () => {
    hover = null;
    showTip(null);
    draw();
  });
  canvas.addEventListener("click", (ev) => {
    const h = at(ev);
    if (!h) return;
    const r = rows()[h.row];
    model.set("selected_token", h.col);
    if (r && r.kind === "layer") model.set("selected_layer", r.layer);
    model.save_changes();
    draw();
  });
  redrawOnScroll(scroll, draw);
  const resize = new ResizeObserver(() => draw());
  resize.observe(scroll);

  const reload = () => load();
  const redraw = () => {
    layout();
  };
  const showError = () => {
    err.textContent = model.get("error") || "";
  };
  // Scroll the focused column into view when Python (or a linked widget) moves it.
  const follow = () => {
    const p = model.get("selected_token");
    if (p < 0 || !data) return;
    const x = p * CELL_W;
    const vw = scroll.clientWidth - GUTTER;
    if (x < scroll.scrollLeft || x + CELL_W > scroll.scrollLeft + vw)
      scroll.scrollLeft = Math.max(0, x - vw / 2);
    draw();
  };
  const keys = [
    "top",
    "probs",
    "strings",
    "string_ids",
    "target_probs",
    "target_ranks",
    "targets",
    "tokens",
    "stages",
  ];
  for (const k of keys) model.on(`change:${k}`, reload);
  model.on("change:view", redraw);
  model.on("change:target", () => draw());
  model.on("change:selected_layer", () => draw());
  model.on("change:selected_token", follow);
  model.on("change:error", showError);
  load();
  showError();
  requestAnimationFrame(follow);
  return () => {
    resize.disconnect();
    for (const k of keys) model.off(`change:${k}`, reload);
    model.off("change:view", redraw);
    model.off("change:selected_token", follow);
    model.off("change:error", showError);
  };
}

export default defineView(render);
