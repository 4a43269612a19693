// Attention as lines: queries on the left, keys on the right, one line per kept weight.
// Lines come pruned from Python (threshold + top-k per query); the view draws only the rows
// in its scroll window on one canvas, and keeps token labels as a few recycled DOM rows.
import { defineView, redrawOnScroll } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const ROW = 18; // px per token row
const MAX_VIEW = 560; // px of the visible window before the columns scroll
const LABEL_W = 150; // px reserved for each token column
const BUCKETS = 24; // strength levels: one canvas stroke per level

const CSS = `
.lms-al { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color0, #fff); max-width: 760px; }
.lms-al-bar { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: center; padding: 4px 0 6px; }
.lms-al-bar label { display: inline-flex; gap: 4px; align-items: center; white-space: nowrap; }
.lms-al-bar select, .lms-al-bar input[type=number] { font: inherit; color: inherit;
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bbb); border-radius: 2px; }
.lms-al-bar input[type=number] { width: 4em; }
.lms-al-status { min-height: 1.4em; color: var(--jp-ui-font-color2, #555); padding: 0 0 4px; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.lms-al-scroll { position: relative; overflow-y: auto; border-top: 1px solid var(--jp-border-color2, #ddd);
  border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.lms-al-stage { position: sticky; top: 0; overflow: hidden; }
.lms-al-stage canvas { position: absolute; left: 0; top: 0; }
.lms-al-tok { position: absolute; height: ${ROW - 2}px; line-height: ${ROW - 2}px; max-width: ${LABEL_W - 12}px;
  padding: 0 4px; border-radius: 3px; overflow: hidden; white-space: pre; text-overflow: ellipsis;
  font-family: var(--jp-code-font-family, ui-monospace, monospace); cursor: pointer; }
.lms-al-tok.q { text-align: right; }
.lms-al-tok.focus { outline: 1.5px solid var(--jp-brand-color1, #1976d2); }
.lms-al.pending .lms-al-stage { opacity: 0.45; transition: opacity 0.15s 0.1s; }
.lms-al-error { color: var(--jp-error-color1, #d32f2f); white-space: pre-wrap; }
`;

function el(tag, cls, parent) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (parent) parent.appendChild(node);
  return node;
}

function cssVar(node, name, fallback) {
  const v = getComputedStyle(node).getPropertyValue(name).trim();
  return v || fallback;
}

function option(select, value, text) {
  const o = el("option", "", select);
  o.value = String(value);
  o.textContent = text;
}

// Group line ids by query and by key (counting sort) so a window or a token finds its lines fast.
function index(lines, n) {
  const m = lines.query.length;
  const byQ = new Int32Array(n + 1);
  const byK = new Int32Array(n + 1);
  for (let i = 0; i < m; i++) {
    byQ[lines.query[i] + 1]++;
    byK[lines.key[i] + 1]++;
  }
  for (let i = 0; i < n; i++) {
    byQ[i + 1] += byQ[i];
    byK[i + 1] += byK[i];
  }
  const qOrder = new Int32Array(m);
  const kOrder = new Int32Array(m);
  const qFill = byQ.slice(0, n);
  const kFill = byK.slice(0, n);
  for (let i = 0; i < m; i++) {
    qOrder[qFill[lines.query[i]]++] = i;
    kOrder[kFill[lines.key[i]]++] = i;
  }
  return { byQ, byK, qOrder, kOrder };
}

function fmt(v, values) {
  if (!Number.isFinite(v)) return "masked";
  return values === "score" ? v.toFixed(2) : v.toFixed(3);
}

function render({ model, el: root }) {
  const style = el("style", "", root);
  style.textContent = CSS;
  const box = el("div", "lms-al", root);
  const bar = el("div", "lms-al-bar", box);
  const status = el("div", "lms-al-status", box);
  const scroll = el("div", "lms-al-scroll", box);
  const stage = el("div", "lms-al-stage", scroll);
  const spacer = el("div", "", scroll);
  const canvas = el("canvas", "", stage);
  const errorBox = el("div", "lms-al-error", box);
  const ctx = canvas.getContext("2d");

  // -- controls: each writes one trait; Python answers with new lines ------------------
  const layer = el("select", "", el("label", "", bar));
  layer.parentNode.prepend("layer");
  const layerEnd = el("select", "", el("label", "", bar));
  layerEnd.parentNode.prepend("to");
  const head = el("select", "", el("label", "", bar));
  head.parentNode.prepend("head");
  const values = el("select", "", el("label", "", bar));
  values.parentNode.prepend("values");
  option(values, "prob", "probabilities");
  option(values, "score", "pre-softmax scores");
  const thrLabel = el("label", "", bar);
  thrLabel.append("threshold");
  const threshold = el("input", "", thrLabel);
  Object.assign(threshold, { type: "range", min: "0", max: "0.5", step: "0.005" });
  const thrText = el("span", "", thrLabel);
  const topK = el("input", "", el("label", "", bar));
  topK.parentNode.prepend("top-k");
  Object.assign(topK, { type: "number", min: "1", step: "1" });
  const fuse = el("input", "", el("label", "", bar));
  fuse.type = "checkbox";
  fuse.parentNode.append("whole words");
  const mute = el("input", "", el("label", "", bar));
  mute.type = "checkbox";
  mute.parentNode.append("mute first token");
  for (const [node, name] of [
    [layer, "layer"],
    [layerEnd, "layer_end"],
  ]) {
    node.addEventListener("change", () => {
      model.set(name, Number(node.value));
      if (name === "layer" && Number(layerEnd.value) < Number(node.value)) {
        model.set("layer_end", Number(node.value));
      }
      model.save_changes();
    });
  }
  head.addEventListener("change", () => {
    const v = head.value;
    if (v === "mean" || v === "max") model.set("aggregate", v);
    else {
      model.set("aggregate", "head");
      model.set("head", Number(v));
    }
    model.save_changes();
  });
  values.addEventListener("change", () => {
    model.set("values", values.value);
    model.save_changes();
  });
  // dragging filters the lines already here at once; letting go asks Python for the new set
  threshold.addEventListener("input", () => {
    localThreshold = Number(threshold.value);
    thrText.textContent = localThreshold.toFixed(3);
    draw();
  });
  threshold.addEventListener("change", () => {
    model.set("threshold", Number(threshold.value));
    model.save_changes();
  });
  topK.addEventListener("change", () => {
    const k = Math.max(1, Math.round(Number(topK.value) || 1));
    model.set("top_k", k);
    model.save_changes();
  });
  fuse.addEventListener("change", () => {
    model.set("fuse_words", fuse.checked);
    model.save_changes();
  });
  mute.addEventListener("change", () => {
    model.set("mute_sink", mute.checked);
    model.save_changes();
  });

  // -- state read from traits -----------------------------------------------------------
  let tokens = [];
  let lines = { query: [], key: [], strength: [], value: [] };
  let idx = index(lines, 0);
  let localThreshold = 0;
  let focus = null; // {side: "q"|"k", i}
  let locked = false;
  let width = 700;
  let viewH = 0;
  const pool = { q: [], k: [] };

  function syncControls() {
    const nL = model.get("n_layers");
    const nH = model.get("n_heads");
    if (layer.options.length !== nL) {
      layer.replaceChildren();
      layerEnd.replaceChildren();
      for (let i = 0; i < nL; i++) {
        option(layer, i, String(i));
        option(layerEnd, i, String(i));
      }
    }
    if (head.options.length !== nH + 2) {
      head.replaceChildren();
      for (let i = 0; i < nH; i++) option(head, i, String(i));
      option(head, "mean", "all: mean");
      option(head, "max", "all: max");
    }
    layer.value = String(model.get("layer"));
    layerEnd.value = String(model.get("layer_end"));
    const agg = model.get("aggregate");
    head.value = agg === "head" ? String(model.get("head")) : agg;
    values.value = model.get("values");
    threshold.value = String(model.get("threshold"));
    localThreshold = model.get("threshold");
    thrText.textContent = localThreshold.toFixed(3);
    topK.value = String(model.get("top_k"));
    fuse.checked = model.get("fuse_words");
    mute.checked = model.get("mute_sink");
    markPending();
  }

  // Lines still of an earlier selection (the kernel has not answered the latest change yet) are
  // dimmed and described as such, so a stale slice never passes for the chosen head.
  function markPending() {
    const of = model.get("lines")?.of || {};
    const stale = Object.keys(of).filter((name) => of[name] !== model.get(name));
    box.classList.toggle("pending", stale.length > 0);
    root.dataset.pending = stale.join(",");
    root.dataset.slice = `${of.layer}-${of.layer_end}:${of.aggregate === "head" ? of.head : of.aggregate}`;
    return stale.length > 0;
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
    idx = index(lines, tokens.length);
    if (focus && focus.i >= tokens.length) focus = null;
    errorBox.textContent = model.get("error") || "";
    syncControls();
    layout();
  }

  function layout() {
    width = Math.max(420, Math.min(760, box.clientWidth || 700));
    const total = tokens.length * ROW + 8;
    viewH = Math.min(total, MAX_VIEW);
    scroll.style.height = `${viewH}px`;
    stage.style.height = `${viewH}px`;
    spacer.style.height = `${Math.max(0, total - viewH)}px`;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(viewH * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${viewH}px`;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    draw();
  }

  function labelRow(side, slot) {
    const list = pool[side];
    while (list.length <= slot) {
      const node = el("div", `lms-al-tok ${side}`, stage);
      list.push(node);
    }
    return list[slot];
  }

  function focusWeights() {
    // strength per token of the other column, for tinting labels when a token is in focus
    const w = new Map();
    if (!focus) return w;
    const [starts, order, other] =
      focus.side === "q" ? [idx.byQ, idx.qOrder, lines.key] : [idx.byK, idx.kOrder, lines.query];
    for (let j = starts[focus.i]; j < starts[focus.i + 1]; j++) {
      const line = order[j];
      w.set(other[line], line);
    }
    return w;
  }

  function draw() {
    if (!box.isConnected) {
      // theme colours and sizes only resolve once the view is in the document
      requestAnimationFrame(draw);
      return;
    }
    const t0 = performance.now();
    const top = scroll.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW) - 1);
    const last = Math.min(tokens.length - 1, Math.ceil((top + viewH) / ROW));
    const x0 = LABEL_W;
    const x1 = width - LABEL_W;
    const y = (i) => i * ROW + ROW / 2 + 4 - top;
    const accent = cssVar(box, "--jp-brand-color1", "#1976d2");
    const faint = cssVar(box, "--jp-ui-font-color3", "#999");
    ctx.clearRect(0, 0, width, viewH);
    const cut = Math.round(localThreshold * 255);

    // lines touching the window: by query (rows first..last) and by key (queries outside it)
    const buckets = Array.from({ length: BUCKETS }, () => []);
    const hot = [];
    const inFocus = (line) =>
      focus && (focus.side === "q" ? lines.query[line] : lines.key[line]) === focus.i;
    const take = (line) => {
      const s = lines.strength[line];
      if (s < cut || s === 0) return;
      if (inFocus(line)) hot.push(line);
      else buckets[Math.min(BUCKETS - 1, Math.floor((s / 256) * BUCKETS))].push(line);
    };
    for (let j = idx.byQ[first]; j < idx.byQ[last + 1]; j++) take(idx.qOrder[j]);
    for (let j = idx.byK[first]; j < idx.byK[last + 1]; j++) {
      const line = idx.kOrder[j];
      const q = lines.query[line];
      if (q < first || q > last) take(line);
    }
    if (focus && (focus.i < first || focus.i > last)) {
      const [starts, order] = focus.side === "q" ? [idx.byQ, idx.qOrder] : [idx.byK, idx.kOrder];
      for (let j = starts[focus.i]; j < starts[focus.i + 1]; j++) hot.push(order[j]);
    }
    let drawn = 0;
    ctx.lineCap = "round";
    ctx.strokeStyle = focus ? faint : accent;
    for (let b = 0; b < BUCKETS; b++) {
      const list = buckets[b];
      if (!list.length) continue;
      const s = (b + 0.5) / BUCKETS;
      ctx.globalAlpha = focus ? 0.08 + 0.15 * s : 0.1 + 0.9 * s;
      ctx.lineWidth = 0.5 + 2.5 * s;
      ctx.beginPath();
      for (const line of list) {
        ctx.moveTo(x0, y(lines.query[line]));
        ctx.lineTo(x1, y(lines.key[line]));
      }
      ctx.stroke();
      drawn += list.length;
    }
    ctx.strokeStyle = accent;
    for (const line of hot) {
      const s = lines.strength[line] / 255;
      ctx.globalAlpha = 0.25 + 0.75 * s;
      ctx.lineWidth = 0.75 + 3 * s;
      ctx.beginPath();
      ctx.moveTo(x0, y(lines.query[line]));
      ctx.lineTo(x1, y(lines.key[line]));
      ctx.stroke();
    }
    drawn += hot.length;
    ctx.globalAlpha = 1;

    // token labels for the visible rows only, tinted by weight when a token is in focus
    const weights = focusWeights();
    const otherSide = focus ? (focus.side === "q" ? "k" : "q") : null;
    let slot = 0;
    for (let i = first; i <= last; i++, slot++) {
      for (const side of ["q", "k"]) {
        const node = labelRow(side, slot);
        node.style.display = "";
        node.style.top = `${y(i) - (ROW - 2) / 2}px`;
        if (side === "q") node.style.right = `${width - x0 + 6}px`;
        else node.style.left = `${x1 + 6}px`;
        if (node.textContent !== tokens[i]) node.textContent = tokens[i];
        node.dataset.i = String(i);
        node.classList.toggle("focus", !!focus && focus.side === side && focus.i === i);
        const line = side === otherSide ? weights.get(i) : undefined;
        if (line !== undefined) {
          const s = lines.strength[line] / 255;
          node.style.background = `color-mix(in srgb, ${accent} ${Math.round(15 + 60 * s)}%, transparent)`;
          node.title = `${fmt(lines.value[line], model.get("values"))}`;
        } else {
          node.style.background = "";
          node.title = "";
        }
      }
    }
    for (const side of ["q", "k"]) {
      for (let s = slot; s < pool[side].length; s++) pool[side][s].style.display = "none";
    }
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
      return;
    }
    if (!focus) {
      const n = lines.query.length;
      status.textContent = `${tokens.length} ${model.get("fuse_words") ? "words" : "tokens"}, ${n} lines · hover a token to isolate its lines, click to pin`;
      return;
    }
    const [starts, order, other] =
      focus.side === "q" ? [idx.byQ, idx.qOrder, lines.key] : [idx.byK, idx.kOrder, lines.query];
    const mine = [];
    for (let j = starts[focus.i]; j < starts[focus.i + 1]; j++) mine.push(order[j]);
    mine.sort((a, b) => lines.strength[b] - lines.strength[a]);
    const what = focus.side === "q" ? "attends to" : "is attended by";
    const best = mine
      .slice(0, 4)
      .map((l) => `${tokens[other[l]]} (${other[l]}) ${fmt(lines.value[l], model.get("values"))}`)
      .join(", ");
    status.textContent = `${tokens[focus.i]} (${focus.i}) ${what}: ${best || "nothing above the threshold"}`;
  }

  function hit(ev) {
    const r = stage.getBoundingClientRect();
    const x = ev.clientX - r.left;
    const i = Math.floor((ev.clientY - r.top + scroll.scrollTop - 4) / ROW);
    if (i < 0 || i >= tokens.length) return null;
    if (x < LABEL_W) return { side: "q", i };
    if (x > width - LABEL_W) return { side: "k", i };
    return null;
  }

  stage.addEventListener("mousemove", (ev) => {
    if (locked) return;
    const f = hit(ev);
    if ((f && focus && f.side === focus.side && f.i === focus.i) || (!f && !focus)) return;
    focus = f;
    draw();
    describe();
  });
  stage.addEventListener("mouseleave", () => {
    if (locked || !focus) return;
    focus = null;
    draw();
    describe();
  });
  stage.addEventListener("click", (ev) => {
    const f = hit(ev);
    locked = !!f && !(locked && focus && f.side === focus.side && f.i === focus.i);
    focus = f;
    draw();
    describe();
  });
  redrawOnScroll(scroll, draw);

  const t0 = performance.now();
  load();
  describe();
  root.dataset.renderMs = (performance.now() - t0).toFixed(2);
  const onChange = () => {
    load();
    describe();
  };
  model.on("change:lines", onChange);
  model.on("change:tokens", onChange);
  model.on("change:error", () => {
    errorBox.textContent = model.get("error") || "";
    describe();
  });
  const onControl = () => {
    syncControls();
    describe();
  };
  // every control the lines are tagged with (AttentionLines' `lines.of`)
  for (const name of Object.keys(model.get("lines")?.of || {})) {
    model.on(`change:${name}`, onControl);
  }
  const resize = new ResizeObserver(() => layout());
  resize.observe(box);
  return () => resize.disconnect();
}

export default defineView(render);
