// Files of a job that are not JSON (its report's pictures, the report, an export), fetched
// with the caller's key: an <img src> or <a href> to the API would go out without the
// Authorization header. A picture becomes a data: URL (the CSP allows img-src data:, and a
// data: URL needs no revoking); a download becomes a blob: URL clicked as a link.

import { ApiError, key, problemOf, request } from "./api.js";
import { h } from "./dom.js";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
//: How long a download waits for an archive the API is still building (202s).
const BUILD_WAIT_MS = 10 * 60 * 1000;

/**
 * The body of `path` as a Blob, following 202s (an archive being built: ask again after
 * Retry-After) for up to BUILD_WAIT_MS; `onWait(seconds)` is told of each wait.
 */
export async function fetchBlob(path, { signal, onWait = () => {} } = {}) {
  const deadline = Date.now() + BUILD_WAIT_MS;
  for (;;) {
    const stored = key.get();
    const response = await fetch(path, { headers: stored ? { Authorization: `Bearer ${stored}` } : {}, signal });
    if (response.status === 202 && Date.now() < deadline) {
      const seconds = Number(response.headers.get("Retry-After")) || 2;
      onWait(seconds);
      await sleep(seconds * 1000);
      continue;
    }
    if (response.ok && response.status !== 202) return response.blob();
    // A 401 goes through the API client once more, so that the page returns to sign-in as
    // it does for any other call.
    if (response.status === 401) await request(path, { signal });
    throw new ApiError(response.status, await problemOf(response));
  }
}

const dataUrl = (blob) =>
  new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });

/**
 * A figure holding one of the job's report pictures (`/jobs/{id}/plots/{name}.png`), with
 * `alt` as its text and `caption` below; the picture arrives when fetched, or the figure
 * says why it did not.
 */
export function plotFigure(jobId, name, { alt, caption, signal }) {
  const status = h("p", { class: "quiet" }, "Loading the picture…");
  const figure = h("figure", { class: "plot-image", "data-plot": name }, status, h("figcaption", {}, caption));
  fetchBlob(`/jobs/${encodeURIComponent(jobId)}/plots/${encodeURIComponent(name)}.png`, { signal })
    .then(dataUrl)
    .then((url) => {
      const image = h("img", { alt, src: url });
      status.replaceWith(image);
    })
    .catch((error) => {
      if (!signal?.aborted) status.textContent = `No picture: ${error.message}`;
    });
  return figure;
}

/** Save a blob under `filename` through a temporary link, as the browser saves downloads. */
export function save(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
