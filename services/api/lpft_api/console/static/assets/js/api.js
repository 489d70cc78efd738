// The console's client of the API: the caller's key, JSON requests, and server-sent events
// (a job's, and the feed of the caller's job changes) read over fetch (EventSource cannot
// send an Authorization header).

const KEY = "lpft.apiKey";

/** The server refused the key, or wants one (401). */
export class Unauthorized extends Error {}

/** Any other refusal, with the problem document's detail and field errors. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// The key lives in sessionStorage only: gone with the tab, never in a cookie or the URL.
export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  forget: () => sessionStorage.removeItem(KEY),
};

let onUnauthorized = () => {};

/** Called on every 401, wherever it came from (a poll, a stream, an action). */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

function headers(accept, extra = {}) {
  const result = new Headers({ Accept: accept, ...extra });
  const stored = key.get();
  if (stored) result.set("Authorization", `Bearer ${stored}`);
  return result;
}

/** The problem document of a refused response, or one made up from its status line. */
export async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { detail: `HTTP ${response.status} ${response.statusText}` };
  }
}

async function refuse(response) {
  const problem = await problemOf(response);
  if (response.status === 401) {
    const error = new Unauthorized(problem.detail || "this server needs an API key");
    onUnauthorized(error);
    return error;
  }
  return new ApiError(response.status, problem);
}

/** A JSON request to the API; resolves to the body (null for 204), throws on a refusal. */
export async function request(path, { method = "GET", body, signal } = {}) {
  const extra = body === undefined ? {} : { "Content-Type": "application/json" };
  const response = await fetch(path, {
    method,
    headers: headers("application/json", extra),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await refuse(response);
  return response.status === 204 ? null : response.json();
}

/**
 * POST a form (a dataset file) with XMLHttpRequest, whose upload events report how much of
 * the body has gone (fetch reports nothing of a request body in Chromium). Calls
 * `onProgress(sent, total)` as it goes; resolves to the JSON answer, throws like request().
 */
export function upload(path, form, { onProgress = () => {}, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of headers("application/json")) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.upload.addEventListener("load", (event) => onProgress(event.total, event.total));
    xhr.addEventListener("load", async () => {
      const response = new Response(xhr.responseText, {
        status: xhr.status,
        headers: { "Content-Type": xhr.getResponseHeader("Content-Type") || "" },
      });
      if (response.ok) resolve(await response.json());
      else reject(await refuse(response));
    });
    xhr.addEventListener("error", () => reject(new TypeError("the upload failed: the connection closed")));
    xhr.addEventListener("abort", () => reject(new DOMException("the upload was stopped", "AbortError")));
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(form);
  });
}

/** Wait `ms`, or less if `signal` aborts meanwhile. */
export const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

/** Split a text/event-stream body into events ({id, type, data}), calling onEvent for each. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { id: null, type: "message", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) onEvent({ id: event.id, type: event.type, data: event.data.join("\n") });
        event = { id: null, type: "message", data: [] };
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") event.id = text;
        else if (field === "event") event.type = text;
        else if (field === "data") event.data.push(text);
      }
    }
  }
}

/** GET an event stream, resuming after the event id `last` (null: from the start). */
function openStream(path, last, signal) {
  const extra = last ? { "Last-Event-ID": last } : {};
  return fetch(path, { headers: headers("text/event-stream", extra), signal });
}

const parsed = (event) => ({ id: event.id, type: event.type, ...JSON.parse(event.data) });

/**
 * Follow a job's events from the start until `finished()` says the job is over once the
 * server closed the stream (it does when the job ended, or when the stream lost its slot).
 * A dropped connection or a 429 (too many streams) is retried from the last event received.
 */
export async function followEvents(jobId, onEvent, { finished, signal, retryMs = 2000 }) {
  let last = null;
  while (!signal.aborted) {
    let response;
    try {
      response = await openStream(`/jobs/${encodeURIComponent(jobId)}/events`, last, signal);
    } catch {
      if (signal.aborted) return;
      await sleep(retryMs, signal);
      continue;
    }
    if (response.status === 429) {
      const seconds = Number(response.headers.get("Retry-After")) || retryMs / 1000;
      await sleep(seconds * 1000, signal);
      continue;
    }
    if (!response.ok) throw await refuse(response);
    try {
      await readEvents(response.body, (event) => {
        last = event.id;
        onEvent(parsed(event));
      });
    } catch {
      if (signal.aborted) return;
      await sleep(retryMs, signal);
      continue;
    }
    if (await finished()) return;
  }
}

/**
 * Follow the caller's job changes (GET /events/jobs: `ready`, then `created`, `status`,
 * `deleted`) for as long as `signal` allows. A stream the server ends (it does every few
 * minutes) is resumed at once with Last-Event-ID; a dropped connection is retried `tries`
 * times in a row, `retryMs` apart. Throws when it cannot go on live: a refusal (a 429 when
 * the caller holds too many streams, a server without the feed), or the connection lost
 * `tries` times; the caller then falls back to polling. A 401 goes to sign-in, as ever.
 */
export async function followJobChanges(onChange, { signal, retryMs = 2000, tries = 3 }) {
  let last = null;
  let lost = 0;
  while (!signal.aborted) {
    let reason = "it ended before its first event";
    let received = false;
    try {
      const response = await openStream("/events/jobs", last, signal);
      if (!response.ok) throw await refuse(response);
      await readEvents(response.body, (event) => {
        last = event.id ?? last;
        received = true;
        lost = 0;
        onChange(parsed(event));
      });
      if (received) continue; // ended by the server: resume at once
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof Unauthorized || error instanceof ApiError) throw error;
      reason = error.message;
    }
    if (++lost >= tries) throw new Error(`the live stream was lost ${tries} times (${reason})`);
    await sleep(retryMs, signal);
  }
}
