// /ui/compare?jobs=a,b,c: finished runs side by side. Each finetune job is one run and each
// compare job one run per method; the page shows them in one table of methods by evaluation
// set (the paper's Table 8) and overlays their training curves.

import { ApiError, request } from "./api.js";
import { fill } from "./dom.js";
import { comparisonTable, overlaidCurves, runsOf } from "./results.js";
import { run } from "./session.js";

//: At most this many jobs in one comparison (each costs two requests and a curve per run).
export const MAX_JOBS = 12;
const $ = (id) => document.getElementById(id);

function wanted() {
  const ids = (new URLSearchParams(location.search).get("jobs") || "").split(",").map((id) => id.trim());
  return [...new Set(ids.filter(Boolean))];
}

/** The runs of one job, or why it has none to compare. */
async function runsOfJob(id, signal) {
  let job;
  try {
    job = await request(`/jobs/${encodeURIComponent(id)}`, { signal });
  } catch (error) {
    if (error instanceof ApiError) return { skipped: `${id}: ${error.message}` };
    throw error;
  }
  if (job.status !== "succeeded") return { skipped: `${id} is ${job.status}` };
  const document = await request(`/jobs/${encodeURIComponent(id)}/metrics`, { signal });
  const runs = runsOf(job, document);
  return runs.length ? { runs } : { skipped: `${id} is a ${job.kind} job, with no test metrics` };
}

async function start(signal) {
  const ids = wanted();
  $("job-ids").value = ids.join(", ");
  const notes = [];
  if (ids.length > MAX_JOBS) notes.push(`Only the first ${MAX_JOBS} of ${ids.length} jobs are compared.`);
  const found = await Promise.all(ids.slice(0, MAX_JOBS).map((id) => runsOfJob(id, signal)));
  const runs = found.flatMap((f) => f.runs || []);
  notes.push(...found.filter((f) => f.skipped).map((f) => `Not compared: ${f.skipped}.`));
  if (!ids.length) notes.push("Name the jobs to compare.");
  $("skipped").textContent = notes.join(" ");
  $("results").hidden = runs.length === 0;
  if (!runs.length) return;
  fill($("comparison"), comparisonTable(runs));
  overlaidCurves($("curves"), runs);
}

$("pick").addEventListener("submit", (event) => {
  event.preventDefault();
  const ids = $("job-ids").value.split(/[\s,]+/).filter(Boolean);
  location.assign(`/ui/compare?jobs=${ids.map(encodeURIComponent).join(",")}`);
});

run(start);
