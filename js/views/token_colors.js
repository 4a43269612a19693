// Spectral token colors: the text reflowed on a canvas, each token on its color, one row per
// stream (attention output, MLP output, residual stream) at the selected layer. The colors of
// every layer arrive once as uint8 RGB, so the slider and play need no kernel; the neighbour
// table of the current layer comes from Python (`neighbors`, valid for `neighbors_layer`).
import { textOn } from "../lib/theme.js";
import { defineView } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const LINE = 21; // px per text line
const PAD_X = 1; // px of color either side of a token's text
const MAX_ROW = 190; // px of a row's visible text before it scrolls
const MIN_CELL = 5; // px: empty pieces stay visible and hoverable
const NEWLINE_W = 12; // px of the cell that shows a newline's color

const CSS = `
.lms-tc { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #222);
  background: var(--jp-layout-color0, #fff); max-width: 980px; }
.lms-tc-bar { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: center; padding: 4px 0 6px; }
.lms-tc-bar button { font: inherit; min-width: 4.5em; color: inherit; background: var(--jp-layout-color2, #eee);
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 2px; cursor: pointer; padding: 2px 8px; }
.lms-tc-bar input[type=range] { width: 260px; accent-color: var(--jp-brand-color1, #1976d2); }
.lms-tc-layer { font-variant-numeric: tabular-nums; min-width: 7em; }
.lms-tc-title { font-weight: 600; padding: 6px 0 2px; color: var(--jp-ui-font-color1, #222); }
.lms-tc-scroll { position: relative; overflow-y: auto; border: 1px solid var(--jp-border-color2, #e0e0e0);
  border-radius: 2px; background: var(--jp-layout-color0, #fff); }
.lms-tc-scroll canvas { position: sticky; top: 0; display: block; cursor: pointer; }
.lms-tc-info { min-height: 1.5em; padding: 6px 0 0; color: var(--jp-ui-font-color2, #555); white-space: pre-wrap; }
.lms-tc-error { color: var(--jp-error-color1, #d32f2f); white-space: pre-wrap; }
`;

/** Lay the pieces out in lines of at most `width` px; a piece with newlines spans lines. */
function layout(ctx, texts, width) {
  const cells = []; // {token, line, x, w, text, newline}
  let x = 0;
  let line = 0;
  const place = (token, text, w, newline) => {
    if (x > 0 && x + w > width) {
      line += 1;
      x = 0;
    }
    cells.push({ token, line, x, w, text, newline });
    x += w;
  };
  texts.forEach((piece, token) => {
    const parts = piece.replace(/\t/g, "    ").split("\n");
    parts.forEach((part, i) => {
      const last = i === parts.length - 1;
      if (part.length || (last && parts.length === 1)) {
        const w = Math.max(MIN_CELL, ctx.measureText(part).width + 2 * PAD_X);
        place(token, part, w, false);
      }
      if (!last) {
        place(token, "↵", NEWLINE_W, true);
        line += 1;
        x = 0;
      }
    });
  });
  const lines = line + 1;
  const byLine = Array.from({ length: lines }, () => []);
  for (const c of cells) byLine[c.line].push(c);
  const byToken = Array.from({ length: texts.length }, () => []);
  for (const c of cells) byToken[c.token].push(c);
  return { cells, byLine, byToken, height: lines * LINE };
}

function render({ model, el }) {
  const style = document.createElement("style");
  style.textContent = CSS;
  const root = document.createElement("div");
  root.className = "lms-tc";
  const bar = document.createElement("div");
  bar.className = "lms-tc-bar";
  const play = document.createElement("button");
  play.type = "button";
  const slider = document.createElement("input");
  slider.type = "range";
  slider.min = "0";
  slider.step = "1";
  slider.setAttribute("aria-label", "layer");
  const layerLabel = document.createElement("span");
  layerLabel.className = "lms-tc-layer";
  bar.append(play, slider, layerLabel);
  const info = document.createElement("div");
  info.className = "lms-tc-info";
  const errorBox = document.createElement("div");
  errorBox.className = "lms-tc-error";
  root.append(bar);
  el.append(style, root);

  let rows = []; // {title, scroll, canvas, spacer, stream}
  let lay = null;
  let colors = null;
  let neighbors = null;
  let hover = null; // {row, token}
  let timer = null;
  let width = 0;
  let font = "13px monospace";
  const theme = { fg: "#222", accent: "#1976d2", bg: "#fff" };

  const seq = () => model.get("texts").length;
  // for tests and tooling: where token `t` is drawn in its row's canvas (first cell, CSS px)
  root.tokenBox = (t) => {
    const c = lay?.byToken[t]?.[0];
    return c && { x: c.x + 4, y: c.line * LINE + 1, w: c.w, h: LINE - 2 };
  };

  function readTheme() {
    const cs = getComputedStyle(root);
    const v = (name, fallback) => cs.getPropertyValue(name).trim() || fallback;
    theme.fg = v("--jp-ui-font-color0", "#111");
    theme.accent = v("--jp-brand-color1", "#1976d2");
    theme.bg = v("--jp-layout-color0", "#fff");
  }

  function buildRows() {
    for (const r of rows) {
      r.title.remove();
      r.scroll.remove();
    }
    rows = model.get("titles").map((title, s) => {
      const head = document.createElement("div");
      head.className = "lms-tc-title";
      head.textContent = title;
      const scroll = document.createElement("div");
      scroll.className = "lms-tc-scroll";
      const canvas = document.createElement("canvas");
      canvas.dataset.stream = model.get("streams")[s];
      const spacer = document.createElement("div");
      scroll.append(canvas, spacer);
      root.append(head, scroll);
      const row = { title: head, scroll, canvas, spacer, index: s };
      scroll.addEventListener("scroll", () => {
        for (const other of rows)
          if (other !== row && other.scroll.scrollTop !== scroll.scrollTop)
            other.scroll.scrollTop = scroll.scrollTop;
        draw();
      });
      canvas.addEventListener("mousemove", (ev) => {
        const token = hit(row, ev);
        if (hover?.token !== token || hover?.row !== s) {
          hover = token === -1 ? null : { row: s, token };
          draw();
          describe();
        }
      });
      canvas.addEventListener("mouseleave", () => {
        hover = null;
        draw();
        describe();
      });
      canvas.addEventListener("click", (ev) => {
        const token = hit(row, ev);
        if (token === -1) return;
        model.set("selected_token", model.get("selected_token") === token ? -1 : token);
        model.save_changes();
        draw();
      });
      return row;
    });
    root.append(info, errorBox);
  }

  function hit(row, ev) {
    if (!lay) return -1;
    const rect = row.canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left;
    const y = ev.clientY - rect.top + row.scroll.scrollTop;
    const cellsOnLine = lay.byLine[Math.floor(y / LINE)];
    if (!cellsOnLine) return -1;
    for (const c of cellsOnLine) if (x >= c.x && x < c.x + c.w) return c.token;
    return -1;
  }

  function relayout() {
    const w = Math.floor(root.clientWidth) - 2;
    if (w <= 0) return false; // not attached yet: draw once visible
    const family = getComputedStyle(root).getPropertyValue("--jp-code-font-family").trim();
    font = `13px ${family || "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"}`;
    width = w;
    const ctx = rows[0]?.canvas.getContext("2d");
    if (!ctx) return false;
    ctx.font = font;
    lay = layout(ctx, model.get("texts"), width - 8);
    const viewH = Math.min(lay.height, MAX_ROW);
    const dpr = window.devicePixelRatio || 1;
    for (const r of rows) {
      r.scroll.style.height = `${viewH + 2}px`;
      r.canvas.style.width = `${width}px`;
      r.canvas.style.height = `${viewH}px`;
      r.canvas.width = Math.round(width * dpr);
      r.canvas.height = Math.round(viewH * dpr);
      r.spacer.style.height = `${Math.max(0, lay.height - viewH)}px`;
    }
    return true;
  }

  function rgbAt(s, token) {
    const L = model.get("n_layers");
    const i = ((s * L + model.get("layer")) * seq() + token) * 3;
    return [colors[i], colors[i + 1], colors[i + 2]];
  }

  function neighborsOf(s, token) {
    if (!neighbors || model.get("neighbors_layer") !== model.get("layer")) return null;
    const k = model.get("k");
    const out = [];
    for (let j = 0; j < k; j++) {
      const n = neighbors[(s * seq() + token) * k + j];
      if (n >= 0) out.push(n);
    }
    return out;
  }

  function outline(ctx, cells, top, color, lineWidth, dash) {
    ctx.save();
    ctx.strokeStyle = color;
    ctx.lineWidth = lineWidth;
    ctx.setLineDash(dash);
    for (const c of cells)
      ctx.strokeRect(
        c.x + 4 + lineWidth / 2,
        c.line * LINE - top + 1 + lineWidth / 2,
        c.w - lineWidth,
        LINE - 2 - lineWidth,
      );
    ctx.restore();
  }

  function drawRow(row) {
    const ctx = row.canvas.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    const viewH = row.canvas.height / dpr;
    const top = row.scroll.scrollTop;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, viewH);
    ctx.font = font;
    ctx.textBaseline = "middle";
    const first = Math.max(0, Math.floor(top / LINE));
    const last = Math.min(lay.byLine.length - 1, Math.floor((top + viewH) / LINE));
    for (let line = first; line <= last; line++) {
      const y = line * LINE - top;
      for (const c of lay.byLine[line]) {
        const [r, g, b] = rgbAt(row.index, c.token);
        ctx.fillStyle = `rgb(${r},${g},${b})`;
        ctx.fillRect(c.x + 4, y + 1, c.w, LINE - 2);
        ctx.fillStyle = textOn([r, g, b]);
        ctx.globalAlpha = c.newline ? 0.6 : 1;
        ctx.fillText(c.text, c.x + 4 + PAD_X, y + LINE / 2 + 0.5);
        ctx.globalAlpha = 1;
      }
    }
    const selected = model.get("selected_token");
    if (hover) {
      const near = neighborsOf(row.index, hover.token) || [];
      outline(
        ctx,
        near.flatMap((n) => lay.byToken[n]),
        top,
        theme.fg,
        1.5,
        [3, 2],
      );
      outline(ctx, lay.byToken[hover.token], top, theme.fg, 2, []);
    }
    if (selected >= 0 && selected < seq())
      outline(ctx, lay.byToken[selected], top, theme.accent, 3, []);
  }

  function draw() {
    if (!lay || !colors) return;
    readTheme(); // JupyterLab may switch light/dark while the view is open
    for (const r of rows) drawRow(r);
  }

  function describe() {
    const tokens = model.get("tokens");
    root.dataset.layer = String(model.get("layer"));
    root.dataset.hover = hover ? String(hover.token) : "";
    if (!hover) {
      const sel = model.get("selected_token");
      info.textContent =
        sel >= 0 && sel < tokens.length
          ? `selected: ${tokens[sel]}  (#${sel})`
          : "Hover a token to outline its nearest neighbours at this layer; click to select it.";
      return;
    }
    const near = neighborsOf(hover.row, hover.token);
    const title = model.get("titles")[hover.row];
    const list = near ? near.map((n) => `${tokens[n]} (#${n})`).join(",  ") : "…";
    info.textContent = `${tokens[hover.token]} (#${hover.token}) — nearest in ${title} at layer ${model.get("layer")}:  ${list}`;
  }

  function syncControls() {
    const L = model.get("n_layers");
    slider.max = String(L - 1);
    slider.value = String(model.get("layer"));
    layerLabel.textContent = `layer ${model.get("layer")} / ${L - 1}`;
    play.textContent = timer ? "❚❚ pause" : "▶ play";
    play.setAttribute("aria-pressed", timer ? "true" : "false");
  }

  function setLayer(layer) {
    model.set("layer", layer);
    model.save_changes();
    syncControls();
    draw();
    describe();
  }

  function stop() {
    if (timer) clearInterval(timer);
    timer = null;
    syncControls();
  }

  slider.addEventListener("input", () => setLayer(Number(slider.value)));
  play.addEventListener("click", () => {
    if (timer) return stop();
    const L = model.get("n_layers");
    if (model.get("layer") >= L - 1) setLayer(0);
    timer = setInterval(() => {
      const next = model.get("layer") + 1;
      if (next >= model.get("n_layers")) return stop();
      setLayer(next);
      if (next >= model.get("n_layers") - 1) stop();
    }, model.get("play_interval"));
    syncControls();
  });

  const onColors = () => {
    colors = decode(model.get("colors"));
    draw();
  };
  const onNeighbors = () => {
    neighbors = decode(model.get("neighbors"));
    draw();
    describe();
  };
  const onLayer = () => {
    syncControls();
    draw();
    describe();
  };
  const onText = () => {
    hover = null;
    buildRows();
    if (relayout()) draw();
  };
  const onError = () => {
    errorBox.textContent = model.get("error") || "";
  };
  const onSelected = () => {
    draw();
    describe();
  };
  const handlers = {
    "change:colors": onColors,
    "change:neighbors": onNeighbors,
    "change:neighbors_layer": onNeighbors,
    "change:layer": onLayer,
    "change:n_layers": onLayer,
    "change:texts": onText,
    "change:titles": onText,
    "change:error": onError,
    "change:selected_token": onSelected,
  };
  for (const [ev, fn] of Object.entries(handlers)) model.on(ev, fn);

  buildRows();
  colors = decode(model.get("colors"));
  neighbors = decode(model.get("neighbors"));
  syncControls();
  describe();
  onError();
  // Jupyter renders detached: lay out (and read theme colors) once the view has a width
  const resize = new ResizeObserver(() => {
    if (Math.floor(root.clientWidth) - 2 !== width && relayout()) draw();
  });
  resize.observe(root);
  requestAnimationFrame(() => {
    if (relayout()) draw();
  });

  return () => {
    stop();
    resize.disconnect();
    for (const [ev, fn] of Object.entries(handlers)) model.off(ev, fn);
  };
}

export default defineView(render);
