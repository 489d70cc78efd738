// Building the page from data. Every string goes in as a text node or an attribute value,
// never as HTML, so a hostile job, dataset or file name is shown, not run.

/** An element with attributes (`class`, `href`, `aria-*`, ...) and children (nodes or text). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined).map(node));
  return element;
}

function node(child) {
  return child instanceof Node ? child : document.createTextNode(String(child));
}

/** Replace an element's children. */
export function fill(element, ...children) {
  element.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined).map(node));
}

/** A link to a job's page. */
export function jobHref(id) {
  return `/ui/jobs/${encodeURIComponent(id)}`;
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

/** A number to `digits` decimals, or an em dash. */
export function number(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

/** A Unix time as the reader's local date and time. */
export function when(seconds) {
  if (!seconds) return "—";
  return new Date(seconds * 1000).toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

/** Seconds as "1 h 02 min", "3 min 05 s" or "12.3 s". */
export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "—";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours} h ${String(minutes).padStart(2, "0")} min` : `${minutes} min ${rest} s`;
}

/** How long a job ran, or has been running. */
export function jobDuration(job, now = Date.now() / 1000) {
  if (!job.started_at) return null;
  return (job.finished_at ?? now) - job.started_at;
}

/** The status as a badge whose class gives its colour; the word itself carries the meaning. */
export function statusBadge(status) {
  return h("span", { class: `status status-${status}` }, status);
}
