// Token strings are data: they reach the page only through textContent, never as markup.
// Python already made whitespace visible ("·" for spaces, "↵" for newlines).

/**
 * Put a token's text into `el` as plain text.
 * @param {{textContent: string | null}} el
 * @param {unknown} text
 */
export function setTokenText(el, text) {
  el.textContent = text == null ? "" : String(text);
  return el;
}

/**
 * A fresh element showing one token's text.
 * @param {unknown} text
 * @param {{className?: string, tag?: string, doc?: Document}} [options]
 * @returns {HTMLElement}
 */
export function tokenElement(text, { className = "lms-token-text", tag = "span", doc } = {}) {
  const el = (doc ?? document).createElement(tag);
  el.className = className;
  return setTokenText(el, text);
}

/**
 * A one-line label for tooltips and status lines: the token, its position and id.
 * @param {string} text
 * @param {number} position
 * @param {number} [id]
 */
export function tokenLabel(text, position, id) {
  return id === undefined ? `${text} (${position})` : `${text} (${position}, id ${id})`;
}
