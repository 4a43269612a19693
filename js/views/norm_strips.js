// NormPlot's strips: every token's log norm at every layer, jittered around its layer, as one
// canvas of blended disks (30 layers x 8k tokens is 245k points: SVG drew one element each).
// A second canvas on top holds what changes on hover and selection (rings, the selected
// token's trail), so a hover redraws a few shapes, and the point under the mouse is found in
// a grid index. Axis text is DOM text, so figures keep it as text.
import {
  blendPoints,
  buildIndex,
  makeScale,
  nearest,
  niceTicks,
  toBytes,
  tokenName,
  valueRange,
} from "../parts/norm_strips.js";
import CSS from "../styles/norm_strips.css";
import { el } from "../lib/dom.js";
import { cssVar } from "../lib/theme.js";
import { drawsWith } from "../lib/vector.js";
import { defineView, injectCss } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const MARGIN = { top: 34, right: 10, bottom: 42, left: 52 };
const HEIGHT = 360; // px, the figure's height as the bqplot strips had it
const RADIUS = 2.1; // px: bqplot's default_size 14 (an area in px^2)
const OPACITY = 0.55;
const RING = 4.7; // px: the selected token's ring (bqplot size 70)
const JITTER = 0.3; // the jitter's bound, in layers (uint8 0..255 -> -0.3..0.3)
const SETTLE_MS = 150; // a new width held this long is redrawn, once the page is idle:
const IDLE_MS = 40; // an idle moment this long (the browser gives at most 50 ms)
const MAX_WAIT_MS = 1500; // or after this long at the latest

const hexRgb = (hex) => [1, 3, 5].map((i) => Number.parseInt(hex.slice(i, i + 2), 16));

function render({ model, el: root }) {
  injectCss(CSS);
  const box = el("div", { className: "lms-ns", parent: root });
  const title = el("div", { className: "lms-ns-title", parent: box });
  const stage = el("div", { className: "lms-ns-stage", parent: box });
  const base = el("canvas", { parent: stage });
  const overlay = el("canvas", { className: "lms-ns-overlay", parent: stage });
  const axes = el("div", { className: "lms-ns-axes", parent: stage });
  const tip = el("div", { className: "lms-tip", parent: stage });

  const scratch = document.createElement("canvas");
  // read each time: JupyterLab may switch light/dark while the view is open
  const baseTheme = () => ({
    grid: cssVar(box, "--jp-border-color2", "#d0d0d0"),
    axis: cssVar(box, "--jp-ui-font-color2", "#777"),
  });
  // a figure redraws both canvases: lines and rings as vector marks, the points as one image
  drawsWith(base, (ctx, figure) => scale && paintBase(ctx, baseTheme(), figure?.pixelRatio));
  drawsWith(overlay, (ctx) => scale && paintOverlay(ctx));
  let data = null; // {norms, jitter, seq, nLayers, positions, colors}
  let scale = null;
  let index = null;
  let width = 0;
  let hover = -1; // point id = layer * seq + position
  const dpr = () => window.devicePixelRatio || 1;

  const load = () => {
    const norms = decode(model.get("norms"));
    const shape = model.get("norms")?.shape || [0, 0];
    const positions = decode(model.get("positions")) || new Int32Array(0);
    const jitter = decode(model.get("jitter"));
    data = {
      norms,
      jitter,
      nLayers: shape[0],
      seq: shape[1],
      positions,
      colors: model.get("colors").map(hexRgb),
      ...valueRange(norms || [], shape[1], shape[0], positions),
    };
  };
  const xOf = (l, p) => l + (data.jitter[l * data.seq + p] / 255 - 0.5) * 2 * JITTER;
  const eachPoint = (emit, px = 1) => {
    const { norms, seq, nLayers, positions } = data;
    for (let l = 0; l < nLayers; l++) {
      for (const p of positions) {
        emit(scale.x(xOf(l, p)) * px, scale.y(norms[l * seq + p]) * px, l, l * seq + p);
      }
    }
  };
  // for tests and tooling: where the point of `position` at `layer` stands (CSS px in the
  // stage), which positions are drawn, how many layers
  box.pointAt = (layer, position) =>
    scale && {
      x: scale.x(xOf(layer, position)),
      y: scale.y(data.norms[layer * data.seq + position]),
    };
  box.drawnPositions = () => Array.from(data?.positions ?? []);
  box.layerCount = () => data?.nLayers ?? 0;
  box.seqLength = () => data?.seq ?? 0;
  box.hitAt = (x, y) => (index ? nearest(index, x, y) : -1);

  function size() {
    const w = Math.floor(stage.clientWidth);
    if (w <= 0) return false; // not attached yet: draw once visible
    width = w;
    const ratio = dpr();
    for (const c of [base, overlay]) {
      c.width = Math.round(w * ratio);
      c.height = Math.round(HEIGHT * ratio);
      c.style.width = `${w}px`;
      c.style.height = `${HEIGHT}px`;
    }
    stage.style.height = `${HEIGHT}px`;
    return true;
  }

  function drawAxes() {
    const { box: b } = scale;
    axes.replaceChildren();
    const label = (text, x, y, cls) => {
      const node = el("span", { className: cls, text, parent: axes });
      node.style.left = `${x}px`;
      node.style.top = `${y}px`;
    };
    const L = data.nLayers;
    const every = L <= 16 ? 1 : 2; // every other layer past 16, as before
    for (let l = 0; l < L; l += every) label(String(l), scale.x(l), b.top + b.height + 4, "x");
    const yTicks = niceTicks(data.yMin, data.yMax, 6);
    for (const v of yTicks) label(v.toFixed(1), b.left - 6, scale.y(v), "y");
    label("layer", b.left + b.width / 2, b.top + b.height + 22, "x name");
    label(model.get("y_label"), b.left, b.top - 4, "y name");
  }

  // the points blended on `target` at `ratio` device pixels per CSS pixel; how many drawn
  function blendOnto(target, ratio) {
    target.width = Math.round(width * ratio);
    target.height = Math.round(HEIGHT * ratio);
    const image = new ImageData(target.width, target.height);
    const buffer = new Float32Array(image.data.length);
    const drawn = blendPoints(buffer, target.width, target.height, (e) => eachPoint(e, ratio), {
      radius: RADIUS * ratio,
      colors: data.colors,
      opacity: OPACITY,
    });
    toBytes(buffer, image.data);
    target.getContext("2d").putImageData(image, 0, 0);
    return drawn;
  }

  // grid and axis lines, then the points' picture over them: the canvas and a figure alike (a
  // figure at a finer `pixelRatio` than the screen's gets the points blended at that ratio)
  function paintBase(ctx, theme, pixelRatio = dpr()) {
    const { box: b } = scale;
    const yTicks = niceTicks(data.yMin, data.yMax, 6);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, base.width, base.height);
    ctx.save();
    ctx.scale(dpr(), dpr());
    ctx.strokeStyle = theme.grid;
    ctx.setLineDash([3, 3]);
    ctx.lineWidth = 1;
    for (const v of yTicks) {
      const y = Math.round(scale.y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(b.left, y);
      ctx.lineTo(b.left + b.width, y);
      ctx.stroke();
    }
    ctx.setLineDash([]);
    ctx.strokeStyle = theme.axis;
    ctx.beginPath();
    ctx.moveTo(b.left + 0.5, b.top);
    ctx.lineTo(b.left + 0.5, b.top + b.height + 0.5);
    ctx.lineTo(b.left + b.width, b.top + b.height + 0.5);
    ctx.stroke();
    ctx.restore();
    const points = pixelRatio > dpr() ? document.createElement("canvas") : scratch;
    if (points !== scratch) blendOnto(points, pixelRatio);
    ctx.drawImage(points, 0, 0, base.width, base.height);
  }

  function drawBase() {
    if (!data?.norms || !size()) return;
    scale = makeScale(data, {
      left: MARGIN.left,
      top: MARGIN.top,
      width: Math.max(10, width - MARGIN.left - MARGIN.right),
      height: HEIGHT - MARGIN.top - MARGIN.bottom,
    });
    const ctx = base.getContext("2d");
    // grid lines under the points: the points go through a scratch canvas, since
    // putImageData replaces pixels instead of drawing over them
    const drawn = blendOnto(scratch, dpr());
    drawAxes();
    paintBase(ctx, baseTheme());
    index = buildIndex((emit) => eachPoint((x, y, _l, id) => emit(x, y, id)), {
      width,
      height: HEIGHT,
    });
    box.dataset.points = String(drawn);
    drawOverlay();
  }

  function ring(ctx, x, y, r, color, lineWidth) {
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.strokeStyle = color;
    ctx.lineWidth = lineWidth;
    ctx.stroke();
  }

  function drawOverlay() {
    if (!scale) return;
    paintOverlay(overlay.getContext("2d"));
    box.dataset.selected = String(model.get("token"));
  }

  // the selected token's trail and rings, and the hovered point's ring
  function paintOverlay(ctx) {
    ctx.setTransform(dpr(), 0, 0, dpr(), 0, 0);
    ctx.clearRect(0, 0, width, HEIGHT);
    const fg = cssVar(box, "--jp-ui-font-color0", "#111");
    const token = model.get("token");
    if (token >= 0 && token < data.seq) {
      const pts = [];
      for (let l = 0; l < data.nLayers; l++) {
        const v = data.norms[l * data.seq + token];
        if (Number.isFinite(v)) pts.push([scale.x(xOf(l, token)), scale.y(v)]);
      }
      ctx.globalAlpha = 0.6;
      ctx.beginPath();
      for (const [i, [x, y]] of pts.entries()) {
        if (i) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
      }
      ctx.strokeStyle = fg;
      ctx.lineWidth = 1;
      ctx.stroke();
      ctx.globalAlpha = 1;
      for (const [x, y] of pts) ring(ctx, x, y, RING, fg, 2);
    }
    if (hover >= 0) {
      const l = Math.floor(hover / data.seq);
      const p = hover % data.seq;
      ring(ctx, scale.x(xOf(l, p)), scale.y(data.norms[hover]), RADIUS + 2.5, fg, 1.5);
    }
  }

  function showTip(ev) {
    if (hover < 0) {
      tip.style.display = "none";
      box.dataset.hover = "";
      return;
    }
    const l = Math.floor(hover / data.seq);
    const p = hover % data.seq;
    tip.replaceChildren(
      el("div", { className: "head", text: tokenName(model.get("tokens"), p) }),
      el("div", { text: `layer ${l}` }),
      el("div", { text: `log norm ${data.norms[hover].toFixed(3)}` }),
    );
    tip.style.display = "block";
    const rect = stage.getBoundingClientRect();
    const x = ev.clientX - rect.left;
    tip.style.left = `${Math.min(x + 12, Math.max(0, width - tip.offsetWidth - 4))}px`;
    tip.style.top = `${ev.clientY - rect.top + 14}px`;
    box.dataset.hover = `${l}:${p}`;
  }

  const pointAtEvent = (ev) => {
    if (!index) return -1;
    const rect = stage.getBoundingClientRect();
    return nearest(index, ev.clientX - rect.left, ev.clientY - rect.top);
  };
  overlay.addEventListener("mousemove", (ev) => {
    const id = pointAtEvent(ev);
    if (id !== hover) {
      hover = id;
      drawOverlay();
    }
    showTip(ev);
  });
  overlay.addEventListener("mouseleave", () => {
    hover = -1;
    drawOverlay();
    tip.style.display = "none";
    box.dataset.hover = "";
  });
  overlay.addEventListener("click", (ev) => {
    const id = pointAtEvent(ev);
    if (id < 0) return;
    model.set("token", id % data.seq);
    model.save_changes();
  });

  const reload = () => {
    hover = -1;
    load();
    drawBase();
  };
  const retitle = () => {
    title.textContent = model.get("title");
  };
  for (const name of ["norms", "positions", "jitter", "colors", "y_label"]) {
    model.on(`change:${name}`, reload);
  }
  model.on("change:title", retitle);
  model.on("change:token", drawOverlay);
  retitle();
  load();
  // Jupyter renders detached: draw once the stage has a width, and again when it changes.
  // While the width keeps changing (a saved page's widget manager adding the figures and
  // controls around it, a panel being dragged) the picture drawn is stretched, and redrawn
  // once the width has held and the page is idle: each redraw blends every point (~85 ms at
  // 8k tokens), which held back the saved page's last bqplot figure.
  let settle = 0;
  let idle = 0;
  const whenIdle = (since) => {
    if (!window.requestIdleCallback) return drawBase();
    idle = requestIdleCallback((deadline) => {
      const waited = performance.now() - since;
      if (deadline.timeRemaining() < IDLE_MS && waited < MAX_WAIT_MS) whenIdle(since);
      else drawBase();
    });
  };
  const resize = new ResizeObserver(() => {
    const w = Math.floor(stage.clientWidth);
    if (w === width) return;
    if (!scale || w <= 0) {
      drawBase();
      return;
    }
    for (const c of [base, overlay]) c.style.width = `${w}px`;
    clearTimeout(settle);
    window.cancelIdleCallback?.(idle);
    settle = setTimeout(() => whenIdle(performance.now()), SETTLE_MS);
  });
  resize.observe(stage);
  requestAnimationFrame(drawBase);
  return () => {
    clearTimeout(settle);
    window.cancelIdleCallback?.(idle);
    resize.disconnect();
  };
}

export default defineView(render);
