"""The console's form pages in Chromium against the real stack: /ui/datasets (an upload's
progress, its preview and label counts, a refused upload's error at its row and field,
hostile names and texts shown as text, delete) and /ui/new (the API's defaults and bounds
beside the fields, its 422 errors beside the fields they name, a good job opening its page).

``LPFT_CONSOLE_SCREENSHOTS=DIR`` saves a screenshot of each page there, as test_console.py
does (docs/ holds the committed ones)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import Console
from tests.browser.test_console import (  # noqa: F401 - alice and toy_splits are fixtures
    IMG,
    LABEL,
    NAME,
    SCRIPT,
    alice,
    assert_inert,
    screenshot,
    toy_splits,
)
from tests.conftest import TINY_HYPERPARAMETERS, toy_rows
from tests.integration.conftest import KEYS


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def choose_file(console: Console, name: str, content: bytes) -> None:
    console.page.get_by_label("Dataset file").set_input_files(
        {"name": name, "mimeType": "application/octet-stream", "buffer": content}
    )


def assert_linked(console: Console, path: str) -> None:
    """The header links every page of the console, ``path`` as the current one."""
    nav = console.page.get_by_role("navigation", name="Console")
    for name, href in (("Jobs", "/ui/"), ("Datasets", "/ui/datasets"), ("New job", "/ui/new")):
        expect(nav.get_by_role("link", name=name, exact=True)).to_have_attribute("href", href)
    expect(nav.locator("[aria-current=page]")).to_have_attribute("href", path)


def upload_shown(console: Console, name: str, content: bytes) -> None:
    choose_file(console, name, content)
    console.page.get_by_role("button", name="Upload", exact=True).click()


def test_an_upload_reaches_100_percent_and_shows_its_preview_and_label_counts(
    console: Console,
    alice: httpx.Client,  # noqa: F811 - the fixture
) -> None:
    page = console.page
    rows = toy_rows(30, seed=5)
    console.sign_in(KEYS["alice"], "/ui/datasets")
    expect(page.get_by_role("heading", name="Datasets", exact=True)).to_be_visible()
    assert_linked(console, "/ui/datasets")
    assert console.axe_violations() == []
    # Every reading of the progress bar, to see it move through the upload's events.
    page.evaluate(
        """() => {
            window.__progress = [];
            const bar = document.getElementById("upload-progress");
            new MutationObserver(() => window.__progress.push(bar.value)).observe(
                document.getElementById("upload-percent"), { childList: true });
        }"""
    )
    upload_shown(console, "good.jsonl", jsonl(rows))

    expect(page.locator("#upload-status")).to_contain_text("Uploaded good.jsonl: 30 rows")
    expect(page.locator("#upload-percent")).to_have_text("100 %")
    readings = page.evaluate("window.__progress")
    assert readings[0] == 0 and readings[-1] == 100, readings
    assert readings == sorted(readings), readings

    dataset = alice.get("/datasets", params={"limit": 1}).json()["data"][0]
    assert dataset["name"] == "good.jsonl"
    preview = page.get_by_role("region", name="Preview of good.jsonl")
    expect(preview).to_be_visible()
    counts = preview.get_by_role("table", name="Rows per label").locator("tbody tr")
    expect(counts).to_have_count(len(dataset["label_counts"]))
    for label, n in dataset["label_counts"].items():
        expect(counts.filter(has_text=label).locator("td").first).to_have_text(str(n))
    shown = preview.locator("#preview-rows tbody tr")
    expect(shown).to_have_count(10)
    expect(shown.first.locator("td").nth(1)).to_have_text(rows[0]["text"])
    expect(shown.first.locator("td").nth(2)).to_have_text(rows[0]["label"])
    listed = page.locator(f'#datasets-body tr[data-dataset="{dataset["id"]}"]')
    expect(listed.locator("td").nth(4)).to_have_text("neg: 10 · neu: 10 · pos: 10")
    assert console.axe_violations() == []
    screenshot(console, "console-datasets.png")


def test_a_refused_upload_shows_the_error_at_its_row_and_field(
    console: Console, service_env: dict[str, str]
) -> None:
    page = console.page
    console.sign_in(KEYS["alice"], "/ui/datasets")
    bad = jsonl([{"text": "fine", "label": "a"}, {"text": "also fine", "label": "b"}])
    upload_shown(console, "bad.jsonl", bad + b'{"text": "no label here"}\n')
    refused = page.get_by_role("region", name="The upload was refused")
    expect(refused).to_be_visible()
    expect(refused.get_by_role("heading", name="Line 3 of bad.jsonl, field label")).to_be_visible()
    at_fault = refused.locator("tr.at-fault")
    expect(at_fault).to_have_count(1)
    expect(at_fault.locator("th")).to_have_text("label")
    expect(at_fault.locator("td").first).to_have_text("(missing)")
    expect(refused.locator("tr", has_text="no label here").locator("td").nth(1)).to_have_text("")
    expect(refused).to_contain_text("bad.jsonl, line 3, field 'label'")
    assert console.axe_violations() == []
    console.expect_errors("422")

    # A CSV's line counts its header: the empty text is on line 3.
    upload_shown(console, "bad.csv", b"text,label\nfine,a\n,b\n")
    expect(refused.get_by_role("heading", name="Line 3 of bad.csv, field text")).to_be_visible()
    expect(refused.locator("tr.at-fault th")).to_have_text("text")
    expect(refused.locator("tr.at-fault td").first).to_have_text('""')
    console.expect_errors("422")

    # An error of the file as a whole is shown beside the file field.
    upload_shown(console, "notes.txt", b"hello")
    expect(refused).to_be_hidden()
    expect(page.locator("#upload-file-error")).to_contain_text("unsupported file type")
    expect(page.get_by_label("Dataset file")).to_have_attribute("aria-invalid", "true")
    console.expect_errors("422")

    # A file over the upload limit is refused in the page, before a byte is sent: the API
    # would answer 413 before reading the body and close the connection, which the browser
    # reports as no more than a dropped connection.
    limit = int(service_env["LPFT_MAX_UPLOAD_BYTES"])
    line = jsonl([{"text": "a long enough review " * 20, "label": "a"}])
    big = (line * (limit // len(line) + 1))[: limit + 1]
    posts: list[str] = []
    page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
    upload_shown(console, "big.jsonl", big)
    size = f"{limit + 1:,} bytes ({(limit + 1) / 1024:.1f} KiB)"
    error = page.locator("#upload-file-error")
    expect(error).to_contain_text(f"big.jsonl is {size}")
    expect(error).to_contain_text(f"up to {limit:,} bytes ({limit / 1024:.1f} KiB)")
    expect(page.locator("#upload-status")).to_have_text(
        "Not sent: the file is over this server's upload limit."
    )
    expect(page.get_by_label("Dataset file")).to_have_attribute("aria-invalid", "true")
    assert posts == [], posts
    assert console.axe_violations() == []


def test_hostile_file_names_and_texts_run_nothing_and_the_dataset_is_deleted(
    console: Console,
    alice: httpx.Client,  # noqa: F811 - the fixture
) -> None:
    page = console.page
    name = f"{IMG} {NAME}.jsonl"
    rows = [
        {"text": f"{row['text']} {SCRIPT} {IMG}", "label": LABEL if row["label"] == "pos" else "x"}
        for row in toy_rows(6, seed=7, classes=2)
    ]
    console.sign_in(KEYS["alice"], "/ui/datasets")
    upload_shown(console, name, jsonl(rows))
    expect(page.locator("#upload-status")).to_contain_text("6 rows")
    stored = alice.get("/datasets", params={"limit": 1}).json()["data"][0]
    assert stored["name"] == name, stored
    expect(page.get_by_role("heading", name=f"Preview of {stored['name']}")).to_be_visible()
    expect(page.locator("#preview-rows tbody tr").first.locator("td").nth(1)).to_have_text(
        rows[0]["text"]
    )
    expect(page.locator("#label-counts")).to_contain_text(LABEL)
    row = page.locator(f'#datasets-body tr[data-dataset="{stored["id"]}"]')
    expect(row.locator("td").first).to_have_text(stored["name"])
    assert_inert(console)

    row.get_by_role("button", name=f"Delete {stored['name']}").click()
    row.get_by_role("button", name="Yes, delete").click()
    expect(row).to_have_count(0)
    expect(page.locator("#list-status")).to_have_text(f"Deleted {stored['name']}.")
    expect(page.get_by_role("region", name=re.compile("^Preview"))).to_be_hidden()
    assert alice.get(f"/datasets/{stored['id']}").status_code == 404
    assert_inert(console)


def test_the_new_job_form_shows_the_apis_bounds_and_errors_then_opens_the_job(
    console: Console,
    alice: httpx.Client,  # noqa: F811 - the fixture
    toy_splits: dict[str, str],  # noqa: F811 - the fixture
    tiny_model_dir: Path,
) -> None:
    page = console.page
    document = alice.get("/openapi.json").json()
    epochs = document["components"]["schemas"]["HyperparametersIn"]["properties"]["epochs"]
    console.sign_in(KEYS["alice"], f"/ui/new?train={toy_splits['train']}")
    expect(page.get_by_role("heading", name="New job")).to_be_visible()
    assert_linked(console, "/ui/new")
    field = page.get_by_label("epochs", exact=True)
    expect(field).to_have_attribute("min", str(int(epochs["minimum"])))
    expect(field).to_have_attribute("max", str(int(epochs["maximum"])))
    expect(page.locator("#f-hyperparameters-epochs-hint")).to_contain_text(
        f"default {epochs['default']} · ≥ {int(epochs['minimum'])} · ≤ {int(epochs['maximum'])}"
    )
    expect(page.get_by_label("train", exact=True)).to_have_value(toy_splits["train"])
    assert console.axe_violations() == []

    page.get_by_label("method", exact=True).select_option("lp_ft")
    page.get_by_label("model", exact=True).fill(str(tiny_model_dir))
    page.get_by_label("validation", exact=True).select_option(toy_splits["validation"])
    page.get_by_label("test", exact=True).select_option(toy_splits["test"])
    page.get_by_role("button", name="Add an eval set").click()
    page.get_by_label("name of eval set 1").fill("out of domain")
    page.get_by_label("dataset of eval set 1").select_option(toy_splits["test"])
    hyper = {**TINY_HYPERPARAMETERS, "device": "cpu"}
    for name, value in hyper.items():
        target = page.get_by_label(name, exact=True)
        if target.evaluate("e => e.tagName") == "SELECT":
            target.select_option(str(value))
        else:
            target.fill(str(value))
    field.fill(str(int(epochs["maximum"]) + 1))
    page.get_by_role("button", name="Start the job").click()

    error = page.locator("#f-hyperparameters-epochs-error")
    expect(error).to_contain_text("less than or equal to 100")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    eval_error = page.locator('[data-field="eval_sets.out of domain"] .field-error')
    expect(eval_error).not_to_be_empty()
    expect(page).to_have_url(re.compile(r"/ui/new\?"))
    assert console.axe_violations() == []
    screenshot(console, "console-new.png")
    console.expect_errors("422")

    field.fill(str(hyper["epochs"]))
    page.get_by_label("name of eval set 1").fill("ood")
    page.get_by_role("button", name="Start the job").click()
    expect(page).to_have_url(re.compile(r"/ui/jobs/job-[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[-1]
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()
    job = alice.get(f"/jobs/{job_id}").json()
    assert (job["kind"], job["method"], job["model"]) == ("finetune", "lp_ft", str(tiny_model_dir))
    assert job["dataset"] == toy_splits and job["eval_sets"] == {"ood": toy_splits["test"]}
    assert {k: job["hyperparameters"][k] for k in hyper} == hyper
    # Its training is no part of this test: the worker is left free for the tests after it.
    assert alice.post(f"/jobs/{job_id}/cancel").status_code == 200
