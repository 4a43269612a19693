// Spectral token colors: the text reflowed on a canvas, each token on its color, one row per
// stream (attention output, MLP output, residual stream) at the selected layer. Colors arrive
// as uint8 RGB slices, one per (row, layer) in `color_slices`; once spectral, every layer's are
// here, so the slider and play need no kernel. The neighbour table of the current layer comes
// from Python (`neighbors`, valid for `neighbors_layer`). A long prompt starts from first-pass
// colors of what Python computed so far: a row without a slice at the shown layer is drawn
// plain and its title says it is to come; `status` says what is pending.
import { colorAt, infoText, LINE, neighborsOf, reflow, tokenAt } from "../parts/reflow.js";
import CSS from "../styles/token_colors.css";
import { control } from "../lib/controls.js";
import { el, toolbar } from "../lib/dom.js";
import { cssVar, textOn } from "../lib/theme.js";
import { drawsWith } from "../lib/vector.js";
import { defineView, injectCss } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const MAX_ROW = 190; // px of a row's visible text before it scrolls

function outline(ctx, cells, top, color, lineWidth, dash) {
  ctx.save();
  ctx.strokeStyle = color;
  ctx.lineWidth = lineWidth;
  ctx.setLineDash(dash);
  const inset = lineWidth / 2;
  for (const c of cells) {
    ctx.strokeRect(
      c.x + 4 + inset,
      c.line * LINE - top + 1 + inset,
      c.w - lineWidth,
      LINE - 2 - lineWidth,
    );
  }
  ctx.restore();
}

function render({ model, el: root }) {
  injectCss(CSS);
  const box = el("div", { className: "lms-tc", parent: root });
  const bar = toolbar(box);
  const play = el("button", { parent: bar });
  play.type = "button";
  const slider = control(model, "layer", bar, {
    kind: "range",
    label: "",
    min: 0,
    step: 1,
    live: true,
  });
  slider.input.setAttribute("aria-label", "layer");
  const layerLabel = el("span", { className: "lms-tc-layer", parent: bar });
  const status = el("span", { className: "lms-note", parent: bar });
  const rowsBox = el("div", { parent: box });
  const info = el("div", { className: "lms-tc-info lms-note", parent: box });

  let rows = []; // {scroll, canvas, spacer, index}
  let lay = null;
  let colors = null;
  let slices = new Map(); // row * n_layers + layer -> slice of `colors`
  let neighbors = null;
  let hover = null; // {row, token}
  let top = 0; // the rows' shared scroll position (CSS px)
  let frame = 0; // a scroll's pending animation frame
  let theme = null; // read outside the scroll path (getComputedStyle restyles)
  let timer = null;
  let width = 0;
  let font = "13px monospace";
  const seq = () => model.get("texts").length;
  // for tests and tooling: where token `t` is drawn in its row's canvas (first cell, CSS px)
  box.tokenBox = (t) => {
    const c = lay?.byToken[t]?.[0];
    return c && { x: c.x + 4, y: c.line * LINE + 1, w: c.w, h: LINE - 2 };
  };

  const near = (s, token) =>
    neighbors && model.get("neighbors_layer") === model.get("layer")
      ? neighborsOf(neighbors, { s, token, k: model.get("n_neighbors"), seq: seq() })
      : null;

  function buildRows() {
    rowsBox.replaceChildren();
    top = 0;
    rows = model.get("titles").map((title, s) => {
      const head = el("div", { className: "lms-tc-title", text: title, parent: rowsBox });
      const scroll = el("div", { className: "lms-tc-scroll", parent: rowsBox });
      const canvas = el("canvas", { parent: scroll });
      drawsWith(
        canvas,
        (ctx) => lay && colors && drawRow(row, themeColors(), scroll.scrollTop, ctx),
      );
      canvas.dataset.stream = model.get("streams")[s];
      const spacer = el("div", { parent: scroll });
      const row = { scroll, canvas, spacer, index: s, head, title, at: 0 };
      const hit = (ev) => {
        const rect = canvas.getBoundingClientRect();
        return tokenAt(lay, ev.clientX - rect.left, ev.clientY - rect.top + scroll.scrollTop);
      };
      scroll.addEventListener("scroll", () => {
        const at = scroll.scrollTop;
        // no move, or a follower's own event once it got the position it was given: passing
        // that (by then older) position on would pull the row being scrolled back
        if (Math.abs(at - row.at) < 1) return;
        row.at = at;
        top = at;
        schedule();
      });
      canvas.addEventListener("mousemove", (ev) => {
        const token = hit(ev);
        if (hover?.token !== token || hover?.row !== s)
          refresh(token === -1 ? null : { row: s, token });
      });
      canvas.addEventListener("mouseleave", () => refresh(null));
      canvas.addEventListener("click", (ev) => {
        const token = hit(ev);
        if (token === -1) return;
        model.set("token", model.get("token") === token ? -1 : token);
        model.save_changes();
        draw();
      });
      return row;
    });
  }

  function relayout() {
    const w = Math.floor(box.clientWidth) - 2;
    const ctx = rows[0]?.canvas.getContext("2d");
    if (w <= 0 || !ctx) return false; // not attached yet: draw once visible
    const family = cssVar(box, "--jp-code-font-family", "");
    font = `13px ${family || "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"}`;
    width = w;
    ctx.font = font;
    lay = reflow((text) => ctx.measureText(text).width, model.get("texts"), width - 8);
    const viewH = Math.min(lay.height, MAX_ROW);
    const dpr = window.devicePixelRatio || 1;
    for (const r of rows) {
      // the content box: its border is outside, so the window is exactly the canvas and the
      // last line can scroll fully into view (viewH + 2 left it 2 px short)
      r.scroll.style.height = `${viewH}px`;
      r.canvas.style.width = `${width}px`;
      r.canvas.style.height = `${viewH}px`;
      r.canvas.width = Math.round(width * dpr);
      r.canvas.height = Math.round(viewH * dpr);
      r.spacer.style.height = `${Math.max(0, lay.height - viewH)}px`;
    }
    return true;
  }

  function drawRow(row, theme, top, ctx = row.canvas.getContext("2d")) {
    const dpr = window.devicePixelRatio || 1;
    const viewH = row.canvas.height / dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, viewH);
    ctx.font = font;
    ctx.textBaseline = "middle";
    const slice = sliceOf(row.index);
    const where = { slice, seq: seq() };
    const last = Math.min(lay.byLine.length - 1, Math.floor((top + viewH) / LINE));
    for (let line = Math.max(0, Math.floor(top / LINE)); line <= last; line++) {
      const y = line * LINE - top;
      for (const c of lay.byLine[line]) {
        const rgb =
          slice === undefined ? theme.plain : colorAt(colors, { ...where, token: c.token });
        ctx.fillStyle = `rgb(${rgb.join(",")})`;
        ctx.fillRect(c.x + 4, y + 1, c.w, LINE - 2);
        ctx.fillStyle = textOn(rgb);
        ctx.globalAlpha = c.newline ? 0.6 : 1;
        ctx.fillText(c.text, c.x + 5, y + LINE / 2 + 0.5);
        ctx.globalAlpha = 1;
      }
    }
    if (hover) {
      const cells = (near(row.index, hover.token) || []).flatMap((n) => lay.byToken[n]);
      outline(ctx, cells, top, theme.fg, 1.5, [3, 2]);
      outline(ctx, lay.byToken[hover.token], top, theme.fg, 2, []);
    }
    const selected = model.get("token");
    if (selected >= 0 && selected < seq()) {
      outline(ctx, lay.byToken[selected], top, theme.accent, 3, []);
    }
  }

  // read each time: JupyterLab may switch light/dark while the view is open
  const themeColors = () => ({
    fg: cssVar(box, "--jp-ui-font-color0", "#111"),
    accent: cssVar(box, "--jp-brand-color1", "#1976d2"),
    plain: [224, 224, 224], // a layer whose colors are not here yet
  });

  const sliceOf = (s) => slices.get(s * model.get("n_layers") + model.get("layer"));
  function readSlices() {
    const L = model.get("n_layers");
    slices = new Map(model.get("color_slices").map(([s, layer], i) => [s * L + layer, i]));
  }

  // A scroll draws once per frame: the followers take the scrolled row's position (their
  // scroll events then only say they got there) and every row is painted at that position,
  // without reading layout back.
  function schedule() {
    if (!frame) frame = requestAnimationFrame(onFrame);
  }
  function onFrame() {
    frame = 0;
    for (const r of rows) {
      if (Math.abs(r.at - top) < 1) continue;
      r.at = top;
      r.scroll.scrollTop = top;
    }
    paint();
  }

  function paint() {
    for (const r of rows) {
      const head = sliceOf(r.index) === undefined ? `${r.title} · to come` : r.title;
      if (r.head.textContent !== head) r.head.textContent = head;
    }
    if (!lay || !colors) return;
    theme ??= themeColors();
    for (const r of rows) drawRow(r, theme, top);
  }

  function draw() {
    theme = themeColors();
    paint();
  }

  function describe() {
    box.dataset.layer = String(model.get("layer"));
    box.dataset.exact = model.get("exact") ? "1" : "0";
    status.textContent = model.get("status");
    box.dataset.hover = hover ? String(hover.token) : "";
    info.textContent = infoText({
      tokens: model.get("tokens"),
      hover,
      near: hover && near(hover.row, hover.token),
      title: hover && model.get("titles")[hover.row],
      layer: model.get("layer"),
      selected: model.get("token"),
    });
  }

  function refresh(newHover = hover) {
    hover = newHover;
    draw();
    describe();
  }

  function syncControls() {
    const L = model.get("n_layers");
    slider.input.max = String(L - 1);
    slider.refresh();
    layerLabel.textContent = `layer ${model.get("layer")} / ${L - 1}`;
    play.textContent = timer ? "❚❚ pause" : "▶ play";
    play.setAttribute("aria-pressed", timer ? "true" : "false");
  }

  function stop() {
    clearInterval(timer);
    timer = null;
    syncControls();
  }

  const setLayer = (layer) => {
    model.set("layer", layer);
    model.save_changes();
  };
  play.addEventListener("click", () => {
    if (timer) return stop();
    if (model.get("layer") >= model.get("n_layers") - 1) setLayer(0);
    timer = setInterval(() => {
      const next = model.get("layer") + 1;
      if (next < model.get("n_layers")) setLayer(next);
      if (next >= model.get("n_layers") - 1) stop();
    }, model.get("play_interval"));
    syncControls();
  });

  const onText = () => {
    hover = null;
    buildRows();
    if (relayout()) draw();
  };
  const on = {
    colors: () => {
      colors = decode(model.get("colors"));
      readSlices();
      draw();
    },
    neighbors: () => {
      neighbors = decode(model.get("neighbors"));
      refresh();
    },
    layer: () => {
      syncControls();
      refresh();
    },
    texts: onText,
    titles: onText,
    token: () => refresh(),
  };
  on.neighbors_layer = on.neighbors;
  on.color_slices = on.colors;
  on.status = () => describe();
  on.exact = on.status;
  on.n_layers = on.layer;
  for (const [name, fn] of Object.entries(on)) model.on(`change:${name}`, fn);

  buildRows();
  colors = decode(model.get("colors"));
  readSlices();
  neighbors = decode(model.get("neighbors"));
  syncControls();
  describe();
  // Jupyter renders detached: lay out (and read theme colors) once the view has a width
  const resize = new ResizeObserver(() => {
    if (Math.floor(box.clientWidth) - 2 !== width && relayout()) draw();
  });
  resize.observe(box);
  requestAnimationFrame(() => {
    if (relayout()) draw();
  });
  return () => {
    stop(); // a timer, an observer and a frame: anywidget removes only model listeners
    cancelAnimationFrame(frame);
    resize.disconnect();
  };
}

export default defineView(render);
