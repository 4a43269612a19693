// Attention as lines: queries on the left, keys on the right, one line per kept weight.
// Lines come pruned from Python (threshold + top-k per query); the view draws only the rows
// in its scroll window on one canvas, and keeps token labels as a few recycled DOM rows.
import {
  bucketLines,
  focusText,
  formatValue,
  hitToken,
  indexLines,
  partners,
  sliceName,
  staleControls,
  visibleRows,
} from "../parts/lines.js";
import CSS from "../styles/attention_lines.css";
import { control, numberChoices } from "../lib/controls.js";
import { el, toolbar } from "../lib/dom.js";
import { cssVar } from "../lib/theme.js";
import { drawsWith } from "../lib/vector.js";
import { defineView, injectCss, redrawOnScroll } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const ROW = 18; // px per token row
const MAX_VIEW = 560; // px of the visible window before the columns scroll
const LABEL_W = 150; // px reserved for each token column
const BUCKETS = 24; // strength levels: one canvas stroke per level

function controls(model, bar, preview) {
  const layers = numberChoices(model, "n_layers");
  control(model, "layer", bar, {
    kind: "select",
    label: "layer",
    options: layers,
    onSet: (layer) => {
      if (model.get("layer_end") < layer) model.set("layer_end", layer);
    },
  });
  control(model, "layer_end", bar, {
    kind: "select",
    label: "to",
    options: layers,
  });
  control(model, "head", bar, {
    kind: "select",
    label: "head",
    options: () => [
      ...numberChoices(model, "n_heads")(),
      ["mean", "all: mean"],
      ["max", "all: max"],
    ],
    parse: (v) => (v === "mean" || v === "max" ? v : Number(v)),
  });
  control(model, "values", bar, {
    kind: "select",
    label: "values",
    options: [
      ["prob", "probabilities"],
      ["score", "pre-softmax scores"],
    ],
  });
  // dragging filters the lines already here at once; letting go asks Python for the new set
  const threshold = control(model, "threshold", bar, {
    kind: "range",
    label: "threshold",
    min: 0,
    max: 0.5,
    step: 0.005,
    onInput: preview,
  });
  const shown = el("span", { parent: threshold.label });
  control(model, "top_k", bar, {
    kind: "number",
    label: "top-k",
    min: 1,
    step: 1,
    parse: (v) => Math.max(1, Math.round(Number(v) || 1)),
  });
  control(model, "fuse_words", bar, { kind: "checkbox", label: "whole words" });
  control(model, "mute_sink", bar, { kind: "checkbox", label: "mute first token" });
  return (value) => {
    shown.textContent = value.toFixed(3);
  };
}

function render({ model, el: root }) {
  injectCss(CSS);
  const box = el("div", { className: "lms-al", parent: root });
  const bar = toolbar(box);
  const status = el("div", { className: "lms-al-status lms-note", parent: box });
  const scroll = el("div", { className: "lms-al-scroll", parent: box });
  const stage = el("div", { className: "lms-al-stage", parent: scroll });
  const spacer = el("div", { parent: scroll });
  const canvas = el("canvas", { parent: stage });
  let ctx = canvas.getContext("2d"); // a figure swaps in its recorder to redraw the lines

  let tokens = [];
  let lines = { query: [], key: [], strength: [], value: [] };
  let idx = indexLines(lines, 0);
  let localThreshold = model.get("threshold");
  let focus = null; // {side: "q"|"k", i}
  let locked = false;
  let width = 700;
  let viewH = 0;
  const pool = { q: [], k: [] };

  const showThreshold = controls(model, bar, (value) => {
    localThreshold = value;
    showThreshold(value);
    draw();
  });

  // Lines still of an earlier selection (the kernel has not answered the latest change yet) are
  // dimmed and described as such, so a stale slice never passes for the chosen head.
  function markPending() {
    const of = model.get("lines")?.of || {};
    const stale = staleControls(of, (name) => model.get(name));
    box.classList.toggle("pending", stale.length > 0);
    root.dataset.pending = stale.join(",");
    root.dataset.slice = sliceName(of);
  }

  function load() {
    tokens = model.get("tokens") || [];
    const raw = model.get("lines") || {};
    lines = {
      query: decode(raw.query) || new Int32Array(0),
      key: decode(raw.key) || new Int32Array(0),
      strength: decode(raw.strength) || new Uint8Array(0),
      value: decode(raw.value) || new Float32Array(0),
    };
    idx = indexLines(lines, tokens.length);
    if (focus && focus.i >= tokens.length) focus = null;
    layout();
  }

  function layout() {
    width = Math.max(420, Math.min(760, box.clientWidth || 700));
    const total = tokens.length * ROW + 8;
    viewH = Math.min(total, MAX_VIEW);
    scroll.style.height = stage.style.height = `${viewH}px`;
    spacer.style.height = `${Math.max(0, total - viewH)}px`;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(viewH * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${viewH}px`;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    draw();
  }

  let top = 0; // the scroll offset of the frame being drawn, read once (a read forces layout)
  const y = (i) => i * ROW + ROW / 2 + 4 - top;
  const stroke = (list) => {
    ctx.beginPath();
    for (const line of list) {
      ctx.moveTo(LABEL_W, y(lines.query[line]));
      ctx.lineTo(width - LABEL_W, y(lines.key[line]));
    }
    ctx.stroke();
  };

  function drawLines(span, accent, faint) {
    const cut = Math.round(localThreshold * 255);
    const { buckets, hot } = bucketLines(lines, idx, { ...span, cut, focus, buckets: BUCKETS });
    ctx.clearRect(0, 0, width, viewH);
    ctx.lineCap = "round";
    ctx.strokeStyle = focus ? faint : accent;
    let drawn = hot.length;
    buckets.forEach((list, b) => {
      const s = (b + 0.5) / BUCKETS;
      ctx.globalAlpha = focus ? 0.08 + 0.15 * s : 0.1 + 0.9 * s;
      ctx.lineWidth = 0.5 + 2.5 * s;
      if (list.length) stroke(list);
      drawn += list.length;
    });
    ctx.strokeStyle = accent;
    for (const line of hot) {
      const s = lines.strength[line] / 255;
      ctx.globalAlpha = 0.25 + 0.75 * s;
      ctx.lineWidth = 0.75 + 3 * s;
      stroke([line]);
    }
    ctx.globalAlpha = 1;
    return drawn;
  }

  // token labels for the visible rows only, tinted by weight when a token is in focus
  function drawLabels({ first, last }, accent) {
    const weights = partners(lines, idx, focus);
    const otherSide = focus ? (focus.side === "q" ? "k" : "q") : null;
    let slot = 0;
    for (let i = first; i <= last; i++, slot++) {
      for (const side of ["q", "k"]) {
        while (pool[side].length <= slot) {
          pool[side].push(el("div", { className: `lms-al-tok ${side}`, parent: stage }));
        }
        const node = pool[side][slot];
        node.style.display = "";
        node.style.top = `${y(i) - (ROW - 2) / 2}px`;
        if (side === "q") node.style.right = `${width - LABEL_W + 6}px`;
        else node.style.left = `${width - LABEL_W + 6}px`;
        if (node.textContent !== tokens[i]) node.textContent = tokens[i];
        node.dataset.i = String(i);
        node.classList.toggle("focus", !!focus && focus.side === side && focus.i === i);
        const line = side === otherSide ? weights.get(i) : undefined;
        const s = line === undefined ? 0 : lines.strength[line] / 255;
        node.style.background =
          line === undefined
            ? ""
            : `color-mix(in srgb, ${accent} ${Math.round(15 + 60 * s)}%, transparent)`;
        node.title = line === undefined ? "" : formatValue(lines.value[line], model.get("values"));
      }
    }
    for (const side of ["q", "k"]) {
      for (let s = slot; s < pool[side].length; s++) pool[side][s].style.display = "none";
    }
  }

  const inks = () => [
    cssVar(box, "--jp-brand-color1", "#1976d2"),
    cssVar(box, "--jp-ui-font-color3", "#999"),
  ];
  // the lines as vector paths in a figure (the token labels are DOM text already)
  drawsWith(canvas, (recorder) => {
    const screen = ctx;
    ctx = recorder;
    try {
      const dpr = window.devicePixelRatio || 1;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      drawLines(visibleRows(top, viewH, tokens.length, ROW), ...inks());
    } finally {
      ctx = screen;
    }
  });

  function draw() {
    // theme colours and sizes only resolve once the view is in the document
    if (!box.isConnected) return requestAnimationFrame(draw);
    const t0 = performance.now();
    const [accent, faint] = inks();
    top = scroll.scrollTop;
    const span = visibleRows(top, viewH, tokens.length, ROW);
    const drawn = drawLines(span, accent, faint);
    drawLabels(span, accent);
    root.dataset.linesDrawn = String(drawn);
    root.dataset.linesTotal = String(lines.query.length);
    root.dataset.focus = focus ? `${focus.side}${focus.i}` : "";
    root.dataset.drawMs = (performance.now() - t0).toFixed(2);
  }

  function describe() {
    if (box.classList.contains("pending")) {
      status.textContent = model.get("error")
        ? "these lines are of the previous selection: the last change failed (see below)"
        : "updating: waiting for the kernel's lines for this selection…";
    } else if (focus) {
      status.textContent = focusText(lines, idx, focus, tokens, model.get("values"));
    } else {
      const what = model.get("fuse_words") ? "words" : "tokens";
      // a long prompt's lines come a block of query rows at a time: say how far they are
      const coming = model.get("status") ? `${model.get("status")} · ` : "";
      status.textContent = `${coming}${tokens.length} ${what}, ${lines.query.length} lines · hover a token to isolate its lines, click to pin`;
    }
    root.dataset.exact = model.get("exact") === false ? "0" : "1";
  }

  const hit = (ev) => {
    const r = stage.getBoundingClientRect();
    const [x, at] = [ev.clientX - r.left, ev.clientY - r.top];
    const where = { x, y: at, scrollTop: scroll.scrollTop, width, rows: tokens.length };
    return hitToken({ ...where, rowHeight: ROW, labelWidth: LABEL_W });
  };
  const same = (a, b) => (!a && !b) || (a && b && a.side === b.side && a.i === b.i);
  const refocus = (f) => {
    focus = f;
    draw();
    describe();
  };
  stage.addEventListener("mousemove", (ev) => {
    const f = hit(ev);
    if (!locked && !same(f, focus)) refocus(f);
  });
  stage.addEventListener("mouseleave", () => {
    if (!locked && focus) refocus(null);
  });
  stage.addEventListener("click", (ev) => {
    const f = hit(ev);
    locked = !!f && !(locked && same(f, focus));
    refocus(f);
  });
  redrawOnScroll(scroll, draw);

  const t0 = performance.now();
  const onLines = () => {
    load();
    markPending();
    describe();
  };
  const onControl = () => {
    localThreshold = model.get("threshold");
    showThreshold(localThreshold);
    markPending();
    describe();
  };
  onControl();
  onLines();
  root.dataset.renderMs = (performance.now() - t0).toFixed(2);
  model.on("change:lines", onLines);
  model.on("change:tokens", onLines);
  model.on("change:error", describe);
  model.on("change:status", describe);
  // every control the lines are tagged with (AttentionLines' `lines.of`)
  for (const name of Object.keys(model.get("lines")?.of || {})) {
    model.on(`change:${name}`, onControl);
  }
  const resize = new ResizeObserver(() => layout());
  resize.observe(box);
  return () => resize.disconnect(); // anywidget removes model listeners, not observers
}

export default defineView(render);
