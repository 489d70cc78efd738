"""The console's pages in Chromium against the real stack: signing in and out, the jobs list
following a job submitted through the API, curves growing while a job trains, cancel and
delete, hostile strings shown as text, and axe-core clean on each page.

``LPFT_CONSOLE_SCREENSHOTS=DIR`` saves a screenshot of each page there (docs/ holds the
committed ones)."""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import Console, wait_until
from tests.conftest import toy_rows, write_jsonl
from tests.integration.conftest import (
    KEYS,
    TERMINAL,
    ApiServer,
    Worker,
    job_body,
    stack_env,
    tenant_client,
    upload,
    wait_for,
)
from tests.redis_fixtures import PrivateRedis

#: Strings a user controls, each of which would run if the page took it for HTML.
IMG = "<img src=x onerror=window.__xss=1>"
SCRIPT = "<script>window.__xss=2</script>"
LABEL = "<img src=y onerror=window.__xss=3>"
#: The API keeps a dataset name's last path segment, so a name holds no "</script>".
NAME = "<script>window.__xss=4 <svg onload=window.__xss=5>"
POLL_S = 2  # jobs.js's POLL_MS, its fallback when it cannot follow GET /events/jobs


@pytest.fixture
def alice(api_url: str) -> Iterator[httpx.Client]:
    with tenant_client(api_url, "alice") as client:
        yield client


@pytest.fixture(scope="module")
def toy_splits(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Alice's toy train, validation and test sets."""
    directory = tmp_path_factory.mktemp("console-toy")
    with tenant_client(api_url, "alice") as client:
        return {
            split: upload(client, write_jsonl(directory / f"{split}.jsonl", toy_rows(n, seed=s)))
            for s, (split, n) in enumerate((("train", 90), ("validation", 30), ("test", 30)))
        }


def submit(client: httpx.Client, dataset: dict[str, str], model: Path, **hyper: object) -> str:
    response = client.post("/jobs", json=job_body(dataset, model, **hyper))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def screenshot(console: Console, name: str) -> None:
    directory = os.environ.get("LPFT_CONSOLE_SCREENSHOTS")
    if directory:
        console.page.screenshot(path=str(Path(directory) / name), full_page=True)


def status_of(client: httpx.Client, job_id: str) -> str:
    return client.get(f"/jobs/{job_id}").json()["status"]


def test_sign_in_keeps_the_key_in_session_storage_and_sign_out_forgets_it(
    console: Console,
) -> None:
    page = console.page
    page.goto("/ui/")
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.get_by_role("heading", name="Jobs")).to_be_hidden()
    assert console.axe_violations() == []
    screenshot(console, "console-sign-in.png")

    console.sign_in("not-a-key")
    expect(page.get_by_role("status").filter(has_text="refused")).to_be_visible()
    console.expect_errors("401")

    console.sign_in(KEYS["alice"])
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    stored = page.evaluate(
        "({session: sessionStorage.getItem('lpft.apiKey'), local: localStorage.length,"
        " cookie: document.cookie})"
    )
    assert stored == {"session": KEYS["alice"], "local": 0, "cookie": ""}
    assert KEYS["alice"] not in page.url

    # A key the server stops taking (here: replaced behind the page's back) brings the form
    # back at the next call the page makes (the list follows the feed of changes and reads
    # nothing until one comes: a filter chosen is that call).
    page.evaluate("sessionStorage.setItem('lpft.apiKey', 'revoked')")
    page.get_by_label("Status").select_option("failed")
    expect(page.get_by_label("API key")).to_be_visible(timeout=5 * POLL_S * 1000)
    console.expect_errors("401")

    console.sign_in(KEYS["alice"])
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_label("API key")).to_be_visible()


def changes_between(client: httpx.Client, start: float, end: float) -> int:
    """How many changes of the tenant's jobs GET /events/jobs holds from ``start`` to ``end``
    (Unix seconds)."""
    count, after = 0, None
    while True:
        params = {"limit": 1000, **({"after": after} if after else {})}
        page = client.get("/events/jobs", params=params).json()
        count += sum(start <= change["at"] <= end for change in page["data"])
        if not page["has_more"]:
            return count
        after = page["last_id"]


def test_the_jobs_list_shows_a_job_submitted_through_the_api_without_a_reload(
    console: Console, alice: httpx.Client, toy_splits: dict[str, str], tiny_model_dir: Path
) -> None:
    """The list follows GET /events/jobs: it reads itself again when a job changes, and only
    then. Over a quiet window of three poll periods it reads no more often than the tenant's
    jobs changed (a 2 s poll would read three times), and it says it is live throughout."""
    page = console.page
    reads: list[float] = []
    page.on(
        "request",
        lambda r: (
            r.method == "GET" and urlparse(r.url).path == "/jobs" and reads.append(time.time())
        ),
    )
    console.sign_in(KEYS["alice"])
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    page.evaluate("window.__sameDocument = true")
    updated = page.locator("#updated")
    expect(updated).to_contain_text("live, as jobs change")
    quiet_from = time.time()
    page.wait_for_timeout(3 * POLL_S * 1000)
    quiet_to = time.time()
    read_while_quiet = sum(quiet_from <= t <= quiet_to for t in reads)
    assert read_while_quiet <= changes_between(alice, quiet_from - 1, quiet_to), reads

    job_id = submit(alice, toy_splits, tiny_model_dir)
    row = page.locator(f'#jobs-body tr[data-job="{job_id}"]')
    cells = row.locator("td")

    def shown_status() -> str | None:
        return cells.nth(4).text_content() if row.count() else None

    wait_until(
        lambda: shown_status() == "succeeded",
        f"{job_id} to show as succeeded in the list",
        hopeless=lambda: (
            f"the job is {s} in the API, {shown_status()} in the list"
            if (s := status_of(alice, job_id)) in TERMINAL - {"succeeded"}
            else None
        ),
        timeout=300,
        state=lambda: f"(the job is {status_of(alice, job_id)}, {shown_status()} in the list)",
    )
    expect(cells.nth(0)).to_have_text(job_id)
    expect(cells.nth(1)).to_have_text("finetune")
    expect(cells.nth(2)).to_have_text("lp_ft")
    expect(cells.nth(3)).to_have_text("train.jsonl")
    # Test accuracy and ECE after calibration, from the job's metrics.
    metrics = alice.get(f"/jobs/{job_id}/metrics").json()["test"]["calibrated"]
    expect(cells.nth(7)).to_have_text(f"{metrics['accuracy']:.3f}")
    expect(cells.nth(8)).to_have_text(f"{metrics['ece']:.3f}")
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    expect(updated).to_contain_text("live, as jobs change")
    assert console.axe_violations() == []
    screenshot(console, "console-jobs.png")

    page.get_by_label("Status").select_option("succeeded")
    expect(page).to_have_url(re.compile(r"\?status=succeeded$"))
    statuses = page.locator("#jobs-body tr[data-job] td:nth-child(5)")
    expect(statuses.first).to_have_text("succeeded")
    assert set(statuses.all_text_contents()) == {"succeeded"}
    page.get_by_label("Kind").select_option("compare")
    expect(page.locator("#jobs-body")).to_have_text("No jobs matching these filters.")

    page.get_by_label("Kind").select_option("")
    page.get_by_label("Status").select_option("")
    page.get_by_role("link", name=job_id).click()
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()


def test_curves_grow_while_the_job_trains(
    console: Console, alice: httpx.Client, toy_splits: dict[str, str], tiny_model_dir: Path
) -> None:
    """The page is opened before training starts; the loss curve gains points while the API
    still says running, so they came over the live stream, not from a finished job."""
    page = console.page
    job_id = submit(alice, toy_splits, tiny_model_dir, epochs=20)
    console.sign_in(KEYS["alice"], f"/ui/jobs/{job_id}")
    expect(page.get_by_role("heading", name=f"Job {job_id}")).to_be_visible()
    loss = page.locator("figure.chart").first

    def points() -> int:
        return int(loss.get_attribute("data-points") or 0)

    def ended() -> str | None:
        status = status_of(alice, job_id)
        if status in TERMINAL:
            return f"the job is {status} already, with {points()} points drawn"
        return None

    first = wait_until(lambda: points() or None, "the first loss points", ended, timeout=300)
    wait_until(lambda: points() > first, f"more than {first} loss points", ended, timeout=120)
    expect(page.locator("#progress")).to_contain_text("Stage ft: step")
    assert console.axe_violations() == []

    wait_for(alice, job_id, {"succeeded"}, timeout=300)
    steps = len(alice.get(f"/jobs/{job_id}/metrics").json()["history"])
    wait_until(lambda: points() == steps, f"all {steps} loss points", timeout=30)
    validation = page.locator("figure.chart").nth(1)
    expect(validation).to_have_attribute("data-points", "20")
    expect(page.get_by_role("table", name=re.compile("temperature scaling"))).to_be_visible()
    screenshot(console, "console-job.png")
    page.get_by_text("Training loss per step: table of the points drawn").click()
    expect(page.locator("details table").first.locator("tbody tr")).to_have_count(steps)


def test_a_queued_job_is_cancelled_then_deleted_from_its_page(
    console: Console, alice: httpx.Client, toy_splits: dict[str, str], tiny_model_dir: Path
) -> None:
    page = console.page
    # device auto goes to the gpu queue, which no worker of the session's stack consumes.
    job_id = submit(alice, toy_splits, tiny_model_dir, device="auto")
    console.sign_in(KEYS["alice"], f"/ui/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("queued")
    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-status")).to_have_text("cancelled")
    assert status_of(alice, job_id) == "cancelled"
    page.get_by_role("button", name="Delete job").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page).to_have_url(re.compile(r"/ui/$"))
    assert alice.get(f"/jobs/{job_id}").status_code == 404


@pytest.fixture(scope="module")
def hostile_job(
    api_url: str, cpu_worker: Worker, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> dict:
    """A succeeded job whose dataset names, label and texts are markup."""
    directory = tmp_path_factory.mktemp("console-hostile")
    rows = {
        split: [
            {
                "text": f"{row['text']} {SCRIPT}",
                "label": LABEL if row["label"] == "pos" else row["label"],
            }
            for row in toy_rows(n, seed=s)
        ]
        for s, (split, n) in enumerate((("train", 90), ("validation", 30), ("test", 30)))
    }
    with tenant_client(api_url, "alice") as client:
        dataset = {}
        # The train split is a file whose name is markup; the others JSON records so named.
        path = write_jsonl(directory / "train.jsonl", rows.pop("train"))
        with path.open("rb") as handle:
            files = {"file": (f"{IMG}.jsonl", handle)}
            response = client.post("/datasets", files=files)
        assert response.status_code == 201, response.text
        dataset["train"] = response.json()["id"]
        for split, split_rows in rows.items():
            body = {"name": f"{NAME} {split}", "records": split_rows}
            response = client.post("/datasets", json=body)
            assert response.status_code == 201, response.text
            dataset[split] = response.json()["id"]
        job_id = submit(client, dataset, tiny_model_dir)
        job = wait_for(client, job_id, {"succeeded"}, timeout=300)
        names = {s: client.get(f"/datasets/{i}").json()["name"] for s, i in dataset.items()}
    assert "<img" in names["train"] and "<script>" in names["validation"], names
    return {**job, "names": names}


def assert_inert(console: Console) -> None:
    assert console.page.evaluate("window.__xss") is None, "a hostile string ran"
    # The report's pictures (figure.plot-image, fetched with the key) are the page's own.
    assert console.page.locator("main img:not(figure.plot-image > img), main script").count() == 0


def test_hostile_names_and_labels_are_shown_as_text_and_run_nothing(
    console: Console, hostile_job: dict
) -> None:
    page = console.page
    job_id, names = hostile_job["id"], hostile_job["names"]
    console.sign_in(KEYS["alice"])
    dataset_cell = page.locator(f'#jobs-body tr[data-job="{job_id}"] td').nth(3)
    expect(dataset_cell).to_have_text(names["train"])
    assert_inert(console)

    page.get_by_role("link", name=job_id).click()
    facts = page.locator("#job-facts")
    for split, name in names.items():
        expect(facts).to_contain_text(f"{split}: {name}")
    expect(facts).to_contain_text(LABEL)  # the labels, once the metrics are read
    expect(page.get_by_role("table", name=re.compile("temperature scaling"))).to_be_visible()
    assert_inert(console)
    assert console.axe_violations() == []


def test_a_long_curve_is_drawn_from_at_most_a_thousand_points_keeping_its_spikes(
    console: Console,
) -> None:
    """10,000 steps of loss with one spike and one dip: the chart gets at most MAX_POINTS
    points, in step order, the spike and the dip among them."""
    page = console.page
    page.goto("/ui/")
    drawn = page.evaluate(
        """async () => {
            const { downsample, MAX_POINTS } = await import("/ui/assets/js/curves.js");
            const xs = Array.from({ length: 10000 }, (_, i) => i + 1);
            const loss = xs.map((x) => 1 / Math.sqrt(x));
            loss[4321] = 9;
            loss[7777] = -1;
            const [dx, dy] = downsample(xs, [loss]);
            return { max: MAX_POINTS, xs: dx, ys: dy };
        }"""
    )
    assert len(drawn["xs"]) <= drawn["max"] == 1000
    assert drawn["xs"] == sorted(drawn["xs"]) and len(set(drawn["xs"])) == len(drawn["xs"])
    assert 9 in drawn["ys"] and -1 in drawn["ys"]
    assert drawn["xs"][0] == 1


def test_the_learned_nothing_warnings_are_shown_above_the_job(
    console: Console, alice: httpx.Client, toy_splits: dict[str, str], tiny_model_dir: Path
) -> None:
    """A test split whose labels are shuffled away from its texts: the model scores about
    chance there, and the job's metrics warn not_better_than_majority."""
    rows = toy_rows(30, seed=3)
    labels = [row["label"] for row in rows]
    random.Random(0).shuffle(labels)
    shuffled = [{**row, "label": label} for row, label in zip(rows, labels, strict=True)]
    response = alice.post("/datasets", json={"name": "shuffled.jsonl", "records": shuffled})
    assert response.status_code == 201, response.text
    job_id = submit(alice, {**toy_splits, "test": response.json()["id"]}, tiny_model_dir)
    wait_for(alice, job_id, {"succeeded"}, timeout=300)
    codes = [w["code"] for w in alice.get(f"/jobs/{job_id}/metrics").json()["warnings"]]
    assert "not_better_than_majority" in codes, codes

    console.sign_in(KEYS["alice"], f"/ui/jobs/{job_id}")
    warnings = console.page.get_by_role("region", name=re.compile("learned nothing"))
    expect(warnings).to_be_visible()
    for code in codes:
        expect(warnings).to_contain_text(code)
    assert console.axe_violations() == []


@pytest.fixture(scope="module")
def open_api_url(
    redis_server: PrivateRedis, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[str]:
    """An API of its own in open mode (no keys; loopback clients are tenant default)."""
    directory = tmp_path_factory.mktemp("open-mode")
    env = stack_env(redis_server.new_database(), directory / "artifacts", tiny_model_dir.parent)
    env.pop("LPFT_API_KEYS")
    server = ApiServer({**env, "LPFT_OPEN_MODE": "true"}, directory / "api.log")
    yield server.url
    server.stop()


def test_open_mode_needs_no_sign_in(browser: Browser, open_api_url: str) -> None:
    context = browser.new_context(base_url=open_api_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto("/ui/")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("#jobs-body")).to_have_text("No jobs.")
    expect(page.get_by_label("API key")).to_be_hidden()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    context.close()
    assert errors == []


def test_the_jobs_list_falls_back_to_polling_when_the_feed_is_refused(console: Console) -> None:
    page = console.page
    page.route(
        "**/events/jobs",
        lambda route: route.fulfill(
            status=503,
            content_type="application/problem+json",
            body='{"detail": "the feed is down for this test"}',
        ),
    )
    console.sign_in(KEYS["alice"])
    expect(page.locator("#updated")).to_contain_text(
        f"refreshed every {POLL_S} s (live updates are off: the feed is down for this test)"
    )
    expect(page.locator("#poll-error")).to_have_text("")
    console.expect_errors("503")
