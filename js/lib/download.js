// The download control every view has (top right, outside the picture): PNG at the chosen
// scale or SVG of what the view shows now, drawn by figureSvg, the same as Python's
// save_png/save_svg. A composite's control (in its error area) saves the whole composite,
// the dashboard's its current tab.
import { figureSvg, pngBlob } from "./figure.js";

/** The file name for a figure: the title's words, safe on every file system. */
export function figureFileName(title, ext) {
  const stem = String(title || "lmscope-figure")
    .replace(/[^\w.-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 80);
  return `${stem || "lmscope-figure"}.${ext}`;
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** What a control in `host` draws: the view itself, or for the shared error area of a
 * composite the composite around it (the dashboard: its visible tab). */
export function figureRoot(host, composite) {
  if (!composite) return host;
  const box = host.closest(".lms-composite");
  if (!box) return host;
  const tabs = box.querySelector(".lms-dashboard-tabs, .widget-tab");
  if (box.classList.contains("lms-dashboard") && tabs) {
    const pages = tabs.querySelectorAll(".widget-tab-contents > *, .lm-TabPanel-stackedPanel > *");
    const shown = [...pages].find((p) => !p.classList.contains("lm-mod-hidden") && p.offsetParent);
    if (shown) return shown;
  }
  return box;
}

/**
 * @param {any} model anywidget model (`figure_title` names the picture)
 * @param {HTMLElement} host the view's element
 * @param {{composite?: boolean}} opts
 */
export function downloadControl(model, host, { composite = false } = {}) {
  const box = document.createElement("div");
  box.className = "lms-figure-control";
  const scale = document.createElement("select");
  scale.title = "PNG scale";
  for (const s of [1, 2, 3, 4]) {
    const o = document.createElement("option");
    o.value = String(s);
    o.textContent = `${s}x`;
    scale.append(o);
  }
  scale.value = "2";
  const theme = document.createElement("select");
  theme.title = "colours";
  for (const [v, t] of [
    ["light", "light"],
    ["current", "theme"],
  ]) {
    const o = document.createElement("option");
    o.value = v;
    o.textContent = t;
    theme.append(o);
  }
  const button = (label, format) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.title = `save this view as ${label}`;
    b.dataset.format = format;
    b.addEventListener("click", async () => {
      const title = model.get("figure_title") || "";
      const root = figureRoot(host, composite);
      const svg = figureSvg(root, { title, theme: theme.value });
      const blob =
        format === "svg"
          ? new Blob([svg], { type: "image/svg+xml" })
          : await pngBlob(svg, { scale: Number(scale.value) });
      save(blob, figureFileName(title, format));
    });
    return b;
  };
  box.append(button("PNG", "png"), scale, button("SVG", "svg"), theme);
  host.prepend(box);
  return box;
}
