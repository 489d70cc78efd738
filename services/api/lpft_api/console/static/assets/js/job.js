// /ui/jobs/{id}: one job's status and stage with an ETA, its training curves growing from its
// live event stream, its metrics before and after temperature scaling, the learned-nothing
// warnings, and cancel / delete.

import { ApiError, followEvents, request } from "./api.js";
import { Curve } from "./curves.js";
import { duration, fill, h, jobDuration, number, statusBadge, TERMINAL, when } from "./dom.js";
import { run } from "./session.js";

const $ = (id) => document.getElementById(id);
const jobId = decodeURIComponent(location.pathname.split("/").pop());
const path = `/jobs/${encodeURIComponent(jobId)}`;
const METRICS = [
  ["accuracy", "Accuracy"],
  ["macro_f1", "Macro-F1"],
  ["nll", "NLL"],
  ["brier", "Brier"],
  ["ece", "ECE"],
  ["mce", "MCE"],
];

let job = null;
let names = {}; // split -> "name (id)"
let labels = null; // the model's labels, once its metrics are read
let metricsRead = false;
let loss = null;
let validation = null;
let stage = null; // {name, total, step, started}
let offset = 0; // steps of earlier runs of the same stage (seeds, resumes) before this one
let lastStep = 0;
const warnings = new Map(); // code -> message

function facts(pairs) {
  return pairs.filter(([, value]) => value !== null && value !== undefined && value !== "").map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]);
}

async function datasetNames(dataset, signal) {
  const found = {};
  for (const [split, id] of Object.entries(dataset || {})) {
    if (!id) continue;
    try {
      found[split] = `${(await request(`/datasets/${encodeURIComponent(id)}`, { signal })).name} (${id})`;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      found[split] = id;
    }
  }
  return found;
}

function renderJob() {
  document.title = `${job.id} · lpft`;
  fill($("job-title"), `Job ${job.id}`);
  const splits = Object.entries(names).map(([split, name]) => `${split}: ${name}`).join("; ");
  fill(
    $("job-facts"),
    facts([
      ["Kind", job.kind],
      ["Method", job.method ?? (job.methods || []).join(", ")],
      ["Model", job.model ?? "the default"],
      ["Datasets", splits],
      ["Eval sets", Object.keys(job.eval_sets || {}).join(", ")],
      ["Created", when(job.created_at)],
      ["Started", job.started_at ? when(job.started_at) : null],
      ["Finished", job.finished_at ? when(job.finished_at) : null],
      ["Duration", duration(jobDuration(job))],
      ["Attempts", String(job.attempts)],
      ["Labels", labels],
      ["Error", job.error ? `${job.error.code}: ${job.error.message}` : null],
    ]),
  );
  const hyper = Object.entries(job.hyperparameters || {}).map(([name, value]) => h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, JSON.stringify(value))));
  fill($("hyperparameters"), h("tbody", {}, hyper));
  renderActions();
}

function renderActions() {
  fill($("job-status"), statusBadge(job.status));
  $("cancel").hidden = TERMINAL.has(job.status) || job.cancel_requested;
  $("delete").hidden = !TERMINAL.has(job.status);
  if (TERMINAL.has(job.status)) fill($("progress"));
}

function renderProgress() {
  if (!stage || TERMINAL.has(job.status)) return fill($("progress"));
  const total = stage.total || 0;
  const step = Math.min(stage.step, total);
  const elapsed = (Date.now() - stage.started) / 1000;
  const eta = step > 0 && total > step ? ((total - step) * elapsed) / step : null;
  const bar = h("progress", { max: total || 1, value: step, "aria-labelledby": "progress-label" });
  const left = eta === null ? "" : `, about ${duration(eta)} left`;
  fill($("progress"), h("span", { id: "progress-label" }, `Stage ${stage.name}: step ${step} of ${total}${left}`), bar);
}

function renderWarnings() {
  const box = $("warnings");
  box.hidden = warnings.size === 0;
  fill($("warning-list"), [...warnings].map(([code, message]) => h("li", {}, h("strong", {}, code), ": ", message)));
}

function onEvent(event) {
  const data = event.data || {};
  if (event.type === "stage") {
    stage = { name: data.stage, total: data.total, step: 0, started: event.created_at * 1000 };
  } else if (event.type === "step" || event.type === "metrics") {
    if (stage && data.stage === stage.name) stage.step = data.step;
  }
  if (event.type === "step" && typeof data.loss === "number") {
    if (data.step <= lastStep - offset) offset = lastStep; // a new run of the stage starts over
    lastStep = offset + data.step;
    loss.push(lastStep, [data.loss]);
  } else if (event.type === "epoch") {
    validation.push(data.epoch, [data.validation_loss, data.validation_accuracy]);
  } else if (event.type === "warning" && data.code) {
    warnings.set(data.code, data.message ?? "");
    renderWarnings();
  } else if (event.type === "status" && data.status) {
    job = { ...job, status: data.status };
    renderActions();
  }
  renderProgress();
}

function metricsTable(document) {
  const splits = [["test", document.test], ...Object.entries(document.eval_sets || {})].filter(([, e]) => e);
  const head = h(
    "thead",
    {},
    h("tr", {}, h("td", {}), splits.map(([name]) => h("th", { scope: "colgroup", colspan: 2 }, name))),
    h("tr", {}, h("th", { scope: "col" }, "Metric"), splits.map(() => [h("th", { scope: "col" }, "before"), h("th", { scope: "col" }, "after")])),
  );
  const rows = METRICS.map(([key, label]) =>
    h("tr", {}, h("th", { scope: "row" }, label), splits.map(([, e]) => [h("td", { class: "num" }, number(e.uncalibrated?.[key])), h("td", { class: "num" }, number(e.calibrated?.[key]))])),
  );
  return h("table", {}, h("caption", {}, "Before and after temperature scaling, per evaluation set"), head, h("tbody", {}, rows));
}

async function loadMetrics(signal) {
  if (metricsRead) return;
  metricsRead = true;
  let document;
  try {
    document = await request(`${path}/metrics`, { signal });
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    fill($("metrics"), h("p", { class: "quiet" }, `No metrics: ${error.message}`));
    return;
  }
  if (document.partial) return;
  for (const warning of document.warnings || []) warnings.set(warning.code, warning.message);
  renderWarnings();
  labels = (document.labels || []).join(", ");
  renderJob();
  if (!document.test) {
    fill($("metrics"), h("p", { class: "quiet" }, `A ${job.kind} job: its metrics are in its report.`));
    return;
  }
  const calibration = document.calibration || {};
  fill(
    $("metrics"),
    h("p", {}, `Temperature T = ${number(document.temperature, 4)}, fitted on ${calibration.fitted_on ?? "?"} (${calibration.rows ?? "?"} rows); ${document.test.rows} test rows.`),
    metricsTable(document),
  );
}

async function refreshJob(signal) {
  job = await request(path, { signal });
  return job;
}

async function start(signal) {
  // A fresh start after signing in again: nothing of the last session's reading is kept.
  [labels, metricsRead, stage, offset, lastStep] = [null, false, null, 0, 0];
  warnings.clear();
  try {
    await refreshJob(signal);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      fill($("job-title"), "No such job");
      fill($("job-facts"), h("dd", {}, error.message));
      $("job-body").hidden = true;
      return;
    }
    throw error;
  }
  names = await datasetNames(job.dataset, signal);
  renderJob();
  fill($("curves"));
  loss = new Curve($("curves"), { title: "Training loss per step", x: "step", series: [{ label: "loss", scale: "loss" }] });
  validation = new Curve($("curves"), {
    title: "Validation per epoch",
    x: "epoch",
    series: [
      { label: "validation loss", scale: "loss" },
      { label: "validation accuracy", scale: "accuracy" },
    ],
  });
  if (job.status === "succeeded") loadMetrics(signal);
  followEvents(job.id, onEvent, {
    signal,
    finished: async () => TERMINAL.has((await refreshJob(signal)).status),
  })
    .then(async () => {
      if (signal.aborted) return;
      renderJob();
      if (job.status === "succeeded") await loadMetrics(signal);
    })
    .catch((error) => {
      if (!signal.aborted) $("action-result").textContent = `Live updates stopped: ${error.message}`;
    });
}

async function act(action) {
  $("action-result").textContent = "";
  try {
    await action();
  } catch (error) {
    $("action-result").textContent = error.message;
  }
}

$("cancel").addEventListener("click", () =>
  act(async () => {
    job = await request(`${path}/cancel`, { method: "POST" });
    $("action-result").textContent = job.status === "cancelled" ? "Cancelled." : "Cancel requested: the job stops within a step.";
    renderActions();
  }),
);
$("delete").addEventListener("click", () => {
  $("confirm-delete").hidden = false;
  $("delete-yes").focus();
});
$("delete-no").addEventListener("click", () => {
  $("confirm-delete").hidden = true;
  $("delete").focus();
});
$("delete-yes").addEventListener("click", () =>
  act(async () => {
    await request(path, { method: "DELETE" });
    location.assign("/ui/");
  }),
);

run(start);
