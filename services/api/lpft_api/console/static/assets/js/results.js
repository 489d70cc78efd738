// What a finished job found, built from its metrics document (lpft_core's JobMetrics, or a
// comparison's {methods: {name: JobMetrics}}): the table of methods by evaluation set (the
// paper's Table 8), overlaid curves, reliability bins, feature change, the NTK, seeds as
// mean ± std. Shared by the job page and /ui/compare. Every value goes in as text.

import { Curve } from "./curves.js";
import { fill, h, jobHref, number } from "./dom.js";

/** The runs a job's metrics hold: one for a finetune job, one per method for a comparison. */
export function runsOf(job, document) {
  if (document?.methods) {
    return Object.entries(document.methods).map(([method, metrics]) => ({ job, method, metrics, label: `${method} · ${job.id}` }));
  }
  if (document?.test) return [{ job, method: document.method, metrics: document, label: `${document.method} · ${job.id}` }];
  return [];
}

/** The evaluation sets of the runs: test first, then every eval set any run has. */
function setsOf(runs) {
  const names = new Set();
  for (const run of runs) for (const name of Object.keys(run.metrics.eval_sets || {})) names.add(name);
  return ["test", ...names];
}

function evaluation(metrics, set) {
  return set === "test" ? metrics.test : metrics.eval_sets?.[set];
}

const COMPARED = [
  ["Accuracy", (e) => e?.calibrated?.accuracy, 4],
  ["ECE", (e) => e?.uncalibrated?.ece, 4],
  ["ECE after TS", (e) => e?.calibrated?.ece, 4],
];

/**
 * Methods by evaluation set, as the paper's Table 8: accuracy in distribution (test) and out
 * of it (each eval set), ECE before and after temperature scaling, and Diff(F), the mean
 * distance of the trained features from the pre-trained ones on that set.
 */
export function comparisonTable(runs) {
  const sets = setsOf(runs);
  const head = h(
    "thead",
    {},
    h(
      "tr",
      {},
      h("th", { scope: "col", rowspan: 2 }, "Method"),
      h("th", { scope: "col", rowspan: 2 }, "Job"),
      h("th", { scope: "col", rowspan: 2, class: "num" }, "T"),
      sets.map((set) => h("th", { scope: "colgroup", colspan: COMPARED.length + 1 }, set === "test" ? "test (in distribution)" : `${set} (eval set)`)),
    ),
    h(
      "tr",
      {},
      sets.map(() => [...COMPARED.map(([name]) => h("th", { scope: "col", class: "num" }, name)), h("th", { scope: "col", class: "num" }, "Diff(F)")]),
    ),
  );
  const rows = runs.map((run) =>
    h(
      "tr",
      { "data-run": run.label },
      h("th", { scope: "row" }, run.method ?? "—"),
      h("td", {}, h("a", { href: jobHref(run.job.id) }, run.job.id)),
      h("td", { class: "num" }, number(run.metrics.temperature, 3)),
      sets.map((set) => {
        const found = evaluation(run.metrics, set);
        return [
          ...COMPARED.map(([, value, digits]) => h("td", { class: "num" }, number(value(found), digits))),
          h("td", { class: "num" }, number(run.metrics.features?.[set]?.difference, 4)),
        ];
      }),
    ),
  );
  return h(
    "table",
    { class: "comparison" },
    h(
      "caption",
      {},
      "Methods by evaluation set: accuracy after temperature scaling, ECE before and after temperature scaling (TS), and Diff(F), the mean distance of the trained features from the pre-trained ones",
    ),
    head,
    h("tbody", {}, rows),
  );
}

/** Points of several runs on one x axis (the union of theirs), null where a run has none. */
function aligned(runs, pointsOf) {
  const per = runs.map((run) => new Map(pointsOf(run)));
  const xs = [...new Set(per.flatMap((points) => [...points.keys()]))].sort((a, b) => a - b);
  return [xs, per.map((points) => xs.map((x) => points.get(x) ?? null))];
}

/** The runs' training loss per step and validation accuracy per epoch, overlaid. */
export function overlaidCurves(container, runs) {
  fill(container);
  const series = (scale) => runs.map((run) => ({ label: run.label, scale, spanGaps: true }));
  const loss = new Curve(container, { title: "Training loss per step, every run", x: "step", series: series("loss") });
  loss.setData(...aligned(runs, (run) => (run.metrics.history || []).map((r) => [r.step, r.loss])));
  const accuracy = new Curve(container, { title: "Validation accuracy per epoch, every run", x: "epoch", series: series("accuracy") });
  accuracy.setData(...aligned(runs, (run) => (run.metrics.epochs || []).map((e) => [e.epoch, e.validation_accuracy])));
}

/** The reliability bins of every evaluation set, before and after scaling, as tables. */
export function reliabilityTables(metrics) {
  return setsOf([{ metrics }]).map((set) => {
    const found = evaluation(metrics, set);
    if (!found?.reliability) return null;
    const rows = ["uncalibrated", "calibrated"].flatMap((which) =>
      found.reliability[which]
        .filter((bin) => bin.count > 0)
        .map((bin) =>
          h(
            "tr",
            {},
            h("td", {}, which === "calibrated" ? "after TS" : "before TS"),
            h("td", {}, `${number(bin.lower, 2)}–${number(bin.upper, 2)}`),
            h("td", { class: "num" }, String(bin.count)),
            h("td", { class: "num" }, number(bin.confidence, 4)),
            h("td", { class: "num" }, number(bin.accuracy, 4)),
          ),
        ),
    );
    return h(
      "details",
      {},
      h("summary", {}, `Reliability bins on ${set}: table`),
      h(
        "table",
        {},
        h("caption", {}, `Reliability on ${set}: mean confidence and accuracy per confidence bin (bins with rows)`),
        h(
          "thead",
          {},
          h("tr", {}, ["Scaling", "Confidence bin", "Rows", "Mean confidence", "Accuracy"].map((name) => h("th", { scope: "col" }, name))),
        ),
        h("tbody", {}, rows),
      ),
    );
  });
}

const FEATURE_COLUMNS = [
  ["Diff(F)", (c) => c.difference],
  ["Diff(F) / ‖φ₀‖", (c) => c.relative_difference],
  ["Cosine to pre-trained", (c) => c.cosine_to_pretrained],
  ["CKA", (c) => c.cka],
  ["CS(F) pre-trained", (c) => c.pretrained?.mean_pairwise_cosine],
  ["CS(F) trained", (c) => c.trained?.mean_pairwise_cosine],
  ["Scatter ratio trained", (c) => c.trained?.scatter_ratio],
];

/** How far training moved the features, per evaluation set. */
export function featureTable(features) {
  const sets = Object.entries(features || {});
  if (!sets.length) return h("p", { class: "quiet" }, "No feature change was measured.");
  return h(
    "table",
    { id: "feature-change" },
    h("caption", {}, "Feature change against the pre-trained encoder, per evaluation set"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Set"), h("th", { scope: "col", class: "num" }, "Rows"), FEATURE_COLUMNS.map(([name]) => h("th", { scope: "col", class: "num" }, name)))),
    h(
      "tbody",
      {},
      sets.map(([set, change]) =>
        h("tr", {}, h("th", { scope: "row" }, set), h("td", { class: "num" }, String(change.rows)), FEATURE_COLUMNS.map(([, value]) => h("td", { class: "num" }, number(value(change), 4)))),
      ),
    ),
  );
}

const KERNELS = [
  ["pretrain_effective", "Pre-train effective"],
  ["ft_effective", "FT effective"],
  ["ntk", "NTK"],
];

/** The NTK at the start of fine-tuning: each kernel's rank, norm and kernel-regression accuracy. */
export function ntkTable(ntk, label = "") {
  const rows = KERNELS.filter(([name]) => ntk[name]).map(([name, title]) => {
    const kernel = ntk[name];
    const accuracy = kernel.accuracy || {};
    return h(
      "tr",
      {},
      h("th", { scope: "row" }, title),
      h("td", { class: "num" }, String(kernel.rank)),
      h("td", { class: "num" }, number(kernel.frobenius_norm, 4)),
      h("td", { class: "num" }, `${number(accuracy.train_sample, 3)} / ${number(accuracy.test_sample, 3)}`),
      h("td", { class: "num" }, `${number(accuracy.train_pair, 3)} / ${number(accuracy.test_pair, 3)}`),
    );
  });
  return h(
    "table",
    { class: "ntk" },
    h("caption", {}, `NTK at the start of fine-tuning${label}: ${ntk.samples_train} train and ${ntk.samples_test} test samples; FT ratio ${number(ntk.ft_ratio, 4)}, tr F / tr P ${number(ntk.trace_ratio, 4)}`),
    h("thead", {}, h("tr", {}, ["Kernel", "Rank", "Frobenius norm", "Accuracy train / test (sample)", "Accuracy train / test (pair)"].map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, rows),
  );
}

/** The head's norm: fresh, after the probe, final; and its trajectory per step, as a curve. */
export function headNorm(container, metrics) {
  const norm = metrics.head_norm || {};
  container.append(
    h(
      "table",
      { id: "head-norm" },
      h("caption", {}, "Head weight norm ‖V‖_F"),
      h("thead", {}, h("tr", {}, ["Fresh head", "After LP", "Final"].map((name) => h("th", { scope: "col", class: "num" }, name)))),
      h("tbody", {}, h("tr", {}, [norm.initial, norm.after_lp, norm.final].map((v) => h("td", { class: "num" }, number(v, 4))))),
    ),
  );
  const history = (metrics.history || []).filter((r) => typeof r.head_weight_norm === "number");
  if (!history.length) return;
  const curve = new Curve(container, {
    title: "Head norm per step",
    x: "step",
    series: [
      { label: "head weight norm", scale: "norm" },
      { label: "head bias norm", scale: "norm" },
    ],
  });
  curve.setData(
    history.map((r) => r.step),
    [history.map((r) => r.head_weight_norm), history.map((r) => r.head_bias_norm)],
  );
}

const SUMMARISED = [
  ["accuracy", "Accuracy"],
  ["macro_f1", "Macro-F1"],
  ["nll", "NLL"],
  ["ece", "ECE"],
];

/** Every seed's run as mean ± std per evaluation set, before and after scaling. */
export function seedsTable(summary) {
  const sets = [["test", summary.test], ...Object.entries(summary.eval_sets || {})];
  const cell = (stat) => h("td", { class: "num" }, stat ? `${number(stat.mean, 4)} ± ${number(stat.std, 4)}` : "—");
  return h(
    "table",
    { id: "seeds" },
    h("caption", {}, `Over seeds ${summary.seeds.join(", ")}: mean ± standard deviation; temperature ${number(summary.temperature?.mean, 3)} ± ${number(summary.temperature?.std, 3)}`),
    h(
      "thead",
      {},
      h("tr", {}, h("th", { scope: "col" }, "Set"), h("th", { scope: "col" }, "Scaling"), SUMMARISED.map(([, name]) => h("th", { scope: "col", class: "num" }, name))),
    ),
    h(
      "tbody",
      {},
      sets.flatMap(([set, split]) =>
        ["uncalibrated", "calibrated"].map((which) =>
          h("tr", {}, h("th", { scope: "row" }, set), h("td", {}, which === "calibrated" ? "after TS" : "before TS"), SUMMARISED.map(([key]) => cell(split[which]?.[key]))),
        ),
      ),
    ),
  );
}
