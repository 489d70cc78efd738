// /ui/predict?job={id}: a text (and its pair, for a model trained on sentence pairs) through
// POST /predict, twice: calibrated, with the conformal set at the alpha asked for and
// abstention below the confidence asked for, and uncalibrated. Both sets of probabilities are
// drawn as bars, with a table of the same numbers beside them.

import { ApiError, request } from "./api.js";
import { fill, h, number } from "./dom.js";
import { run } from "./session.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const BAR = { label: 150, width: 320, height: 14, gap: 4, group: 12, value: 64 };
//: Field of the API's errors -> the element beside which it is shown.
const FIELDS = [
  ["text_pair", "text-pair-error"],
  ["text", "text-error"],
  ["conformal", "alpha-error"],
  ["min_confidence", "min-confidence-error"],
];

let job = null;
let metrics = null;
let calibratedT = null; // the temperature of the last calibrated answer

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  element.append(...children);
  return element;
}

function jobOfUrl() {
  return (new URLSearchParams(location.search).get("job") || "").trim();
}

/** A bar per label and scaling, as SVG; each bar's exact probability is its data-probability. */
function bars(labels, calibrated, uncalibrated) {
  const rowHeight = 2 * BAR.height + BAR.gap + BAR.group;
  const height = labels.length * rowHeight + 28;
  const width = BAR.label + BAR.width + BAR.value;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-labelledby": "bars-title" });
  chart.append(svg("title", { id: "bars-title" }, "Probabilities per label: calibrated (dark) and uncalibrated (light); the table beside gives the numbers"));
  labels.forEach((label, i) => {
    const top = i * rowHeight;
    chart.append(svg("text", { x: 0, y: top + BAR.height + 2, class: "bar-label" }, label));
    [
      ["calibrated", calibrated[label]],
      ["uncalibrated", uncalibrated[label]],
    ].forEach(([kind, p], k) => {
      const y = top + k * (BAR.height + BAR.gap);
      chart.append(
        svg("rect", { x: BAR.label, y, width: BAR.width, height: BAR.height, class: "bar-track" }),
        svg("rect", {
          x: BAR.label,
          y,
          width: Math.max(0, Math.min(1, p)) * BAR.width,
          height: BAR.height,
          class: `bar bar-${kind}`,
          "data-label": label,
          "data-kind": kind,
          "data-probability": String(p),
        }),
        svg("text", { x: BAR.label + BAR.width + 6, y: y + BAR.height - 2, class: "bar-value" }, number(p, 4)),
      );
    });
  });
  const legend = labels.length * rowHeight + 14;
  chart.append(
    svg("rect", { x: BAR.label, y: legend - 10, width: 12, height: 12, class: "bar bar-calibrated" }),
    svg("text", { x: BAR.label + 16, y: legend, class: "bar-value" }, "calibrated"),
    svg("rect", { x: BAR.label + 110, y: legend - 10, width: 12, height: 12, class: "bar bar-uncalibrated" }),
    svg("text", { x: BAR.label + 126, y: legend, class: "bar-value" }, "uncalibrated"),
  );
  return chart;
}

function renderResult(input, asked, calibrated, uncalibrated) {
  const labels = Object.keys(calibrated.probabilities);
  const set = calibrated.prediction_set;
  const top = labels.reduce((a, b) => (calibrated.probabilities[b] > calibrated.probabilities[a] ? b : a));
  fill(
    $("verdict"),
    calibrated.abstained
      ? h("span", { "data-abstained": "true" }, `Abstained: the top probability, ${number(calibrated.probabilities[top], 4)} (${top}), is below ${asked.min_confidence}.`)
      : ["Label: ", h("strong", { id: "label" }, String(calibrated.label)), ` (calibrated at T = ${number(calibratedT, 4)}).`],
  );
  if (set === null || set === undefined) fill($("prediction-set"));
  else
    fill(
      $("prediction-set"),
      `Conformal set at alpha ${asked.conformal.alpha} (${asked.conformal.method}${asked.conformal.mondrian ? ", Mondrian" : ""}): `,
      set.length ? h("span", { id: "set-members" }, set.map(String).join(", ")) : h("span", { id: "set-members", "data-empty": "true" }, "empty (no label is likely enough)"),
      ` — ${set.length} label${set.length === 1 ? "" : "s"}.`,
    );
  const members = new Set((set || []).map(String));
  fill($("bars"), bars(labels, calibrated.probabilities, uncalibrated.probabilities), h("figcaption", {}, "Probability of each label"));
  fill(
    $("probabilities").querySelector("tbody"),
    labels.map((label) =>
      h(
        "tr",
        { "data-label": label },
        h("th", { scope: "row" }, label),
        h("td", { class: "num" }, number(calibrated.probabilities[label], 4)),
        h("td", { class: "num" }, number(uncalibrated.probabilities[label], 4)),
        h("td", {}, set ? (members.has(label) ? "yes" : "no") : "—"),
      ),
    ),
  );
  fill(
    $("asked"),
    h("dt", {}, "Text"),
    h("dd", { id: "asked-text" }, input.text),
    input.text_pair === undefined ? null : [h("dt", {}, "Text pair"), h("dd", { id: "asked-pair" }, input.text_pair)],
  );
  $("result").hidden = false;
}

function showErrors(error) {
  const problems = error instanceof ApiError ? error.problem.errors || [] : [];
  const placed = new Set();
  for (const { field, message } of problems) {
    const match = FIELDS.find(([name]) => String(field).includes(name));
    if (!match) continue;
    $(match[1]).textContent = message;
    placed.add(field);
  }
  const rest = problems.filter((p) => !placed.has(p.field));
  $("predict-error").textContent = !problems.length || rest.length ? error.message : "";
}

function clearErrors() {
  for (const [, id] of FIELDS) $(id).textContent = "";
  $("predict-error").textContent = "";
}

/** The measured coverage on the job's test split at the alpha and score chosen, if measured. */
function renderCoverage() {
  const alpha = Number($("alpha").value);
  const found = (metrics?.conformal || []).find(
    (c) => Math.abs(c.alpha - alpha) < 1e-9 && c.method === $("set-method").value && Boolean(c.mondrian) === $("mondrian").checked,
  );
  $("coverage").textContent = found
    ? `Measured on the test split at this alpha: coverage ${number(found.coverage, 3)}, mean set size ${number(found.mean_set_size, 2)}, empty sets ${number(found.empty_sets, 3)}.`
    : "";
}

function body() {
  const input = { text: $("text").value };
  if (metrics?.dataset?.pair) input.text_pair = $("text-pair").value;
  const asked = { job_id: job.id, inputs: [input] };
  const alpha = $("alpha").value.trim();
  if (alpha) asked.conformal = { alpha: Number(alpha), method: $("set-method").value, mondrian: $("mondrian").checked };
  const floor = $("min-confidence").value.trim();
  if (floor) asked.min_confidence = Number(floor);
  return asked;
}

async function predict(event) {
  event.preventDefault();
  clearErrors();
  const asked = body();
  try {
    const [calibrated, uncalibrated] = await Promise.all([
      request("/predict", { method: "POST", body: asked }),
      request("/predict", { method: "POST", body: { job_id: job.id, inputs: asked.inputs, calibrated: false } }),
    ]);
    calibratedT = calibrated.temperature;
    renderResult(asked.inputs[0], asked, calibrated.predictions[0], uncalibrated.predictions[0]);
  } catch (error) {
    showErrors(error);
  }
}

async function start(signal) {
  const id = jobOfUrl();
  $("job-id").value = id;
  [job, metrics] = [null, null];
  $("predict-form").hidden = true;
  $("result").hidden = true;
  fill($("model"));
  if (!id) {
    $("unservable").textContent = "Name a succeeded finetune job to predict with.";
    return;
  }
  try {
    job = await request(`/jobs/${encodeURIComponent(id)}`, { signal });
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    $("unservable").textContent = `No predictions: ${error.message}.`;
    return;
  }
  document.title = `Predict with ${job.id} · lpft`;
  if (job.kind !== "finetune" || job.status !== "succeeded") {
    $("unservable").textContent = `Job ${job.id} is a ${job.status} ${job.kind} job: predictions come from a succeeded finetune job.`;
    return;
  }
  metrics = await request(`/jobs/${encodeURIComponent(id)}/metrics`, { signal });
  $("unservable").textContent = "";
  fill(
    $("model"),
    h("a", { href: `/ui/jobs/${encodeURIComponent(job.id)}` }, job.id),
    `: ${metrics.method} on ${metrics.model}; labels ${(metrics.labels || []).join(", ")}; temperature ${number(metrics.temperature, 4)}; ${metrics.dataset?.pair ? "sentence pairs" : "single texts"}.`,
    (metrics.warnings || []).length ? ` Warnings: ${metrics.warnings.map((w) => w.code).join(", ")}.` : "",
  );
  $("pair-field").hidden = !metrics.dataset?.pair;
  $("predict-form").hidden = false;
  renderCoverage();
}

$("predict-form").addEventListener("submit", predict);
for (const id of ["alpha", "set-method", "mondrian"]) $(id).addEventListener("input", renderCoverage);
$("pick").addEventListener("submit", (event) => {
  event.preventDefault();
  location.assign(`/ui/predict?job=${encodeURIComponent($("job-id").value.trim())}`);
});

run(start);
