// /ui/datasets: upload a dataset with its progress, see a refused upload's error at the row
// and field it names (the row read back from the chosen file where it is text), list the
// caller's datasets with their label counts and a preview of their first rows, delete.

import { ApiError, request, Unauthorized, upload } from "./api.js";
import { fill, h, when } from "./dom.js";
import { clearErrors, control, openApi, showErrors } from "./forms.js";
import { consoleConfig, run } from "./session.js";

const $ = (id) => document.getElementById(id);
const PAGE = 20;
const PREVIEW_ROWS = 10;
//: The most of a chosen file read back in the browser to show the row an error names.
const READ_BACK_BYTES = 8 * 1024 * 1024;

const columns = []; // the column-name controls, from the API's upload schema
let next = null; // the `after` of the next page of datasets

function labelText(counts) {
  return Object.entries(counts)
    .map(([label, n]) => `${label}: ${n}`)
    .join(" · ");
}

function inputsText(dataset) {
  return dataset.pair ? "text pairs" : "single texts";
}

/** The column-name fields of the upload form, from the multipart body the API documents. */
async function buildColumnFields() {
  const document = await openApi();
  const body = document.paths["/datasets"].post.requestBody.content["multipart/form-data"].schema;
  const names = Object.keys(body.properties).filter((name) => name.endsWith("_field"));
  columns.push(...names.map((name) => ({ name, ...control(document, name, body.properties[name]) })));
  fill($("column-fields"), columns.map((c) => c.element));
}

/** `action` as an event handler: a refusal is said in `status`; a 401 has already brought
 * the sign-in form back. */
function guarded(action, status = "list-status") {
  return (...args) =>
    action(...args).catch((error) => {
      if (error instanceof Unauthorized) return;
      $(status).textContent = error.message;
    });
}

function row(dataset) {
  const actions = h("td", { class: "row-actions" });
  const tr = h(
    "tr",
    { "data-dataset": dataset.id },
    h("td", {}, dataset.name),
    h("td", {}, h("code", {}, dataset.id)),
    h("td", { class: "num" }, String(dataset.rows)),
    h("td", {}, inputsText(dataset)),
    h("td", { class: "labels" }, labelText(dataset.label_counts)),
    h("td", {}, when(dataset.created_at)),
    actions,
  );
  showActions(actions, dataset);
  return tr;
}

function showActions(cell, dataset) {
  const preview = h("button", { type: "button", "aria-label": `Preview ${dataset.name}` }, "Preview");
  preview.addEventListener("click", guarded(() => showPreview(dataset)));
  const train = h("a", { href: `/ui/new?train=${encodeURIComponent(dataset.id)}`, "aria-label": `New job on ${dataset.name}` }, "New job");
  const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${dataset.name}` }, "Delete");
  remove.addEventListener("click", () => confirmDelete(cell, dataset));
  fill(cell, preview, train, remove);
}

function confirmDelete(cell, dataset) {
  const yes = h("button", { type: "button", class: "danger" }, "Yes, delete");
  const no = h("button", { type: "button" }, "Keep it");
  fill(cell, h("span", {}, `Delete ${dataset.name}?`), yes, no);
  no.addEventListener("click", () => {
    showActions(cell, dataset);
    cell.querySelector("button").focus();
  });
  yes.addEventListener("click", guarded(async () => {
    yes.disabled = true;
    try {
      await request(`/datasets/${encodeURIComponent(dataset.id)}`, { method: "DELETE" });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      $("list-status").textContent = `Could not delete ${dataset.name}: ${error.message}`;
      showActions(cell, dataset);
      return;
    }
    cell.closest("tr").remove();
    $("list-status").textContent = `Deleted ${dataset.name}.`;
    if ($("preview").dataset.dataset === dataset.id) $("preview").hidden = true;
    if (!$("datasets-body").children.length) showEmpty();
    $("list-title").focus();
  }));
  yes.focus();
}

function showEmpty() {
  fill($("datasets-body"), h("tr", {}, h("td", { colspan: 7 }, "No datasets yet: upload one above.")));
}

/** The first page again (after an upload), or the next one appended. */
async function loadDatasets({ more = false, signal } = {}) {
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (more && next) query.set("after", next);
  const page = await request(`/datasets?${query}`, { signal });
  const body = $("datasets-body");
  const rows = page.data.map(row);
  if (more) body.append(...rows);
  else if (rows.length) fill(body, rows);
  else showEmpty();
  next = page.has_more ? page.last_id : null;
  $("more").hidden = !next;
  return page.data;
}

async function showPreview(dataset) {
  const section = $("preview");
  const preview = await request(`/datasets/${encodeURIComponent(dataset.id)}/preview?limit=${PREVIEW_ROWS}`);
  section.dataset.dataset = dataset.id;
  fill($("preview-title"), `Preview of ${dataset.name}`);
  fill(
    $("preview-facts"),
    [
      ["Id", dataset.id],
      ["Rows", String(dataset.rows)],
      ["Inputs", inputsText(dataset)],
      ["Uploaded", when(dataset.created_at)],
    ].map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
  );
  const total = Object.values(dataset.label_counts).reduce((a, b) => a + b, 0);
  fill(
    $("label-counts").tBodies[0],
    Object.entries(dataset.label_counts).map(([label, n]) =>
      h("tr", {}, h("th", { scope: "row" }, label), h("td", { class: "num" }, String(n)), h("td", { class: "num" }, `${((100 * n) / total).toFixed(1)} %`)),
    ),
  );
  const table = $("preview-rows");
  const names = ["text", ...(dataset.pair ? ["text_pair"] : []), "label"];
  fill(table.tHead, h("tr", {}, h("th", { scope: "col", class: "num" }, "#"), names.map((n) => h("th", { scope: "col" }, n))));
  fill(
    table.tBodies[0],
    preview.rows.map((r, i) => h("tr", {}, h("td", { class: "num" }, String(i + 1)), names.map((n) => h("td", {}, String(r[n] ?? ""))))),
  );
  const shownText = preview.has_more ? `The first ${preview.rows.length} of ${dataset.rows} rows, as stored` : `All ${preview.rows.length} rows, as stored`;
  fill($("preview-rows-caption"), shownText);
  section.hidden = false;
  $("preview-title").focus();
}

// ---- uploading ----------------------------------------------------------------------------

function showProgress(sent, total) {
  const percent = total ? Math.floor((100 * sent) / total) : 0;
  $("upload-progress").value = percent;
  $("upload-percent").textContent = `${percent} %`;
}

/** The line `line` of the chosen file, when it is text and small enough to read back. */
async function lineOf(file, line) {
  if (!/\.(jsonl|json|ndjson|csv)$/i.test(file.name) || !line) return null;
  const text = await file.slice(0, READ_BACK_BYTES).text();
  const lines = text.split(/\r\n|\n|\r/);
  return line <= lines.length ? lines[line - 1] : null;
}

/** A CSV line's cells, quotes and all (RFC 4180's quoted cells with doubled quotes). */
function csvCells(line) {
  const cells = [];
  const pattern = /("(?:[^"]|"")*"|[^,]*)(,|$)/g;
  for (const match of line.matchAll(pattern)) {
    const cell = match[1];
    cells.push(cell.startsWith('"') ? cell.slice(1, -1).replaceAll('""', '"') : cell);
    if (match[2] === "") break;
  }
  return cells;
}

/** The row's fields by name, when the file is JSONL or CSV and the row can be read. */
async function fieldsOf(file, line) {
  const text = await lineOf(file, line);
  if (text === null) return null;
  if (/\.csv$/i.test(file.name)) {
    const header = csvCells((await lineOf(file, 1)) ?? "");
    const cells = csvCells(text);
    return { raw: text, fields: header.length === cells.length ? Object.fromEntries(header.map((n, i) => [n, cells[i]])) : null };
  }
  try {
    const value = JSON.parse(text);
    const fields = value && typeof value === "object" && !Array.isArray(value) ? value : null;
    return { raw: text, fields };
  } catch {
    return { raw: text, fields: null };
  }
}

/** The refused row: its line, each of its fields with the one at fault marked, the message. */
async function showRowErrors(file, problem, rowErrors) {
  const body = [];
  for (const error of rowErrors) {
    const found = await fieldsOf(file, error.line);
    const unit = /\.parquet$/i.test(file.name) ? "Row" : "Line";
    body.push(h("h4", {}, `${unit} ${error.line} of ${file.name}, field ${error.field}`));
    body.push(h("p", { class: "error" }, error.message));
    if (found?.fields) {
      const names = Object.keys(found.fields);
      if (!names.includes(error.field)) names.push(error.field);
      body.push(
        h(
          "table",
          { class: "bad-row" },
          h("caption", {}, `${unit} ${error.line} as the file has it`),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Value"), h("th", { scope: "col" }, "Problem"))),
          h(
            "tbody",
            {},
            names.map((name) => {
              const bad = name === error.field;
              const value = name in found.fields ? JSON.stringify(found.fields[name]) : "(missing)";
              return h("tr", { class: bad ? "at-fault" : null, "data-field": name }, h("th", { scope: "row" }, name), h("td", {}, value), h("td", {}, bad ? "at fault" : ""));
            }),
          ),
        ),
      );
    } else if (found) {
      body.push(h("pre", { class: "raw-row" }, found.raw));
    }
  }
  fill($("row-errors-detail"), problem.detail);
  fill($("row-errors-body"), body);
  $("row-errors").hidden = false;
}

/** `n` bytes, exactly and in the unit a person reads (12,345 bytes (12.1 KiB)). */
function sizeText(n) {
  const units = ["KiB", "MiB", "GiB"];
  let value = n;
  let unit = "";
  for (const next of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  const exact = `${n.toLocaleString("en")} bytes`;
  return unit ? `${exact} (${value.toFixed(1)} ${unit})` : exact;
}

/**
 * Why this server would refuse `file` for its size, or null. The limit is the whole request
 * body's (the file, the form's other fields and the multipart framing), so a file just under
 * it can still be refused; the server answers that by closing the connection.
 */
async function tooLarge(file) {
  const limit = (await consoleConfig())?.max_upload_bytes;
  if (!limit || file.size <= limit) return null;
  return `${file.name} is ${sizeText(file.size)}; this server takes uploads of up to ${sizeText(limit)}. Split the file, or upload it as Parquet, which is smaller.`;
}

function columnMapping() {
  const mapped = {};
  for (const column of columns) {
    const value = column.read();
    if (value !== undefined) mapped[column.name] = value;
  }
  return mapped;
}

async function submitUpload() {
  const form = $("upload-form");
  const file = $("upload-file").files[0];
  clearErrors(form);
  $("row-errors").hidden = true;
  $("upload-status").textContent = "";
  if (!file) {
    showErrors(form, [{ field: "file", message: "choose a file to upload" }]);
    return;
  }
  const refusal = await tooLarge(file);
  if (refusal) {
    showErrors(form, [{ field: "file", message: refusal }]);
    $("upload-status").textContent = "Not sent: the file is over this server's upload limit.";
    return;
  }
  const body = new FormData();
  body.append("file", file, file.name);
  const name = $("upload-name").value.trim();
  if (name) body.append("name", name);
  for (const [column, value] of Object.entries(columnMapping())) body.append(column, value);
  $("upload-button").disabled = true;
  showProgress(0, file.size);
  let dataset;
  try {
    dataset = await upload("/datasets", body, { onProgress: showProgress });
  } catch (error) {
    if (error instanceof TypeError) {
      // A body over the limit is answered with a 413 before it is read, and the connection
      // closed: the browser reports only that. Say what most likely happened.
      const limit = (await consoleConfig())?.max_upload_bytes;
      const near = limit && file.size > limit - 64 * 1024;
      throw new Error(near ? `${error.message}. With the form's other fields the upload is probably over this server's limit of ${sizeText(limit)} (${file.name} is ${sizeText(file.size)}).` : error.message);
    }
    if (!(error instanceof ApiError)) throw error;
    const errors = error.problem.errors ?? [];
    const rowErrors = errors.filter((e) => e.line !== undefined);
    const others = showErrors(form, errors.filter((e) => e.line === undefined));
    if (rowErrors.length) await showRowErrors(file, error.problem, rowErrors);
    else if (others.length || !errors.length) $("upload-status").textContent = `Refused: ${error.message}`;
    else $("upload-status").textContent = "Refused: see the field marked above.";
    if (rowErrors.length) $("row-errors-title").focus();
    return;
  }
  $("upload-status").textContent = `Uploaded ${dataset.name}: ${dataset.rows} rows (${dataset.id}).`;
  form.reset();
  await loadDatasets();
  await showPreview(dataset);
}

async function start(signal) {
  if (!columns.length) await buildColumnFields();
  await loadDatasets({ signal });
}

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(submitUpload, "upload-status")().finally(() => ($("upload-button").disabled = false));
});
$("more").addEventListener("click", guarded(() => loadDatasets({ more: true })));
for (const id of ["list-title", "preview-title", "row-errors-title"]) $(id).setAttribute("tabindex", "-1");

run(start);
