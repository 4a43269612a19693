// The demonstrator view: each token as a chip with its id, shaded by how confidently the
// model predicted it; click selects (syncs `token`), Python answers with predictions; the
// first hover fetches every position's top next tokens in one request, for the tooltips.
// Chips are laid out from measured widths and only the lines in the scroll window exist as
// elements (recycled as it scrolls): 8k tokens were 24k elements to build and lay out.
import { chipLayout, chipTitle, infoText, nextTokens, visibleLines } from "../parts/tokens.js";
import CSS from "../styles/tokens.css";
import { sequentialCss } from "../lib/colors.js";
import { el } from "../lib/dom.js";
import { request } from "../lib/request.js";
import { setTokenText, tokenLabel } from "../lib/tokens.js";
import { defineView, injectCss, redrawOnScroll } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const TOP_K = 3; // next tokens per tooltip
const GAP = 4; // px between chips, across and down
const MAX_HEIGHT = 360; // px of chips before the row scrolls

function render({ model, el: root }) {
  injectCss(CSS);
  const box = el("div", { className: "lms-tokens", parent: root });
  const row = el("div", { className: "lms-tokens-row", parent: box });
  const stage = el("div", { className: "lms-tokens-stage", parent: row });
  const info = el("div", { className: "lms-tokens-info lms-note", parent: box });
  const pool = []; // the chip elements on the stage, in the stage's order
  const shown = new Map(); // token index -> its chip, for the lines in the scroll window
  let tokens = [];
  let ids = [];
  let confidence = [];
  let next = null; // {names, probs} once prefetched
  let lay = null;
  let widths = [];
  let width = 0;
  let chipH = 0;
  /** @type {Promise<void> | null} */
  let fetching = null;

  const prefetch = () => {
    if (fetching) return;
    const expectedBytes = tokens.length * TOP_K * 24;
    fetching = request(model, "next_tokens", { top_k: TOP_K }, { expectedBytes })
      .then(({ result, buffers }) => {
        next = { names: result.tokens, probs: decode({ data: buffers[0], ...result.probs }) };
        root.dataset.prefetched = "1";
        draw();
      })
      .catch((err) => {
        // Python shows its own failures in the error area; a static page shows its note
        root.dataset.prefetched = `failed: ${err.message}`;
      });
  };

  // one chip measured as the stylesheet draws it: its height, and what its box adds to text
  function measure() {
    const probe = chip();
    probe.style.position = "static";
    stage.append(probe);
    fill(probe, 0);
    const textW = probe.firstChild.getBoundingClientRect().width;
    const idW = probe.lastChild.getBoundingClientRect().width;
    const rect = probe.getBoundingClientRect();
    const ctx = document.createElement("canvas").getContext("2d");
    const fontOf = (node) => {
      const s = getComputedStyle(node);
      return `${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
    };
    const fonts = [fontOf(probe.firstChild), fontOf(probe.lastChild)];
    const minW = Number.parseFloat(getComputedStyle(probe).minWidth) || 0;
    const extra = rect.width - Math.max(textW, idW, minW);
    probe.remove();
    chipH = rect.height;
    const widthOf = (text, font) => {
      ctx.font = font;
      return ctx.measureText(text).width;
    };
    return tokens.map((t, i) =>
      Math.ceil(
        Math.max(widthOf(String(t ?? ""), fonts[0]), widthOf(String(ids[i]), fonts[1]), minW) +
          extra +
          1,
      ),
    );
  }

  function relayout() {
    const w = Math.floor(row.clientWidth);
    if (w <= 0) return false; // not attached yet: lay out once visible
    width = w;
    widths = tokens.length ? measure() : [];
    lay = chipLayout(widths, width, GAP);
    const height = Math.max(0, lay.lines * (chipH + GAP) - GAP);
    stage.style.height = `${height}px`;
    row.style.height = `${Math.min(height, MAX_HEIGHT)}px`;
    return true;
  }

  function chip() {
    const node = el("span", { className: "lms-token" });
    el("span", { className: "lms-token-text", parent: node });
    el("span", { className: "lms-token-id", parent: node });
    node.addEventListener("pointerenter", prefetch);
    return node;
  }

  function fill(node, i) {
    node.dataset.i = String(i);
    setTokenText(node.firstChild, tokens[i]);
    node.lastChild.textContent = String(ids[i]);
    // shaded over the theme's own background and capped at 55% blue, so the theme's text
    // colour stays readable on every chip in light and dark themes alike
    node.style.background = sequentialCss(i === 0 ? 0 : confidence[i] * 0.55);
    let title = chipTitle(tokenLabel(tokens[i], i, ids[i]), i, confidence[i]);
    if (next?.names[i]) {
      title = `${title}\nnext: ${nextTokens(next.names[i], next.probs, i, TOP_K).join(" · ")}`;
      node.dataset.next = next.names[i][0];
    } else delete node.dataset.next;
    node.title = title;
    node.classList.toggle("selected", i === model.get("token"));
  }

  function place(node, i) {
    fill(node, i);
    node.style.left = `${lay.x[i]}px`;
    node.style.top = `${lay.line[i] * (chipH + GAP)}px`;
    node.style.width = `${widths[i]}px`;
    shown.set(i, node);
  }

  // `scrolled`: only the window moved, so chips still in it stay as they are and those that
  // left it take the tokens that came in (refilling every chip each frame restyled, laid
  // out and repainted the whole window: 11 ms a frame at 2,048 tokens)
  function draw(scrolled = false) {
    if (!lay) return;
    const step = chipH + GAP;
    const { first, last } = visibleLines(row.scrollTop, row.clientHeight, step, lay.lines);
    const from = lay.lines ? lay.lineStart[first] : 0;
    const to = lay.lines ? lay.lineStart[last + 1] : 0;
    if (scrolled) {
      const spare = [];
      for (const [i, node] of shown) {
        if (i < from || i >= to) {
          shown.delete(i);
          spare.push(node);
        }
      }
      for (let i = from; i < to; i++) {
        if (shown.has(i)) continue;
        let node = spare.pop();
        if (!node) {
          node = stage.appendChild(chip());
          pool.push(node);
        }
        place(node, i);
      }
      const gone = new Set(spare);
      for (const node of spare) node.remove();
      if (gone.size) pool.splice(0, pool.length, ...pool.filter((n) => !gone.has(n)));
    } else {
      shown.clear();
      for (let i = from; i < to; i++) {
        const k = i - from;
        if (!pool[k]) pool[k] = stage.appendChild(chip());
        place(pool[k], i);
      }
      for (const node of pool.splice(to - from)) node.remove();
    }
    root.dataset.first = String(from);
    root.dataset.last = String(to - 1);
  }

  stage.addEventListener("click", (ev) => {
    const node = ev.target.closest?.(".lms-token");
    if (!node) return;
    const i = Number(node.dataset.i);
    model.set("token", model.get("token") === i ? -1 : i);
    model.save_changes();
  });
  redrawOnScroll(row, () => draw(true));

  const build = () => {
    fetching = null;
    next = null;
    tokens = model.get("tokens") || [];
    ids = decode(model.get("ids")) || [];
    confidence = decode(model.get("confidence")) || [];
    if (relayout()) draw();
    select();
  };
  const select = () => {
    draw();
    root.dataset.selected = String(model.get("token"));
    describe();
  };
  const describe = () => {
    info.textContent = infoText(model.get("token"), model.get("predictions") || []);
  };

  build();
  model.on("change:tokens", build);
  model.on("change:ids", build);
  model.on("change:token", select);
  model.on("change:predictions", describe);
  // Jupyter renders detached: lay out once the row has a width, and again when it changes
  const resize = new ResizeObserver(() => {
    if (Math.floor(row.clientWidth) !== width && relayout()) draw();
  });
  resize.observe(row);
  return () => resize.disconnect();
}

export default defineView(render);
