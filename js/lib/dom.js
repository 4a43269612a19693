// The few DOM helpers every view builds with. Text goes in through textContent only: token
// strings and error messages are data, never markup.

/**
 * A new element.
 * @param {string} tag
 * @param {{className?: string, text?: string, parent?: Element, title?: string}} [options]
 * @returns {HTMLElement}
 */
export function el(tag, { className, text, parent, title } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  if (title !== undefined) node.title = title;
  if (parent) parent.append(node);
  return node;
}

/**
 * Append an <option> to `select`.
 * @param {HTMLSelectElement} select
 * @param {string | number} value
 * @param {string} text
 */
export function option(select, value, text) {
  const node = el("option", { text, parent: select });
  node.value = String(value);
  return node;
}

/**
 * A row of controls styled by the shared stylesheet (`.lms-bar`).
 * @param {Element} parent
 */
export function toolbar(parent) {
  return el("div", { className: "lms-bar", parent });
}

/** [0, 1, ..., n - 1] */
export function range(n) {
  return Array.from({ length: Math.max(0, n) }, (_, i) => i);
}
