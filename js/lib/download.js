// The download control every view has (top right, outside the picture): PNG at the chosen
// scale (or at 300 dpi for print, written into the file) or SVG of what the view shows now, in
// light or dark colours or the current theme's, drawn by figureSvg, the same as Python's
// save_png/save_svg. A composite's control (in its error area) saves the whole composite,
// the dashboard's its current tab.
import { el, option } from "./dom.js";
import { figureSvg, pngBlob, withDpi } from "./figure.js";

const CSS_DPI = 96; // a CSS pixel is 1/96 inch
const PRINT_DPI = 300;

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
  const box = el("div", { className: "lms-figure-control" });
  const scale = el("select", { title: "PNG scale" });
  for (const s of [1, 2, 3, 4]) option(scale, s, `${s}x`);
  option(scale, "print", `${PRINT_DPI} dpi`); // for print: screen size at 300 dpi
  scale.value = "2";
  const theme = el("select", { title: "colours" });
  option(theme, "light", "light");
  option(theme, "dark", "dark");
  option(theme, "current", "theme");
  const button = (label, format) => {
    const b = el("button", { text: label, title: `save this view as ${label}` });
    b.type = "button";
    b.dataset.format = format;
    b.addEventListener("click", async () => {
      const title = model.get("figure_title") || "";
      const root = figureRoot(host, composite);
      const print = scale.value === "print";
      const ratio = print ? PRINT_DPI / CSS_DPI : Number(scale.value);
      // a canvas that stays an image is drawn at the PNG's scale (at least 2x in an SVG)
      const pixelRatio = format === "png" ? ratio : Math.max(2, window.devicePixelRatio || 1);
      const svg = figureSvg(root, { title, theme: theme.value, pixelRatio });
      let blob = new Blob([svg], { type: "image/svg+xml" });
      if (format === "png") {
        blob = await pngBlob(svg, { scale: ratio });
        if (print) {
          const bytes = withDpi(new Uint8Array(await blob.arrayBuffer()), PRINT_DPI);
          blob = new Blob([bytes], { type: "image/png" });
        }
      }
      save(blob, figureFileName(title, format));
    });
    return b;
  };
  box.append(button("PNG", "png"), scale, button("SVG", "svg"), theme);
  host.prepend(box);
  return box;
}
