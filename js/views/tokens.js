// The demonstrator view: each token as a chip with its id, shaded by how confidently the
// model predicted it; click selects (syncs `token`), Python answers with predictions; the
// first hover fetches every position's top next tokens in one request, for the tooltips.
import { chipTitle, infoText, nextTokens } from "../parts/tokens.js";
import CSS from "../styles/tokens.css";
import { sequentialCss } from "../lib/colors.js";
import { el } from "../lib/dom.js";
import { request } from "../lib/request.js";
import { tokenElement, tokenLabel } from "../lib/tokens.js";
import { defineView, injectCss } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const TOP_K = 3; // next tokens per tooltip

function render({ model, el: root }) {
  injectCss(CSS);
  const box = el("div", { className: "lms-tokens", parent: root });
  const row = el("div", { className: "lms-tokens-row", parent: box });
  const info = el("div", { className: "lms-tokens-info lms-note", parent: box });
  const chips = [];
  /** @type {Promise<void> | null} */
  let fetching = null;

  const prefetch = () => {
    if (fetching) return;
    const expectedBytes = chips.length * TOP_K * 24;
    fetching = request(model, "next_tokens", { top_k: TOP_K }, { expectedBytes })
      .then(({ result, buffers }) => {
        const probs = decode({ data: buffers[0], ...result.probs });
        result.tokens.forEach((names, i) => {
          const chip = chips[i];
          if (!chip) return;
          chip.title = `${chip.title}\nnext: ${nextTokens(names, probs, i, TOP_K).join(" · ")}`;
          chip.dataset.next = names[0];
        });
        root.dataset.prefetched = "1";
      })
      .catch((err) => {
        // Python shows its own failures in the error area; a static page shows its note
        root.dataset.prefetched = `failed: ${err.message}`;
      });
  };

  const chip = (token, i, id, confidence) => {
    const node = el("span", { className: "lms-token", parent: row });
    node.dataset.i = String(i);
    // shaded over the theme's own background and capped at 55% blue, so the theme's text
    // colour stays readable on every chip in light and dark themes alike
    node.style.background = sequentialCss(i === 0 ? 0 : confidence * 0.55);
    node.append(tokenElement(token), el("span", { className: "lms-token-id", text: String(id) }));
    node.title = chipTitle(tokenLabel(token, i, id), i, confidence);
    node.addEventListener("pointerenter", prefetch);
    node.addEventListener("click", () => {
      model.set("token", model.get("token") === i ? -1 : i);
      model.save_changes();
    });
    return node;
  };

  const build = () => {
    fetching = null;
    const ids = decode(model.get("ids")) || [];
    const confidence = decode(model.get("confidence")) || [];
    row.replaceChildren();
    chips.length = 0;
    (model.get("tokens") || []).forEach((token, i) => {
      chips.push(chip(token, i, ids[i], confidence[i]));
    });
    select();
  };
  const select = () => {
    const chosen = model.get("token");
    chips.forEach((node, i) => {
      node.classList.toggle("selected", i === chosen);
    });
    root.dataset.selected = String(chosen);
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
}

export default defineView(render);
