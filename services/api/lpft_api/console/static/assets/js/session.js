// Sign-in and sign-out around a page: where the API wants a key, the page is hidden behind a
// form until one works; a 401 from any call later brings the form back. In open mode the
// first call succeeds without a key and no form is ever shown.

import { key, Unauthorized, whenUnauthorized } from "./api.js";
import { fill, h } from "./dom.js";

const $ = (id) => document.getElementById(id);

/** The sign-in form, the same on every page, in its (empty) section. */
function signInForm(section) {
  fill(
    section,
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", {}, "The key stays in this tab (sessionStorage) and goes to the API as a Bearer token."),
    h("p", { id: "sign-in-reason", class: "notice", role: "status" }),
    h(
      "form",
      { id: "sign-in-form" },
      h("label", { for: "api-key" }, "API key"),
      h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off", required: true }),
      h("button", { type: "submit" }, "Sign in"),
    ),
  );
}

let configuration = null;

/**
 * The console's own /ui/config.json, read once a page: `keys_required` (whether this server
 * wants a key) and `max_upload_bytes` (the most an upload may have). Null when it cannot be
 * read; a page then asks for a key and leaves the limit to the server.
 */
export function consoleConfig() {
  configuration ??= fetch("/ui/config.json", { headers: { Accept: "application/json" } })
    .then((response) => (response.ok ? response.json() : null))
    .catch(() => null);
  return configuration;
}

async function keysRequired() {
  return (await consoleConfig())?.keys_required ?? true;
}

/**
 * Run `start(signal)`, the page's first load, once signed in; `signal` aborts when the
 * session ends (sign-out, or a 401), so that the page stops its polls and streams.
 */
export function run(start) {
  signInForm($("sign-in"));
  const form = $("sign-in-form");
  const input = $("api-key");
  const reason = $("sign-in-reason");
  const signIn = $("sign-in");
  const page = $("page");
  const signOut = $("sign-out");
  let controller = null;

  function ask(why) {
    controller?.abort();
    controller = null;
    key.forget();
    page.hidden = true;
    signOut.hidden = true;
    signIn.hidden = false;
    reason.textContent = why;
    input.focus();
  }

  async function attempt() {
    controller?.abort();
    controller = new AbortController();
    const { signal } = controller;
    if (!key.get() && (await keysRequired())) {
      ask("");
      return;
    }
    try {
      await start(signal);
    } catch (error) {
      if (error instanceof Unauthorized) return; // whenUnauthorized has asked already
      throw error;
    }
    if (signal.aborted) return;
    signIn.hidden = true;
    page.hidden = false;
    signOut.hidden = !key.get(); // open mode: nothing to sign out of
  }

  whenUnauthorized((error) => {
    const hadKey = Boolean(key.get());
    ask(hadKey ? `That key was refused: ${error.message}.` : "This server needs an API key.");
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    input.value = "";
    if (!value) return;
    key.set(value);
    reason.textContent = "";
    attempt();
  });
  signOut.addEventListener("click", () => ask("Signed out: the key is forgotten."));
  attempt();
}
