// The demonstrator view: each token as a chip with its id, shaded by how confidently the
// model predicted it; click selects (syncs `selected_token`), Python answers with predictions;
// the first hover fetches every position's top next tokens in one request, for the tooltips.
import { sequentialCss } from "../lib/colors.js";
import { tokenElement, tokenLabel } from "../lib/tokens.js";
import { request } from "../lib/request.js";
import { defineView, injectCss } from "../lib/view.js";
import { decode } from "../lib/wire.js";

const CSS = `
.lms-tokens { font: 13px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #222); }
.lms-tokens-row { display: flex; flex-wrap: wrap; gap: 4px; }
.lms-token { display: inline-flex; flex-direction: column; align-items: center; padding: 2px 6px; cursor: pointer;
  border: 1px solid var(--jp-border-color2, #ccc); border-radius: 4px; min-width: 1.5em; }
.lms-token.selected { outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: 1px; }
.lms-token-text { white-space: pre; font-family: var(--jp-code-font-family, monospace); }
.lms-token-id { font-size: 10px; opacity: 0.7; }
.lms-tokens-info { margin-top: 6px; min-height: 1.4em; color: var(--jp-ui-font-color2, #555); }
`;

function render({ model, el }) {
  injectCss(CSS);
  const root = document.createElement("div");
  root.className = "lms-tokens";
  const row = document.createElement("div");
  row.className = "lms-tokens-row";
  const info = document.createElement("div");
  info.className = "lms-tokens-info";
  root.append(row, info);
  el.append(root);

  const chips = [];
  /** @type {Promise<void> | null} */
  let fetching = null;
  const prefetch = () => {
    if (fetching) return;
    const n = chips.length;
    fetching = request(model, "next_tokens", { k: 3 }, { expectedBytes: n * 3 * 24 })
      .then(({ result, buffers }) => {
        const probs = decode({ data: buffers[0], ...result.probs });
        const k = result.probs.shape[1];
        result.tokens.forEach((names, i) => {
          const chip = chips[i];
          if (!chip) return;
          const next = names.map((name, j) => `${name} ${(probs[i * k + j] * 100).toFixed(1)}%`);
          chip.title = `${chip.title}\nnext: ${next.join(" · ")}`;
          chip.dataset.next = names[0];
        });
        el.dataset.prefetched = "1";
      })
      .catch((err) => {
        // Python shows its own failures in the error area; a static page shows its note
        el.dataset.prefetched = `failed: ${err.message}`;
      });
  };
  const build = () => {
    fetching = null;
    const tokens = model.get("tokens") || [];
    const ids = decode(model.get("ids")) || [];
    const confidence = decode(model.get("confidence")) || [];
    row.replaceChildren();
    chips.length = 0;
    tokens.forEach((token, i) => {
      const chip = document.createElement("span");
      chip.className = "lms-token";
      chip.dataset.i = String(i);
      // shaded over the theme's own background and capped at 55% blue, so the theme's text
      // colour stays readable on every chip in light and dark themes alike
      chip.style.background = sequentialCss(i === 0 ? 0 : confidence[i] * 0.55);
      const text = tokenElement(token);
      const id = document.createElement("span");
      id.className = "lms-token-id";
      id.textContent = String(ids[i]);
      chip.append(text, id);
      const label = tokenLabel(token, i, ids[i]);
      chip.title =
        i === 0 ? label : `${label}: p = ${(confidence[i] * 100).toFixed(1)}% as predicted`;
      chip.addEventListener("pointerenter", prefetch);
      chip.addEventListener("click", () => {
        model.set("selected_token", model.get("selected_token") === i ? -1 : i);
        model.save_changes();
      });
      row.append(chip);
      chips.push(chip);
    });
    select();
  };
  const select = () => {
    const chosen = model.get("selected_token");
    chips.forEach((chip, i) => {
      chip.classList.toggle("selected", i === chosen);
    });
    el.dataset.selected = String(chosen);
    describe();
  };
  const describe = () => {
    const chosen = model.get("selected_token");
    const predictions = model.get("predictions") || [];
    if (chosen < 0) info.textContent = "Click a token to see what the model predicts after it.";
    else if (predictions.length)
      info.textContent = `after token ${chosen}: ${predictions.join(" · ")}`;
    else info.textContent = `token ${chosen} selected`;
  };
  build();
  model.on("change:tokens", build);
  model.on("change:ids", build);
  model.on("change:selected_token", select);
  model.on("change:predictions", describe);
  return () => {
    model.off("change:tokens", build);
    model.off("change:ids", build);
    model.off("change:selected_token", select);
    model.off("change:predictions", describe);
  };
}

export default defineView(render);
