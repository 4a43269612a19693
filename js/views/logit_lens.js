// Logit lens table: one row per layer (and stage), one column per input position. Each cell
// shows the top-1 prediction decoded from that layer, shaded by its probability; hover shows the
// top-k, click selects a position and layer. Drawn on one canvas the width of the view; only the
// columns in view are drawn, so a few thousand positions scroll as smoothly as ten. Python syncs
// the columns around the focused position; the view asks for the others as they come into view
// ("columns" request), drawing "…" until they arrive.
import {
  cellContent,
  columnsToFetch,
  emptyStage,
  fitText,
  internStrings,
  lensRows,
  mergeColumns,
  rowLabel,
  stagesOf,
  tipContent,
  visibleColumns,
} from "../parts/lens.js";
import CSS from "../styles/logit_lens.css";
import { control } from "../lib/controls.js";
import { el, toolbar } from "../lib/dom.js";
import { request } from "../lib/request.js";
import { cssVar } from "../lib/theme.js";
import { drawsWith } from "../lib/vector.js";
import { defineView, injectCss, redrawOnScroll } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const CELL_W = 66;
const CELL_H = 19;
const GUTTER = 58;
const AXIS_H = 22;
const SIZES = { cellW: CELL_W, gutter: GUTTER };

const PART_NAMES = { top: "top", probs: "probs", target_probs: "tprobs", target_ranks: "tranks" };

function readData(model) {
  const tokens = model.get("tokens");
  const strings = [...model.get("strings")];
  const data = {
    top: {},
    probs: {},
    tprobs: {},
    tranks: {},
    have: {},
    tokens,
    P: tokens.length,
    L: model.get("n_layers"),
    k: model.get("top_k"),
    T: model.get("targets").length,
    strings,
    stringIndex: new Map(strings.map((s, i) => [s, i])),
  };
  const identity = strings.map((_, i) => i);
  const columns = model.get("columns") || {};
  for (const stage of model.get("stages")) {
    emptyStage(data, stage);
    const cols = decode(columns[stage]);
    if (!cols) continue;
    const part = {};
    for (const [trait, name] of Object.entries(PART_NAMES)) {
      const env = model.get(trait)?.[stage];
      if (env) part[name] = decode(env);
    }
    mergeColumns(data, stage, cols, part, identity);
  }
  return data;
}

function controls(model, bar) {
  control(model, "stage", bar, {
    kind: "select",
    label: "decode",
    options: [
      ["post", "after each block"],
      ["mid", "after attention"],
      ["both", "both, interleaved"],
    ],
  });
  const target = control(model, "target", bar, {
    kind: "select",
    label: "target",
    options: () => model.get("targets").map((name, i) => [i, name]),
  });
  target.label.hidden = model.get("targets").length === 0;
  const hint = "top-1 per layer, shaded by probability · hover: top-k · click: select a position";
  el("span", { className: "lms-note", text: hint, parent: bar });
}

function render({ model, el: root }) {
  injectCss(CSS);
  const wrap = el("div", { className: "lms-ll", parent: root });
  const bar = toolbar(wrap);
  controls(model, bar);
  const scroll = el("div", { className: "lms-ll-scroll", parent: wrap });
  const spacer = el("div", { parent: scroll });
  const canvas = el("canvas", { className: "lms-ll-canvas", parent: spacer });
  const tip = el("div", { className: "lms-tip", parent: wrap });
  const status = el("span", { className: "lms-note", parent: bar });
  const screen = canvas.getContext("2d");
  drawsWith(canvas, (ctx) => paint(ctx)); // a figure redraws it as vector marks
  let data = readData(model);
  let hover = null; // {row, col, x, y}
  let generation = 0; // bumped when the synced state replaces `data`
  let fetching = false;
  let cannotFetch = false; // a static page, or Python failed: stop asking
  let started = false; // not before the first scroll to the focus (columns 0.. are not shown)

  // Ask Python for the undecoded columns on screen (then those a screen to either side).
  function fetchColumns(first, last) {
    if (fetching || cannotFetch || !started) return;
    const stages = stagesOf(model.get("stage")).filter((s) => data.have[s]);
    const want = columnsToFetch(data, stages, first, last);
    wrap.dataset.pending = want ? `${want.start}:${want.stop}` : "";
    if (!want) {
      status.textContent = "";
      return;
    }
    fetching = true;
    const gen = generation;
    status.textContent = `decoding positions ${want.start}–${want.stop - 1}…`;
    const expectedBytes = (want.stop - want.start) * data.L * (data.k + data.T) * 6 * stages.length;
    request(model, "columns", { stages, ...want }, { expectedBytes })
      .then(({ result, buffers }) => {
        fetching = false;
        if (gen !== generation) return draw(); // the state was replaced meanwhile
        const remap = internStrings(data, result.strings);
        const cols = Array.from({ length: result.stop - result.start }, (_, i) => result.start + i);
        const parts = {};
        result.arrays.forEach((a, i) => {
          parts[a.stage] = parts[a.stage] || {};
          parts[a.stage][PART_NAMES[a.name]] = decode({ data: buffers[i], ...a });
        });
        for (const [stage, part] of Object.entries(parts)) {
          if (!data.have[stage]) emptyStage(data, stage);
          mergeColumns(data, stage, cols, part, remap);
        }
        draw();
      })
      .catch((err) => {
        fetching = false;
        cannotFetch = true;
        status.textContent = `columns not decoded: ${err.message}`;
      });
  }

  const rows = () =>
    lensRows({
      stage: model.get("stage"),
      nLayers: model.get("n_layers"),
      hasTargets: data.T > 0,
      decoded: model.get("stages"),
    });
  const selectedLayer = () => {
    const layer = model.get("layer");
    return layer >= 0 ? layer : model.get("n_layers") - 1;
  };
  const targetString = () => (data.T ? model.get("targets")[model.get("target")] : null);

  // Scrolling stops on whole columns at the ends too: the spacer has room for the part of a
  // column the view's width leaves over, so the last column can stand whole after a whole first.
  function spacerWidth() {
    const full = GUTTER + data.P * CELL_W;
    const view = scroll.clientWidth;
    return view > 0 && full > view ? full + ((view - GUTTER) % CELL_W) : full;
  }

  function layout() {
    const n = rows().length;
    spacer.style.width = `${spacerWidth()}px`;
    spacer.style.height = `${n * CELL_H + AXIS_H}px`;
    wrap.dataset.rows = String(n);
    wrap.dataset.cols = String(data.P);
    draw();
  }

  function sizeCanvas(vw, vh, ctx) {
    const dpr = window.devicePixelRatio || 1;
    const resized = canvas.width !== Math.round(vw * dpr) || canvas.height !== Math.round(vh * dpr);
    if (ctx === screen && resized) {
      canvas.width = Math.round(vw * dpr);
      canvas.height = Math.round(vh * dpr);
      canvas.style.width = `${vw}px`;
      canvas.style.height = `${vh}px`;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  const draw = () => paint(screen);

  function paint(ctx) {
    const rs = rows();
    const vw = Math.min(scroll.clientWidth || 900, GUTTER + data.P * CELL_W);
    const vh = rs.length * CELL_H + AXIS_H;
    sizeCanvas(vw, vh, ctx);
    const c = (name, fallback) => cssVar(wrap, name, fallback);
    const theme = {
      bg: c("--jp-layout-color0", "#fff"),
      fg: c("--jp-ui-font-color1", "#222"),
      fg2: c("--jp-ui-font-color2", "#666"),
      brand: c("--jp-brand-color1", "#1976d2"),
      warn: c("--jp-warn-color0", "#e65100"),
      grid: c("--jp-border-color2", "#e0e0e0"),
      mono: `11px ${c("--jp-code-font-family", "monospace")}`,
    };
    ctx.fillStyle = theme.bg;
    ctx.fillRect(0, 0, vw, vh);
    const sx = scroll.scrollLeft;
    const { first, last } = visibleColumns(sx, vw, data.P, SIZES);
    const x0 = (p) => GUTTER + p * CELL_W - sx;
    const fit = (text, w) => fitText((s) => ctx.measureText(s).width, text, w);
    const state = {
      stage: model.get("stage"),
      layer: selectedLayer(),
      target: model.get("target"),
      targetString: targetString(),
    };
    ctx.font = theme.mono;
    ctx.textBaseline = "middle";
    rs.forEach((r, ri) => {
      const y = ri * CELL_H;
      for (let p = first; p <= last; p++) {
        const { prob, text, isTarget } = cellContent(data, r, p, state);
        ctx.globalAlpha = Math.max(0.04, Math.min(1, prob));
        ctx.fillStyle = r.kind === "target" ? theme.warn : theme.brand;
        ctx.fillRect(x0(p) + 1, y + 1, CELL_W - 2, CELL_H - 2);
        ctx.globalAlpha = 1;
        if (isTarget) {
          ctx.strokeStyle = theme.warn;
          ctx.lineWidth = 2;
          ctx.strokeRect(x0(p) + 2, y + 2, CELL_W - 4, CELL_H - 4);
        }
        ctx.fillStyle = prob > 0.55 ? "#fff" : theme.fg;
        ctx.fillText(fit(text, CELL_W - 8), x0(p) + 4, y + CELL_H / 2 + 0.5);
      }
      if (r.kind === "layer" && r.stage === "post" && state.stage === "both") {
        ctx.fillStyle = theme.grid;
        ctx.fillRect(GUTTER, y, vw - GUTTER, 1);
      }
    });
    const sel = model.get("token");
    if (sel >= first && sel <= last) {
      ctx.strokeStyle = theme.fg;
      ctx.lineWidth = 1.5;
      ctx.strokeRect(x0(sel) + 0.5, 0.5, CELL_W - 1, vh - 1);
    }
    if (hover && hover.col >= first && hover.col <= last && hover.row < rs.length) {
      ctx.strokeStyle = theme.brand;
      ctx.lineWidth = 2;
      ctx.strokeRect(x0(hover.col) + 1, hover.row * CELL_H + 1, CELL_W - 2, CELL_H - 2);
    }
    // input tokens along the bottom
    const ay = rs.length * CELL_H;
    ctx.fillStyle = theme.bg;
    ctx.fillRect(GUTTER, ay, vw - GUTTER, AXIS_H);
    for (let p = first; p <= last; p++) {
      ctx.fillStyle = p === sel ? theme.fg : theme.fg2;
      ctx.font = `${p === sel ? "bold " : ""}${theme.mono}`;
      ctx.fillText(fit(data.tokens[p], CELL_W - 8), x0(p) + 4, ay + AXIS_H / 2);
    }
    // the layer gutter stays put while the columns scroll under it
    ctx.fillStyle = theme.bg;
    ctx.fillRect(0, 0, GUTTER, vh);
    ctx.font = `11px ${c("--jp-ui-font-family", "sans-serif")}`;
    rs.forEach((r, ri) => {
      const selected = r.kind === "layer" && r.layer === model.get("layer");
      ctx.fillStyle = r.kind === "target" ? theme.warn : selected ? theme.fg : theme.fg2;
      ctx.fillText(
        fit(rowLabel(r, state.targetString), GUTTER - 10),
        4,
        ri * CELL_H + CELL_H / 2 + 0.5,
      );
    });
    ctx.fillStyle = theme.fg2;
    ctx.fillText("input", 4, ay + AXIS_H / 2);
    wrap.dataset.first = String(first);
    wrap.dataset.last = String(last);
    fetchColumns(first, last);
  }

  function cellAt(ev) {
    const box = canvas.getBoundingClientRect();
    const [x, y] = [ev.clientX - box.left, ev.clientY - box.top];
    const col = Math.floor((x - GUTTER + scroll.scrollLeft) / CELL_W);
    if (x < GUTTER || col < 0 || col >= data.P) return null;
    return { col, row: Math.floor(y / CELL_H), x, y };
  }

  function showTip(h) {
    const rs = rows();
    if (!h || h.row >= rs.length) {
      tip.style.display = "none";
      wrap.dataset.hover = "";
      return;
    }
    const r = rs[h.row];
    const options = {
      stage: model.get("stage"),
      nLayers: model.get("n_layers"),
      target: model.get("target"),
      targets: model.get("targets"),
    };
    const { head, rows: lines } = tipContent(data, r, h.col, options);
    tip.replaceChildren(el("div", { className: "head", text: head }));
    for (const [text, p, isTarget] of lines) {
      const line = el("div", { className: isTarget ? "row tgt" : "row", parent: tip });
      line.append(el("span", { text }), el("span", { className: "p", text: p }));
    }
    tip.style.display = "block";
    const wbox = wrap.getBoundingClientRect();
    const cbox = canvas.getBoundingClientRect();
    let left = cbox.left - wbox.left + h.x + 14;
    if (left + tip.offsetWidth > wbox.width) left = Math.max(0, left - tip.offsetWidth - 28);
    tip.style.left = `${left}px`;
    tip.style.top = `${cbox.top - wbox.top + h.y + 14}px`;
    wrap.dataset.hover = r.kind === "target" ? `target:${h.col}` : `${r.stage}:${r.layer}:${h.col}`;
  }

  const onHover = (h) => {
    hover = h;
    showTip(h);
    draw();
  };
  canvas.addEventListener("mousemove", (ev) => onHover(cellAt(ev)));
  canvas.addEventListener("mouseleave", () => onHover(null));
  canvas.addEventListener("click", (ev) => {
    const h = cellAt(ev);
    if (!h) return;
    const r = rows()[h.row];
    model.set("token", h.col);
    if (r && r.kind === "layer") model.set("layer", r.layer);
    model.save_changes();
    draw();
  });
  redrawOnScroll(scroll, draw);
  let pinned = null; // the scroll follow() set, while nobody has scrolled since
  let viewWidth = scroll.clientWidth;
  const resize = new ResizeObserver(() => {
    if (scroll.clientWidth !== viewWidth) {
      viewWidth = scroll.clientWidth;
      const untouched = pinned !== null && scroll.scrollLeft === pinned;
      spacer.style.width = `${spacerWidth()}px`;
      // the page moved under a view left where it opened (a saved page's widget manager
      // restyles it, a panel is resized): keep the selected column in view, whole
      if (untouched) return follow(true);
    }
    draw();
  });
  resize.observe(scroll);

  // Scroll the selected column into view, whole and on a column boundary, when Python (or a
  // linked view) moves it; `again`: also when it is in view already (after a resize).
  const follow = (again = false) => {
    const p = model.get("token");
    if (p < 0) return;
    const x = p * CELL_W;
    const vw = scroll.clientWidth - GUTTER;
    if (again || x < scroll.scrollLeft || x + CELL_W > scroll.scrollLeft + vw) {
      const whole = Math.max(1, Math.floor(vw / CELL_W));
      const first = Math.max(0, Math.min(p - Math.floor(whole / 2), data.P - whole));
      scroll.scrollLeft = first * CELL_W;
      pinned = scroll.scrollLeft;
    }
    draw();
  };
  const reload = () => {
    data = readData(model);
    generation++;
    layout();
  };
  const keys = ["top", "probs", "strings", "target_probs", "target_ranks", "targets", "tokens"];
  keys.push("columns", "string_ids");
  for (const k of [...keys, "stages"]) model.on(`change:${k}`, reload);
  model.on("change:stage", layout);
  model.on("change:target", draw);
  model.on("change:layer", draw);
  model.on("change:token", () => follow());
  layout();
  requestAnimationFrame(() => {
    started = true;
    follow(true);
  });
  return () => resize.disconnect(); // anywidget removes model listeners, not observers
}

export default defineView(render);
