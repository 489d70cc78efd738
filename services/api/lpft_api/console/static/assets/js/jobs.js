// /ui/: the caller's jobs, newest first, filtered by status (by the API's status index) and
// kind (here, over the pages read), paged by cursor, and kept live by the API's feed of the
// caller's job changes (GET /events/jobs): the page shown is read again when a job is
// created, changes status or is deleted, and only then. Where the feed cannot be followed
// (the tenant holds all its stream slots, a proxy that buffers, an older API), the page
// falls back to reading itself every POLL_MS, says so, and tries the feed again every
// LIVE_RETRY_MS.

import { ApiError, Unauthorized, followJobChanges, request, sleep } from "./api.js";
import { duration, fill, h, jobDuration, jobHref, number, statusBadge, when } from "./dom.js";
import { run } from "./session.js";

const PAGE = 20;
const POLL_MS = 2000;
//: How long the page polls, once the feed failed it, before it tries the feed again.
const LIVE_RETRY_MS = 30_000;
//: A kind filter reads at most this many pages of 100 for one page shown.
const KIND_READS = 5;

const $ = (id) => document.getElementById(id);
const datasets = new Map(); // id -> name (or the id, when it cannot be read)
const metrics = new Map(); // succeeded job id -> {accuracy, ece}, or null for none
const picked = new Set(); // ids ticked for /ui/compare, kept across pages and refreshes
const COMPARABLE = new Set(["finetune", "compare"]);
let view = fromUrl();

function fromUrl() {
  const query = new URLSearchParams(location.search);
  return {
    status: query.get("status") || "",
    kind: query.get("kind") || "",
    after: query.get("after") || "",
    earlier: [], // the `after` of each page before this one, for "Newer"
  };
}

function toUrl() {
  const query = new URLSearchParams();
  for (const name of ["status", "kind", "after"]) if (view[name]) query.set(name, view[name]);
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
}

/** One page of jobs for the view: up to PAGE of the chosen kind, and where the next starts. */
async function readPage(signal) {
  const shown = [];
  let cursor = view.after || null;
  let more = true;
  for (let reads = 0; shown.length < PAGE && more && reads < (view.kind ? KIND_READS : 1); reads++) {
    const query = new URLSearchParams({ limit: String(view.kind ? 100 : PAGE) });
    if (view.status) query.set("status", view.status);
    if (cursor) query.set("after", cursor);
    const page = await request(`/jobs?${query}`, { signal });
    const matching = page.data.filter((job) => !view.kind || job.kind === view.kind);
    const taken = matching.slice(0, PAGE - shown.length);
    shown.push(...taken);
    const cut = taken.length < matching.length;
    cursor = cut ? taken.at(-1).id : page.last_id;
    more = cut || page.has_more;
  }
  return { jobs: shown, next: more ? cursor : null };
}

function datasetName(job) {
  const id = job.dataset?.train;
  if (!id) return "—";
  return datasets.get(id) ?? id;
}

async function learnNames(jobs, signal) {
  const unknown = [...new Set(jobs.map((j) => j.dataset?.train).filter((id) => id && !datasets.has(id)))];
  await Promise.all(
    unknown.map(async (id) => {
      try {
        datasets.set(id, (await request(`/datasets/${encodeURIComponent(id)}`, { signal })).name);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        datasets.set(id, id); // deleted since: its id is all there is
      }
    }),
  );
}

async function learnMetrics(jobs, signal) {
  const wanted = jobs.filter((j) => j.status === "succeeded" && j.kind === "finetune" && !metrics.has(j.id));
  await Promise.all(
    wanted.map(async (job) => {
      try {
        const document = await request(`/jobs/${encodeURIComponent(job.id)}/metrics`, { signal });
        const test = document.test?.calibrated;
        metrics.set(job.id, test ? { accuracy: test.accuracy, ece: test.ece } : null);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        metrics.set(job.id, null);
      }
    }),
  );
}

function cells(job) {
  const scores = metrics.get(job.id);
  return [
    h("a", { href: jobHref(job.id) }, job.id),
    job.kind,
    job.method ?? ((job.methods || []).join(", ") || "—"),
    datasetName(job),
    statusBadge(job.status),
    when(job.created_at),
    duration(jobDuration(job)),
    number(scores?.accuracy),
    number(scores?.ece),
    job.status === "succeeded" && COMPARABLE.has(job.kind)
      ? h("input", { type: "checkbox", "aria-label": `Compare ${job.id}`, "data-compare": job.id, checked: picked.has(job.id) })
      : "",
  ];
}

function renderPicked() {
  $("compare").disabled = picked.size === 0;
  $("picked").textContent = picked.size ? `${picked.size} picked to compare: ${[...picked].join(", ")}` : "";
}

let shown = []; // the jobs of the page rendered last

/** Running jobs' durations grow between reads of the page: the feed reports changes of
 * status, not the clock, so the page ticks them itself. */
function tick() {
  for (const job of shown) {
    if (job.status !== "running") continue;
    const row = $("jobs-body").querySelector(`tr[data-job="${CSS.escape(job.id)}"]`);
    if (row?.cells[6]) row.cells[6].textContent = duration(jobDuration(job));
  }
}

function render(page) {
  shown = page.jobs;
  const body = $("jobs-body");
  if (!page.jobs.length) {
    const filtered = view.status || view.kind ? " matching these filters" : "";
    fill(body, h("tr", {}, h("td", { colspan: 10 }, `No jobs${filtered}.`)));
  } else {
    const rows = new Map([...body.querySelectorAll("tr[data-job]")].map((tr) => [tr.dataset.job, tr]));
    const ordered = page.jobs.map((job) => {
      const row = rows.get(job.id) ?? h("tr", { "data-job": job.id });
      const texts = cells(job);
      const signature = JSON.stringify(texts.map((c) => (c instanceof Node ? c.textContent : c)));
      if (row.dataset.signature !== signature) {
        row.dataset.signature = signature;
        fill(row, texts.map((c) => h("td", {}, c)));
      }
      return row;
    });
    const same = ordered.length === body.children.length && ordered.every((r, i) => body.children[i] === r);
    if (!same) fill(body, ordered);
  }
  $("older").disabled = !page.next;
  $("newer").disabled = !view.after;
  $("older").dataset.after = page.next ?? "";
  const how = live
    ? "live, as jobs change"
    : fallback
      ? `refreshed every ${POLL_MS / 1000} s (${fallback})`
      : "connecting to live updates";
  $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}; ${how}.`;
}

async function refresh(signal) {
  const page = await readPage(signal);
  await Promise.all([learnNames(page.jobs, signal), learnMetrics(page.jobs, signal)]);
  if (!signal.aborted) render(page);
}

let live = false;
let fallback = "";
let reread = () => {};

/** Read the page again, once at a time: asked while a read runs, one more follows it. */
function rereader(signal) {
  let running = null;
  let wanted = false;
  const once = async () => {
    try {
      await refresh(signal);
      $("poll-error").textContent = "";
    } catch (error) {
      if (signal.aborted || error instanceof Unauthorized) return;
      $("poll-error").textContent = `Could not refresh: ${error.message}`;
    }
  };
  return async () => {
    if (running) {
      wanted = true;
      return running;
    }
    running = (async () => {
      do {
        wanted = false;
        await once();
      } while (wanted && !signal.aborted);
      running = null;
    })();
    return running;
  };
}

async function start(signal) {
  $("status-filter").value = view.status;
  $("kind-filter").value = view.kind;
  reread = rereader(signal);
  live = false;
  fallback = "";
  await refresh(signal);
  const ticker = setInterval(tick, 1000);
  signal.addEventListener("abort", () => clearInterval(ticker));
  follow(signal);
}

function reload() {
  toUrl();
  return reread();
}

async function follow(signal) {
  while (!signal.aborted) {
    try {
      await followJobChanges(
        (change) => {
          // `ready` comes first on each connection: what changed before it was missed unless
          // the stream resumed where the last one ended.
          if (change.type === "ready") {
            live = true;
            fallback = "";
            if (change.resumed && !change.missed) return;
          }
          reread();
        },
        { signal },
      );
      return; // signed out, or left the page
    } catch (error) {
      if (signal.aborted || error instanceof Unauthorized) return;
      live = false;
      fallback = `live updates are off: ${error.message}`;
    }
    // Poll for a while, then try the feed again (a Redis restart, a stream slot freed).
    await poll(signal, LIVE_RETRY_MS);
  }
}

/** Read the page every POLL_MS (not while the tab is hidden) for `forMs`. */
async function poll(signal, forMs) {
  const until = Date.now() + forMs;
  while (!signal.aborted && Date.now() < until) {
    if (!document.hidden) await reread();
    await sleep(POLL_MS, signal);
  }
}

$("filters").addEventListener("change", (event) => {
  if (event.target.id === "status-filter") view.status = event.target.value;
  if (event.target.id === "kind-filter") view.kind = event.target.value;
  view.after = "";
  view.earlier = [];
  reload();
});
$("jobs-body").addEventListener("change", (event) => {
  const id = event.target.dataset?.compare;
  if (!id) return;
  if (event.target.checked) picked.add(id);
  else picked.delete(id);
  renderPicked();
});
$("compare").addEventListener("click", () => {
  location.assign(`/ui/compare?jobs=${[...picked].map(encodeURIComponent).join(",")}`);
});
$("older").addEventListener("click", (event) => {
  view.earlier.push(view.after);
  view.after = event.target.dataset.after;
  reload();
});
$("newer").addEventListener("click", () => {
  view.after = view.earlier.pop() ?? "";
  reload();
});

run(start);
