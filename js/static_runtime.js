// Renders lmscope views in a saved HTML page with no kernel and no network: a minimal
// anywidget model over the exported state, the view bundle imported from an inline blob.
// Changes a person makes still update the view locally; anything that would need Python
// for new data shows a note instead of failing silently.

function toBytes(b64) {
  const text = atob(b64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

function restore(state, buffers) {
  for (const [path, b64] of buffers) {
    let node = state;
    for (const key of path.slice(0, -1)) node = node[key];
    const bytes = toBytes(b64);
    node[path[path.length - 1]] = new DataView(bytes.buffer);
  }
  return state;
}

function staticModel(state, showNote) {
  const handlers = new Map();
  const changed = new Set();
  const fire = (event) => {
    for (const fn of handlers.get(event) || []) fn();
  };
  return {
    lmscopeStatic: true,
    get: (key) => state[key],
    set(key, value) {
      state[key] = value;
      changed.add(key);
      fire(`change:${key}`);
    },
    on(event, fn) {
      if (!handlers.has(event)) handlers.set(event, []);
      handlers.get(event).push(fn);
    },
    off(event, fn) {
      if (!event) return handlers.clear();
      if (!fn) return handlers.delete(event);
      handlers.set(
        event,
        (handlers.get(event) || []).filter((f) => f !== fn),
      );
    },
    save_changes() {
      for (const key of changed) showNote(`changing ${key}`);
      changed.clear();
    },
    send(msg) {
      showNote(msg?.name ? `fetching '${msg.name}' data` : "fetching data");
    },
    widget_manager: {},
  };
}

export async function mount(host, code, state, buffers) {
  const note = document.createElement("div");
  note.className = "lms-static-note";
  note.textContent =
    "Static snapshot: hover and zoom work here; new layers, heads or prompts need a running kernel.";
  // everything asked of the kernel so far, so a later action does not hide an earlier one
  const asked = new Set();
  const showNote = (what) => {
    asked.add(what);
    note.textContent = `Static snapshot: ${[...asked].join("; ")}: needs a running kernel (open the notebook to explore further).`;
    note.dataset.asked = String(asked.size);
  };
  const model = staticModel(restore(state, buffers), showNote);
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  const module = await import(url);
  let view = module.default;
  if (typeof view === "function") view = await view();
  const el = document.createElement("div");
  host.append(el, note);
  await view.render({ model, el });
  host.dataset.rendered = "1";
}

// Python's save_svg/save_png call these on the saved page in a headless browser
export { blobBase64, figureSvg, pngBlob } from "./lib/figure.js";
