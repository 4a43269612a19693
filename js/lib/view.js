// Wraps a view's render with what every lmscope view has: the `lms-view` class the shared
// stylesheet (LmscopeWidget._css) hangs on, and the error area under the view.
import { downloadControl } from "./download.js";
import { errorArea } from "./errors.js";

const injected = new WeakSet();

/** Add a view's own stylesheet once per document. */
export function injectCss(css, doc = document) {
  const key = doc.head;
  const id = `lms-css-${hash(css)}`;
  if (injected.has(key) && doc.getElementById(id)) return;
  if (!doc.getElementById(id)) {
    const style = doc.createElement("style");
    style.id = id;
    style.textContent = css;
    doc.head.append(style);
  }
  injected.add(key);
}

function hash(text) {
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) | 0;
  return (h >>> 0).toString(36);
}

/**
 * @param {(ctx: {model: any, el: HTMLElement}) => (void | (() => void))} render
 * @param {{composite?: boolean}} [opts] composite: the view is a composite's error area, and
 *   its download control saves the composite
 * @returns {{render: (ctx: {model: any, el: HTMLElement}) => () => void}}
 */
export function defineView(render, { composite = false } = {}) {
  return {
    render({ model, el }) {
      el.classList.add("lms-view");
      const cleanup = render({ model, el });
      const stopNote = textLine(model, el, "note", "lms-model-note");
      const stopEdits = textLine(model, el, "edits", "lms-edits");
      // a composite's error area carries the composite's control; views inside it keep theirs
      downloadControl(model, el, { composite });
      const stopErrors = errorArea(model, el);
      return () => {
        if (typeof cleanup === "function") cleanup();
        stopEdits();
        stopNote();
        stopErrors();
      };
    },
  };
}

/**
 * A text trait as a line above the view, hidden while empty: `edits` (an edited run's edits)
 * and `note` (what the reader must know about what is shown: why attention rows do not sum
 * to one, which layers are not shown and why). Text only, never markup.
 */
function textLine(model, el, trait, className) {
  const line = document.createElement("div");
  line.className = className;
  const show = () => {
    const text = model.get(trait) || "";
    line.textContent = text;
    line.hidden = !text;
  };
  show();
  el.prepend(line);
  model.on(`change:${trait}`, show);
  return () => model.off(`change:${trait}`, show);
}

/** Redraw when `scroller` scrolls, at most once a frame (scroll events come faster). */
export function redrawOnScroll(scroller, draw) {
  let queued = false;
  scroller.addEventListener("scroll", () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      draw();
    });
  });
}
