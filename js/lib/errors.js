// The area under every view where a failed Python callback is shown (the `error` trait).
// Styled by the shared stylesheet, js/styles/lmscope.css (.lms-error).

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
