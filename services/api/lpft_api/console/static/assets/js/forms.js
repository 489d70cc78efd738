// Forms built from the API's own OpenAPI document (/openapi.json), so that the defaults and
// bounds a page shows are the ones the API enforces, with no second copy here; and the
// API's field errors (its 422 problem documents) put beside the fields they name.

import { fill, h } from "./dom.js";

let documentPromise = null;

/** The API's OpenAPI document, read once per page. */
export function openApi() {
  documentPromise ??= fetch("/openapi.json", { headers: { Accept: "application/json" } }).then((response) => {
    if (!response.ok) throw new Error(`could not read the API's description (HTTP ${response.status})`);
    return response.json();
  });
  return documentPromise;
}

/** A schema with its `$ref` followed (within the document). */
export function deref(document, schema) {
  let node = schema;
  while (node?.$ref) {
    node = node.$ref
      .slice(2)
      .split("/")
      .reduce((at, token) => at[token.replaceAll("~1", "/").replaceAll("~0", "~")], document);
  }
  return node;
}

/** The schema of a value that may also be null: its first other branch, and whether null is allowed. */
export function nonNull(document, schema) {
  const resolved = deref(document, schema);
  const branches = resolved.anyOf ?? resolved.oneOf;
  if (!branches) return { schema: resolved, nullable: false };
  const others = branches.filter((branch) => branch.type !== "null");
  return { schema: { ...resolved, ...deref(document, others[0]) }, nullable: others.length < branches.length };
}

function shown(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** "default 3 · ≥ 1 · ≤ 100": a field's default and bounds, as the API states them. */
export function bounds(schema) {
  const parts = [];
  if (schema.default !== undefined && schema.default !== null) parts.push(`default ${shown(schema.default)}`);
  if (schema.minimum !== undefined) parts.push(`≥ ${schema.minimum}`);
  if (schema.exclusiveMinimum !== undefined) parts.push(`> ${schema.exclusiveMinimum}`);
  if (schema.maximum !== undefined) parts.push(`≤ ${schema.maximum}`);
  if (schema.exclusiveMaximum !== undefined) parts.push(`< ${schema.exclusiveMaximum}`);
  if (schema.maxLength !== undefined) parts.push(`at most ${schema.maxLength} characters`);
  if (schema.maxItems !== undefined && schema.type === "array") parts.push(`at most ${schema.maxItems}`);
  return parts.join(" · ");
}

const idOf = (field) => `f-${field.replace(/[^A-Za-z0-9_-]/g, "-")}`;

/**
 * A labelled control for the API field `field` (its dotted name, as the API's errors name
 * it) of schema `schema`: a number input, a select for an enum or a boolean, checkboxes for
 * an array of an enum, a text input otherwise. Left empty, the field is not sent and the
 * API's default applies (`read()` gives undefined); `required` fields have no empty choice.
 */
export function control(document, field, propertySchema, { label = field.split(".").pop(), required = false } = {}) {
  const { schema } = nonNull(document, propertySchema);
  const id = idOf(field);
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  // The API's descriptions are docstrings: their ``code`` marks read as plain words here.
  const hintText = [bounds(schema), schema.description?.replaceAll("``", "")].filter(Boolean).join(". ");
  const hint = h("p", { id: hintId, class: "hint" }, hintText);
  const error = h("p", { id: errorId, class: "field-error" });
  const describedBy = `${hintId} ${errorId}`;
  const items = schema.type === "array" ? deref(document, schema.items) : null;

  if (items?.enum) {
    const boxes = items.enum.map((value) =>
      h("input", { type: "checkbox", id: `${id}-${value}`, value, checked: (schema.default || []).includes(value) }),
    );
    const group = h(
      "fieldset",
      { class: "field choices", "data-field": field, "aria-describedby": describedBy },
      h("legend", {}, label),
      boxes.map((box) => h("span", { class: "choice" }, box, h("label", { for: box.id }, box.value))),
      hint,
      error,
    );
    const read = () => {
      const ticked = boxes.filter((box) => box.checked).map((box) => box.value);
      return ticked.length ? ticked : undefined;
    };
    return { element: group, read, inputs: boxes };
  }

  let input;
  let read;
  const common = { id, name: field, "aria-describedby": describedBy, required };
  const choices = schema.enum ?? (schema.type === "boolean" ? [true, false] : null);
  if (choices) {
    const empty = required ? [] : [h("option", { value: "" }, schema.default === undefined || schema.default === null ? "default" : `default (${shown(schema.default)})`)];
    input = h("select", common, empty, choices.map((value) => h("option", { value: shown(value) }, shown(value))));
    read = () => {
      if (input.value === "") return undefined;
      return schema.type === "boolean" ? input.value === "true" : input.value;
    };
  } else if (schema.type === "integer" || schema.type === "number") {
    input = h("input", {
      ...common,
      type: "number",
      inputmode: schema.type === "integer" ? "numeric" : "decimal",
      min: schema.minimum,
      max: schema.maximum,
      step: schema.type === "integer" ? 1 : "any",
      placeholder: schema.default === undefined ? null : shown(schema.default),
    });
    // A number the browser cannot read (input.value is then "") is sent as typed, so that
    // the API names what is wrong with it rather than the page dropping it.
    read = () => {
      if (input.value !== "") return Number(input.value);
      return input.validity.badInput ? "not a number" : undefined;
    };
  } else if (items?.type === "integer") {
    input = h("input", { ...common, type: "text", inputmode: "numeric", placeholder: "e.g. 0, 1, 2" });
    read = () => {
      const parts = input.value.split(/[\s,]+/).filter(Boolean);
      return parts.length ? parts.map((part) => (/^-?\d+$/.test(part) ? Number(part) : part)) : undefined;
    };
  } else {
    input = h("input", {
      ...common,
      type: "text",
      maxlength: schema.maxLength,
      placeholder: schema.default === undefined ? null : shown(schema.default),
      autocomplete: "off",
    });
    read = () => (input.value.trim() === "" ? undefined : input.value);
  }
  const element = h("div", { class: "field", "data-field": field }, h("label", { for: id }, label), input, hint, error);
  return { element, read, inputs: [input] };
}

/** The options of a select of the caller's datasets: name, rows and id, as text. */
export function datasetOptions(datasets) {
  return datasets.map((d) => h("option", { value: d.id }, `${d.name} (${d.rows} rows, ${d.id})`));
}

/** A select of the caller's datasets for field `field` (a split). */
export function datasetSelect(field, datasets, { label, required = false, emptyText = "none", hintText = "" }) {
  const id = idOf(field);
  const input = h(
    "select",
    { id, name: field, required, "aria-describedby": `${id}-hint ${id}-error` },
    required && datasets.length ? [] : h("option", { value: "" }, emptyText),
    datasetOptions(datasets),
  );
  const element = h(
    "div",
    { class: "field", "data-field": field },
    h("label", { for: id }, label),
    input,
    h("p", { id: `${id}-hint`, class: "hint" }, hintText),
    h("p", { id: `${id}-error`, class: "field-error" }),
  );
  return { element, read: () => input.value || undefined, inputs: [input] };
}

/** Forget the field errors shown in `container`. */
export function clearErrors(container) {
  for (const error of container.querySelectorAll(".field-error")) fill(error);
  for (const input of container.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

/** The field element of `container` an error on `field` belongs to: the field itself, or
 * the nearest one above it (`seeds[1]` is shown at `seeds`, `eval_sets.ood` at `eval_sets`). */
function fieldElement(container, field) {
  let name = field;
  while (name) {
    const found = [...container.querySelectorAll("[data-field]")].find((e) => e.dataset.field === name);
    if (found) return found;
    const cut = Math.max(name.lastIndexOf("."), name.lastIndexOf("["));
    name = cut > 0 ? name.slice(0, cut) : "";
  }
  return null;
}

/**
 * Show each error of a problem document beside its field in `container` (the message as
 * text, the field's inputs marked invalid); returns the errors no field of the page holds.
 */
export function showErrors(container, errors) {
  const unplaced = [];
  let first = null;
  for (const error of errors) {
    const element = error.field ? fieldElement(container, error.field) : null;
    if (!element) {
      unplaced.push(error);
      continue;
    }
    const slot = element.querySelector(".field-error");
    const where = element.dataset.field === error.field ? "" : `${error.field}: `;
    slot.append(h("span", {}, `${where}${error.message}`));
    for (const input of element.querySelectorAll("input, select")) input.setAttribute("aria-invalid", "true");
    first ??= element.querySelector("input, select");
  }
  first?.focus();
  return unplaced;
}
