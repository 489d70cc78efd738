// /ui/new: a new job's form, built from the API's OpenAPI document (the body POST /jobs
// takes: its kinds, each kind's fields, the hyperparameters with their defaults and bounds),
// so that what the form offers is what the API checks. The form sends what was filled in and
// shows the API's 422 errors beside the fields they name; a job taken goes to its page.

import { ApiError, request, Unauthorized } from "./api.js";
import { fill, h, jobHref } from "./dom.js";
import { clearErrors, control, datasetOptions, datasetSelect, deref, nonNull, openApi, showErrors } from "./forms.js";
import { run } from "./session.js";

const $ = (id) => document.getElementById(id);
//: The parts of a job body with a section of their own, not a field of the Job section.
const SECTIONS = new Set(["kind", "dataset", "eval_sets", "hyperparameters", "integrations"]);
//: The Job section's fields first in this order, then any other the API takes.
const ORDER = ["method", "methods", "analyses", "source_job", "model", "seed", "seeds", "ntk_samples"];
//: Datasets listed to choose from: this many pages of 100, newest first.
const DATASET_PAGES = 5;

let api = null; // the OpenAPI document
let kinds = []; // [{name, schema}] in the document's order
let datasets = [];
let jobControls = new Map(); // field -> control of the Job section
let splitControls = new Map(); // split -> control
let hyperControls = new Map(); // hyperparameter -> control
let evalRows = []; // [{row, name, dataset}]
let evalCount = 0; // eval set rows ever added, for their ids
let kindSelect = null;

function kindsOf(document) {
  const body = document.paths["/jobs"].post.requestBody.content["application/json"].schema;
  return (body.oneOf ?? body.anyOf ?? [body]).map((branch) => {
    const schema = deref(document, branch);
    return { name: schema.properties.kind.const ?? schema.properties.kind.default, schema };
  });
}

async function readDatasets(signal) {
  const found = [];
  let after = null;
  for (let page = 0; page < DATASET_PAGES; page++) {
    const query = new URLSearchParams({ limit: "100" });
    if (after) query.set("after", after);
    const answer = await request(`/datasets?${query}`, { signal });
    found.push(...answer.data);
    if (!answer.has_more) break;
    after = answer.last_id;
  }
  return found;
}

/** The current choices of a section's controls, to carry them over a change of kind. */
function remember(controls) {
  return new Map([...controls].map(([name, c]) => [name, c.inputs.map((input) => (input.type === "checkbox" ? input.checked : input.value))]));
}

function restore(controls, saved) {
  for (const [name, c] of controls) {
    const values = saved.get(name);
    if (!values || values.length !== c.inputs.length) continue;
    c.inputs.forEach((input, i) => {
      if (input.type === "checkbox") input.checked = values[i];
      else if (input.tagName !== "SELECT" || [...input.options].some((o) => o.value === values[i])) input.value = values[i];
    });
  }
}

function kindSchema() {
  return kinds.find((k) => k.name === kindSelect.value).schema;
}

function renderJobFields() {
  const schema = kindSchema();
  const saved = remember(jobControls);
  const names = Object.keys(schema.properties).filter((name) => !SECTIONS.has(name));
  names.sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99));
  const required = new Set(schema.required ?? []);
  jobControls = new Map(names.map((name) => [name, control(api, name, schema.properties[name], { required: required.has(name) })]));
  restore(jobControls, saved);
  fill($("job-fields"), [...jobControls.values()].map((c) => c.element));
}

function renderSplits() {
  const schema = kindSchema();
  const saved = remember(splitControls);
  const property = schema.properties.dataset;
  $("data").hidden = !property;
  if (!property) {
    splitControls = new Map();
    return;
  }
  const { schema: ref, nullable } = nonNull(api, property);
  const required = new Set(nullable ? [] : (ref.required ?? []));
  fill($("data-hint"), [ref.description, nullable ? "Optional for this kind." : ""].filter(Boolean).join(" "));
  splitControls = new Map(
    Object.keys(ref.properties).map((split) => [
      split,
      datasetSelect(`dataset.${split}`, datasets, {
        label: split,
        required: required.has(split),
        emptyText: required.has(split) ? "none (upload one on the Datasets page)" : "none",
      }),
    ]),
  );
  restore(splitControls, saved);
  fill($("split-fields"), [...splitControls.values()].map((c) => c.element));
  $("eval-sets").hidden = !schema.properties.eval_sets;
  if (schema.properties.eval_sets) fill($("eval-sets-hint"), deref(api, schema.properties.eval_sets).description ?? "");
}

function renderHyperparameters() {
  const schema = deref(api, kindSchema().properties.hyperparameters);
  hyperControls = new Map(Object.entries(schema.properties).map(([name, property]) => [name, control(api, `hyperparameters.${name}`, property, { label: name })]));
  fill($("hyper-fields"), [...hyperControls.values()].map((c) => c.element));
}

function addEvalSet() {
  const n = ++evalCount;
  const id = `eval-set-${n}`;
  const name = h("input", { id: `${id}-name`, type: "text", autocomplete: "off", "aria-describedby": `eval-sets-hint ${id}-error` });
  const dataset = h("select", { id: `${id}-dataset` }, datasetOptions(datasets));
  const remove = h("button", { type: "button" }, `Remove eval set ${n}`);
  const row = h(
    "div",
    { class: "eval-set", "data-field": `eval_sets.${n}` },
    h("label", { for: name.id }, `name of eval set ${n}`),
    name,
    h("label", { for: dataset.id }, `dataset of eval set ${n}`),
    dataset,
    remove,
    h("p", { id: `${id}-error`, class: "field-error" }),
  );
  const entry = { row, name, dataset };
  remove.addEventListener("click", () => {
    evalRows = evalRows.filter((e) => e !== entry);
    row.remove();
    $("add-eval-set").focus();
  });
  evalRows.push(entry);
  $("eval-set-rows").append(row);
  name.focus();
}

function readSection(controls) {
  const values = {};
  for (const [name, c] of controls) {
    const value = c.read();
    if (value !== undefined) values[name] = value;
  }
  return values;
}

/** The job body from what was filled in; a field left empty is left out. */
function body() {
  const job = { kind: kindSelect.value, ...readSection(jobControls) };
  const dataset = readSection(splitControls);
  if (Object.keys(dataset).length) job.dataset = dataset;
  if (evalRows.length && !$("eval-sets").hidden) {
    job.eval_sets = {};
    for (const entry of evalRows) {
      entry.row.dataset.field = `eval_sets.${entry.name.value}`;
      job.eval_sets[entry.name.value] = entry.dataset.value;
    }
  }
  const hyperparameters = readSection(hyperControls);
  if (Object.keys(hyperparameters).length) job.hyperparameters = hyperparameters;
  return job;
}

function showSummary(problem, unplaced) {
  const summary = $("summary");
  const items = unplaced.map((e) => h("li", {}, e.field ? `${e.field}: ${e.message}` : e.message));
  const text = unplaced.length ? "The API refused the job:" : `The API refused the job: ${problem.detail || problem.title}`;
  fill(summary, h("p", {}, text), items.length ? h("ul", {}, items) : null);
}

async function submit() {
  const form = $("job-form");
  clearErrors(form);
  fill($("summary"));
  $("submit-status").textContent = "Submitting…";
  $("submit-job").disabled = true;
  try {
    const job = await request("/jobs", { method: "POST", body: body() });
    $("submit-status").textContent = `Job ${job.id} is ${job.status}; opening its page.`;
    location.assign(jobHref(job.id));
  } catch (error) {
    $("submit-job").disabled = false;
    $("submit-status").textContent = "";
    if (error instanceof Unauthorized) return;
    if (!(error instanceof ApiError)) {
      fill($("summary"), h("p", {}, `Could not submit the job: ${error.message}`));
      return;
    }
    const errors = error.problem.errors ?? [];
    const unplaced = showErrors(form, errors);
    if (unplaced.length || !errors.length) showSummary(error.problem, unplaced);
    else $("submit-status").textContent = "Refused: see the fields marked.";
  }
}

async function start(signal) {
  [api, datasets] = await Promise.all([openApi(), readDatasets(signal)]);
  if (kindSelect) return; // signed in again: the form is built already
  kinds = kindsOf(api);
  kindSelect = h("select", { id: "f-kind", name: "kind" }, kinds.map((k) => h("option", { value: k.name }, k.name)));
  const descriptions = h("p", { id: "f-kind-hint", class: "hint" });
  kindSelect.setAttribute("aria-describedby", "f-kind-hint");
  fill($("kind-field"), h("div", { class: "field", "data-field": "kind" }, h("label", { for: "f-kind" }, "kind"), kindSelect, descriptions));
  const describe = () => fill(descriptions, (kindSchema().description ?? "").replaceAll("``", ""));
  const query = new URLSearchParams(location.search);
  if (kinds.some((k) => k.name === query.get("kind"))) kindSelect.value = query.get("kind");
  describe();
  renderJobFields();
  renderSplits();
  renderHyperparameters();
  if (query.get("train") && splitControls.has("train")) splitControls.get("train").inputs[0].value = query.get("train");
  kindSelect.addEventListener("change", () => {
    describe();
    renderJobFields();
    renderSplits();
  });
}

$("add-eval-set").addEventListener("click", addEvalSet);
$("job-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});

run(start);
