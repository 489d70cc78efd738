// /ui/jobs/{id}: one job's status and stage with an ETA, its training curves growing from its
// live event stream, its metrics before and after temperature scaling, the learned-nothing
// warnings, and cancel / delete. Once it succeeded: its reliability diagrams, head-norm
// trajectory, feature change, NTK and seeds (results.js), and the report, export,
// recalibrate and predict actions; a comparison's methods as one table. Its log throughout.

import { ApiError, followEvents, request } from "./api.js";
import { Curve } from "./curves.js";
import { duration, fill, h, jobDuration, jobHref, number, statusBadge, TERMINAL, when } from "./dom.js";
import { fetchBlob, plotFigure, save } from "./files.js";
import { comparisonTable, featureTable, headNorm, ntkTable, overlaidCurves, reliabilityTables, runsOf, seedsTable } from "./results.js";
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
let session = null; // the signal of the signed-in session, for the requests actions make
//: Log records shown (the API's newest ones).
const LOG_LIMIT = 200;

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
  const succeeded = job.status === "succeeded";
  $("finished-actions").hidden = !succeeded || job.kind === "recalibrate";
  $("predict-link").hidden = !(succeeded && job.kind === "finetune");
  $("predict-link").href = `/ui/predict?job=${encodeURIComponent(job.id)}`;
  $("compare-link").hidden = !(succeeded && job.kind === "compare");
  $("compare-link").href = `/ui/compare?jobs=${encodeURIComponent(job.id)}`;
  $("recalibrate-controls").hidden = job.kind !== "finetune";
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
  if (document.methods) {
    fill($("metrics"), h("div", { class: "table-wrap" }, comparisonTable(runsOf(job, document))));
    renderComparison(document, signal);
    return;
  }
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
  if (job.kind === "finetune") {
    renderFindings(document, signal);
    act(() => loadDatasets(signal), $("download-result"));
  }
}

function section(id, title, ...children) {
  return h("section", { id, "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), ...children);
}

/** A finetune job's findings beyond its metrics table. */
function renderFindings(document, signal) {
  const norms = h("div", {});
  const ntk = document.ntk
    ? ntkTable(document.ntk)
    : h("p", { class: "quiet" }, "Not measured for a finetune job: a compare job measures the NTK at the start of each method's fine-tuning.");
  fill(
    $("findings"),
    section(
      "reliability",
      "Reliability diagrams",
      plotFigure(job.id, "reliability", {
        alt: "Reliability diagrams before and after temperature scaling: accuracy against confidence per bin",
        caption: "Accuracy against confidence, before and after temperature scaling; the tables below hold the same bins",
        signal,
      }),
      reliabilityTables(document),
    ),
    section("head-norm-section", "Head norm", norms),
    section("features", "Feature change", h("div", { class: "table-wrap" }, featureTable(document.features))),
    section("ntk", "NTK", ntk),
    section(
      "seeds-section",
      "Seeds",
      document.summary ? h("div", { class: "table-wrap" }, seedsTable(document.summary)) : h("p", { class: "quiet" }, "One seed: train with several seeds for their mean ± std."),
    ),
  );
  headNorm(norms, document);
}

/** A comparison's findings: its curves overlaid, its pictures, each method's NTK and feature change. */
function renderComparison(document, signal) {
  const runs = runsOf(job, document);
  const curves = h("div", {});
  const pictures = [
    ["comparison", "Every method's accuracy and calibration side by side", "The comparison: accuracy and ECE per method"],
    ...runs.map((run) => [`${run.method}-reliability`, `Reliability of ${run.method} before and after temperature scaling`, `Reliability: ${run.method}`]),
  ];
  const ntk = runs.filter((run) => run.metrics.ntk).map((run) => ntkTable(run.metrics.ntk, ` (${run.method})`));
  fill(
    $("findings"),
    section("overlaid", "Curves of every method", curves),
    section(
      "reliability",
      "Reliability diagrams",
      h("div", { class: "plots" }, pictures.map(([name, alt, caption]) => plotFigure(job.id, name, { alt, caption, signal }))),
      runs.map((run) => h("details", {}, h("summary", {}, `Reliability bins of ${run.method}`), reliabilityTables(run.metrics))),
    ),
    section(
      "features",
      "Feature change",
      runs.map((run) => [h("h3", {}, run.method), h("div", { class: "table-wrap" }, featureTable(run.metrics.features))]),
    ),
    section("ntk", "NTK", ntk.length ? ntk : h("p", { class: "quiet" }, "Not measured (ntk_samples 0, or no method fine-tunes).")),
  );
  overlaidCurves(curves, runs);
}

async function loadLog(signal) {
  let log;
  try {
    log = await request(`${path}/logs?limit=${LOG_LIMIT}`, { signal });
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    fill($("log"), h("p", { class: "quiet" }, `No log: ${error.message}`));
    return;
  }
  if (!log.data.length) {
    fill($("log"), h("p", { class: "quiet" }, "Nothing logged yet: the log starts when the job does."));
    return;
  }
  const rows = log.data.map((record) =>
    h("tr", { class: `level-${record.level}` }, h("td", {}, record.time), h("td", {}, record.level), h("td", {}, record.logger), h("td", {}, record.message)),
  );
  fill(
    $("log"),
    h(
      "table",
      { class: "log" },
      h("caption", {}, log.has_more ? `The newest ${log.data.length} records, oldest first (older ones exist)` : "Every record, oldest first"),
      h("thead", {}, h("tr", {}, ["Time (UTC)", "Level", "Logger", "Message"].map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows),
    ),
  );
}

/** The tenant's datasets to recalibrate on, the job's validation split first. */
async function loadDatasets(signal) {
  const select = $("recalibrate-dataset");
  if (select.options.length) return;
  const page = await request("/datasets?limit=100", { signal });
  const first = job.dataset?.validation;
  const datasets = [...page.data].sort((a, b) => (b.id === first) - (a.id === first));
  fill(select, datasets.map((d) => h("option", { value: d.id }, `${d.name} (${d.id}, ${d.rows} rows)`)));
}

async function refreshJob(signal) {
  job = await request(path, { signal });
  return job;
}

async function start(signal) {
  session = signal;
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
  loadLog(signal);
  followEvents(job.id, onEvent, {
    signal,
    finished: async () => TERMINAL.has((await refreshJob(signal)).status),
  })
    .then(async () => {
      if (signal.aborted) return;
      renderJob();
      loadLog(signal);
      if (job.status === "succeeded") await loadMetrics(signal);
    })
    .catch((error) => {
      if (!signal.aborted) $("action-result").textContent = `Live updates stopped: ${error.message}`;
    });
}

async function act(action, result = $("action-result")) {
  result.textContent = "";
  try {
    await action();
  } catch (error) {
    result.textContent = error.message;
  }
}

/** Download `route` as `filename`, saying while the API builds it. */
function download(route, filename, what) {
  const result = $("download-result");
  return act(async () => {
    result.textContent = `Fetching ${what}…`;
    const blob = await fetchBlob(route, { signal: session, onWait: (s) => (result.textContent = `The API is building ${what}; asking again in ${s} s…`) });
    save(blob, filename);
    result.textContent = `Downloaded ${what} (${filename}).`;
  }, result);
}

/**
 * Open the report in a new tab: fetched with the key (a link to the API would go without
 * it) and shown from a blob: URL. The tab is opened at the click, while the browser still
 * counts it as the user's doing, and sent to the report once it has arrived. A blob:
 * document keeps this page's CSP, so the report (self-contained, its pictures data: URLs,
 * no script) shows as it is and could run nothing even if it held a script; its one inline
 * stylesheet is the exception, see routers/console.py.
 */
function openReport() {
  const result = $("download-result");
  const tab = window.open("", "_blank");
  if (tab) tab.document.title = "Fetching the report…";
  return act(async () => {
    result.textContent = "Fetching the report…";
    let blob;
    try {
      blob = await fetchBlob(`${path}/report`, { signal: session });
    } catch (error) {
      tab?.close();
      throw error;
    }
    if (!tab) {
      save(blob, `${job.id}-report.html`);
      result.textContent = `The browser refused a new tab: downloaded the report (${job.id}-report.html) instead.`;
      return;
    }
    const url = URL.createObjectURL(new Blob([blob], { type: "text/html" }));
    tab.opener = null;
    tab.location.replace(url);
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    result.textContent = "Opened the report in a new tab.";
  }, result);
}

$("open-report").addEventListener("click", openReport);
$("report").addEventListener("click", () => download(`${path}/report`, `${job.id}-report.html`, "the report"));
$("export").addEventListener("click", () => {
  const format = $("export-format").value;
  download(`${path}/export?format=${format}`, `${job.id}-${format}.tar.gz`, `the ${format} export`);
});
$("recalibrate").addEventListener("click", () =>
  act(async () => {
    await loadDatasets(session);
    const dataset = $("recalibrate-dataset").value;
    if (!dataset) throw new Error("No dataset to recalibrate on: upload one first.");
    const created = await request(`${path}/recalibrate`, { method: "POST", body: { dataset } });
    fill($("download-result"), "Recalibrating as ", h("a", { href: jobHref(created.id) }, created.id), ": predictions use its temperature once it succeeds.");
  }, $("download-result")),
);
$("log-refresh").addEventListener("click", () => act(() => loadLog(session)));

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
