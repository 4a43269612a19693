// A control bound to a trait in one call: it shows the trait's value, follows the trait when
// Python (or a linked view) changes it, and a person's change sets the trait and saves it.
import { el, option } from "./dom.js";

/**
 * @typedef {[value: string | number, text: string]} Choice
 * @typedef {{
 *   kind: "select" | "checkbox" | "range" | "number",
 *   label: string,
 *   options?: Choice[] | (() => Choice[]),
 *   min?: number, max?: number, step?: number,
 *   parse?: (raw: string) => any,
 *   live?: boolean,
 *   onInput?: (value: any) => void,
 *   onSet?: (value: any) => void,
 * }} ControlSpec
 */

/** [[0, "0"], [1, "1"], ...] up to the model's `count` trait: a layer or head menu. */
export function numberChoices(model, count) {
  return () => Array.from({ length: model.get(count) }, (_, i) => [i, String(i)]);
}

/** How the value a control holds reads back as the trait's value: numbers stay numbers. */
export function parseLike(current, raw) {
  if (typeof current === "number") return Number(raw);
  if (typeof current === "boolean") return Boolean(raw);
  return raw;
}

/** Options as a key, to tell whether a select must be rebuilt. */
export function choicesKey(choices) {
  return choices.map(([value, text]) => `${value}\u0000${text}`).join("\u0001");
}

/**
 * @param {any} model anywidget model
 * @param {string} trait
 * @param {Element} bar where the labelled control goes (a `toolbar`)
 * @param {ControlSpec} spec
 * @returns {{input: HTMLInputElement | HTMLSelectElement, label: HTMLLabelElement, refresh: () => void}}
 */
export function control(model, trait, bar, spec) {
  const label = /** @type {HTMLLabelElement} */ (el("label", { parent: bar }));
  const isSelect = spec.kind === "select";
  const input = /** @type {any} */ (el(isSelect ? "select" : "input"));
  if (!isSelect) input.type = spec.kind;
  for (const key of ["min", "max", "step"]) if (spec[key] !== undefined) input[key] = spec[key];
  if (spec.kind === "checkbox") label.append(input, spec.label);
  else label.append(spec.label, input);
  const read = () =>
    spec.kind === "checkbox"
      ? input.checked
      : (spec.parse ?? ((raw) => parseLike(model.get(trait), raw)))(input.value);
  let shown = "";
  const refresh = () => {
    if (isSelect) {
      const choices = typeof spec.options === "function" ? spec.options() : spec.options || [];
      const key = choicesKey(choices);
      if (key !== shown) {
        input.replaceChildren();
        for (const [value, text] of choices) option(input, value, text);
        shown = key;
      }
    }
    if (spec.kind === "checkbox") input.checked = Boolean(model.get(trait));
    else input.value = String(model.get(trait));
  };
  if (spec.onInput) input.addEventListener("input", () => spec.onInput(read()));
  // `live`: every step of a drag sets the trait (a layer slider), not only the last
  input.addEventListener(spec.live ? "input" : "change", () => {
    const value = read();
    if (value === model.get(trait)) return;
    model.set(trait, value);
    spec.onSet?.(value);
    model.save_changes();
  });
  model.on(`change:${trait}`, refresh);
  refresh();
  return { input, label, refresh };
}
