// The area under every view where a failed Python callback is shown (the `error` trait).

/**
 * @param {any} model anywidget model
 * @param {HTMLElement} host
 * @returns {() => void} cleanup
 */
export function errorArea(model, host) {
  const box = document.createElement("div");
  box.className = "lms-error";
  box.setAttribute("role", "alert");
  const update = () => {
    const message = model.get("error") || "";
    box.textContent = message; // messages may quote token text: never markup
    box.hidden = !message;
  };
  update();
  model.on("change:error", update);
  host.append(box);
  return () => model.off("change:error", update);
}

export const ERROR_CSS = `.lms-error { margin-top: 6px; padding: 6px 8px; border-left: 3px solid var(--jp-error-color1, #d32f2f);
  background: var(--jp-error-color3, #fdecea); color: var(--jp-ui-font-color1, #222);
  font: 12px var(--jp-code-font-family, monospace); white-space: pre-wrap; }
.lms-static-note { margin: 4px 0; font: 11px var(--jp-ui-font-family, system-ui, sans-serif);
  color: var(--jp-ui-font-color2, #666); }`;
