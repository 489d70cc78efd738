"""The console's results pages in Chromium against the real stack: a prediction in
/ui/predict equal to what /predict returns for the same text (both scalings, the conformal
set at two alphas, abstention, a sentence pair), a hostile text inert, /ui/compare's table
of methods by evaluation set for a finetune job and a comparison picked on the jobs list, a
finished job's findings (reliability diagrams, head norm, feature change, NTK, seeds, log,
report, recalibrate) and a comparison's own page, axe-core clean on each.

Three tiny jobs serve every test: a finetune job with two seeds and an eval set, a
comparison of lp and lp_ft, and a finetune job on sentence pairs.
``LPFT_CONSOLE_SCREENSHOTS=DIR`` saves a screenshot of each page there (docs/ holds them)."""

from __future__ import annotations

import html
import re
import tarfile
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Console
from tests.browser.test_console import assert_inert, screenshot
from tests.conftest import TINY_HYPERPARAMETERS, toy_rows, write_jsonl
from tests.integration.conftest import (
    KEYS,
    Worker,
    job_body,
    tenant_client,
    upload,
    wait_for,
)

TEXT = "a wonderful, delightful film that I loved"
#: Markup that would run if the page took the text for HTML.
HOSTILE = "<img src=x onerror=window.__xss=1> <script>window.__xss=2</script> great"


@pytest.fixture(scope="module")
def jobs(
    api_url: str, cpu_worker: Worker, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> dict[str, dict]:
    """Alice's three finished jobs, submitted together so that the worker trains them back
    to back: ``finetune`` (seeds 0 and 1, eval set ``shifted``), ``compare`` (lp and lp_ft,
    the same sets, an NTK of 8 samples) and ``pair`` (sentence pairs, one epoch)."""
    directory = tmp_path_factory.mktemp("console-results")
    sizes = (("train", 60), ("validation", 30), ("test", 30))
    with tenant_client(api_url, "alice") as alice:

        def splits(pair: bool) -> dict[str, str]:
            return {
                split: upload(
                    alice,
                    write_jsonl(
                        directory / f"{'pair-' if pair else ''}{split}.jsonl",
                        toy_rows(n, seed=s, pair=pair),
                    ),
                )
                for s, (split, n) in enumerate(sizes)
            }

        single, pairs = splits(False), splits(True)
        shifted = {"shifted": single["validation"]}
        bodies = {
            "finetune": {**job_body(single, tiny_model_dir), "eval_sets": shifted, "seeds": [0, 1]},
            "compare": {
                "kind": "compare",
                "methods": ["lp", "lp_ft"],
                "dataset": single,
                "eval_sets": shifted,
                "model": str(tiny_model_dir),
                "hyperparameters": {**TINY_HYPERPARAMETERS, "device": "cpu"},
                "ntk_samples": 8,
            },
            "pair": job_body(pairs, tiny_model_dir, epochs=1),
        }
        ids = {}
        for name, body in bodies.items():
            response = alice.post("/jobs", json=body)
            assert response.status_code == 202, response.text
            ids[name] = response.json()["id"]
        found = {}
        for name, job_id in ids.items():
            job = wait_for(alice, job_id, {"succeeded"}, timeout=300)
            found[name] = {**job, "metrics": alice.get(f"/jobs/{job_id}/metrics").json()}
    return found


@pytest.fixture
def alice(api_url: str) -> httpx.Client:
    with tenant_client(api_url, "alice") as client:
        yield client


def predicted(client: httpx.Client, job_id: str, text: str, **options: object) -> dict:
    """What /predict answers for one text."""
    response = client.post(
        "/predict", json={"job_id": job_id, "inputs": [{"text": text}], **options}
    )
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def predict_in_page(page: Page, text: str, alpha: str, min_confidence: str = "") -> None:
    """Fill the form and predict; returns once the page shows the answer to this alpha."""
    page.get_by_label("Text", exact=True).fill(text)
    page.get_by_label("Miscoverage alpha").fill(alpha)
    page.get_by_label("Abstain below confidence").fill(min_confidence)
    page.get_by_role("button", name="Predict").click()
    expect(page.locator("#prediction-set")).to_contain_text(f"alpha {alpha} ")


def shown_probabilities(page: Page) -> dict[str, dict[str, dict[str, str]]]:
    """The table's numbers and the bars' exact values, per label and scaling."""
    table = {}
    for row in page.locator("#probabilities tbody tr").all():
        cells = row.locator("td").all_text_contents()
        table[row.get_attribute("data-label")] = {"calibrated": cells[0], "uncalibrated": cells[1]}
    bars: dict[str, dict[str, str]] = {}
    for bar in page.locator("#bars rect[data-label]").all():
        bars.setdefault(bar.get_attribute("data-label"), {})[bar.get_attribute("data-kind")] = (
            bar.get_attribute("data-probability")
        )
    return {"table": table, "bars": bars}


def test_a_prediction_in_the_page_is_what_predict_returns(
    console: Console, alice: httpx.Client, jobs: dict[str, dict]
) -> None:
    page = console.page
    job_id = jobs["finetune"]["id"]
    console.sign_in(KEYS["alice"], f"/ui/predict?job={job_id}")
    expect(page.get_by_role("heading", name="Predict")).to_be_visible()
    expect(page.get_by_label("Text pair (the second sentence)")).to_be_hidden()
    assert console.axe_violations() == []

    for alpha in ("0.1", "0.5"):
        predict_in_page(page, TEXT, alpha)
        calibrated = predicted(alice, job_id, TEXT, conformal={"alpha": float(alpha)})
        uncalibrated = predicted(alice, job_id, TEXT, calibrated=False)
        shown = shown_probabilities(page)
        for label, p in calibrated["probabilities"].items():
            q = uncalibrated["probabilities"][label]
            assert shown["table"][label] == {"calibrated": f"{p:.4f}", "uncalibrated": f"{q:.4f}"}
            # The page's request and this one may be batched with different neighbours,
            # whose padding moves a probability in its seventh significant digit.
            assert {k: float(v) for k, v in shown["bars"][label].items()} == pytest.approx(
                {"calibrated": p, "uncalibrated": q}, rel=1e-4, abs=1e-9
            )
        expect(page.locator("#label")).to_have_text(str(calibrated["label"]))
        members = ", ".join(map(str, calibrated["prediction_set"]))
        expect(page.locator("#set-members")).to_have_text(
            members or "empty (no label is likely enough)"
        )
        in_set = page.locator("#probabilities tbody tr td:nth-child(4)").all_text_contents()
        members_of = calibrated["prediction_set"]
        assert in_set == ["yes" if x in members_of else "no" for x in calibrated["probabilities"]]
    assert console.axe_violations() == []
    screenshot(console, "console-predict.png")

    # Above every probability the model gives, it abstains, as /predict does.
    predict_in_page(page, TEXT, "0.1", min_confidence="1")
    assert predicted(alice, job_id, TEXT, min_confidence=1)["abstained"] is True
    expect(page.locator("#verdict")).to_contain_text("Abstained")


def test_a_hostile_text_is_shown_as_text_and_runs_nothing(
    console: Console, jobs: dict[str, dict]
) -> None:
    page = console.page
    console.sign_in(KEYS["alice"], f"/ui/predict?job={jobs['finetune']['id']}")
    predict_in_page(page, HOSTILE, "0.1")
    expect(page.locator("#asked-text")).to_have_text(HOSTILE)
    assert_inert(console)


def test_a_pair_job_asks_for_the_text_pair(
    console: Console, alice: httpx.Client, jobs: dict[str, dict]
) -> None:
    page = console.page
    job_id = jobs["pair"]["id"]
    console.sign_in(KEYS["alice"], f"/ui/predict?job={job_id}")
    pair = page.get_by_label("Text pair (the second sentence)")
    expect(pair).to_be_visible()
    pair.fill("and the second sentence agrees")
    predict_in_page(page, TEXT, "0.2")
    expect(page.locator("#asked-pair")).to_have_text("and the second sentence agrees")
    response = alice.post(
        "/predict",
        json={
            "job_id": job_id,
            "inputs": [{"text": TEXT, "text_pair": "and the second sentence agrees"}],
        },
    )
    label = response.json()["predictions"][0]["label"]
    expect(page.locator("#label")).to_have_text(str(label))
    assert console.axe_violations() == []


def comparison_rows(page: Page) -> list[list[str]]:
    rows = page.locator("table.comparison tbody tr")
    expect(rows.first).to_be_visible()
    return [
        [row.locator("th").text_content(), *row.locator("td").all_text_contents()]
        for row in rows.all()
    ]


def expected_rows(job: dict) -> list[list[str]]:
    """The comparison table's rows for one job, from its metrics: method, job, T, then per
    set (test, shifted) accuracy, ECE before and after scaling, Diff(F)."""
    document = job["metrics"]
    methods = document.get("methods") or {document.get("method"): document}
    rows = []
    for method, metrics in methods.items():
        row = [method, job["id"], f"{metrics['temperature']:.3f}"]
        for name in ("test", "shifted"):
            found = metrics["test"] if name == "test" else metrics["eval_sets"][name]
            row += [
                f"{found['calibrated']['accuracy']:.4f}",
                f"{found['uncalibrated']['ece']:.4f}",
                f"{found['calibrated']['ece']:.4f}",
                f"{metrics['features'][name]['difference']:.4f}",
            ]
        rows.append(row)
    return rows


def test_jobs_picked_on_the_list_are_compared_by_eval_set(
    console: Console, jobs: dict[str, dict]
) -> None:
    page = console.page
    finetune, comparison = jobs["finetune"], jobs["compare"]
    console.sign_in(KEYS["alice"])
    for job in (finetune, comparison):
        page.get_by_label(f"Compare {job['id']}").check()
    page.get_by_role("button", name="Compare selected").click()
    expect(page).to_have_url(re.compile(rf"/ui/compare\?jobs={finetune['id']},{comparison['id']}$"))
    assert comparison_rows(page) == expected_rows(finetune) + expected_rows(comparison)
    header = page.locator("table.comparison thead").text_content()
    assert "test (in distribution)" in header and "shifted (eval set)" in header
    charts = page.locator("figure.chart")
    expect(charts).to_have_count(2)
    # Every run's steps on one axis: lp has none, the two lp_ft runs theirs.
    lp_ft = comparison["metrics"]["methods"]["lp_ft"]
    steps = max(len(finetune["metrics"]["history"]), len(lp_ft["history"]))
    assert int(charts.first.get_attribute("data-points")) == steps
    assert console.axe_violations() == []
    screenshot(console, "console-compare.png")


def expect_picture(page: Page, name: str) -> None:
    """The report picture ``name`` is on the page, fetched with the key and decoded."""
    image = page.locator(f'figure[data-plot="{name}"] img')
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0"), name


def test_a_finished_job_shows_its_findings_and_actions(
    console: Console, alice: httpx.Client, jobs: dict[str, dict]
) -> None:
    page = console.page
    job, metrics = jobs["finetune"], jobs["finetune"]["metrics"]
    route = f"/jobs/{job['id']}"
    console.sign_in(KEYS["alice"], f"/ui{route}")
    expect(page.get_by_role("heading", name=f"Job {job['id']}")).to_be_visible()
    expect_picture(page, "reliability")
    reliability = page.get_by_role("region", name="Reliability diagrams")
    expect(reliability.locator("details")).to_have_count(2)

    norms = page.locator("#head-norm tbody td").all_text_contents()
    head = metrics["head_norm"]
    assert norms == [f"{head[k]:.4f}" for k in ("initial", "after_lp", "final")]
    head_curve = page.get_by_role("region", name="Head norm").locator("figure.chart")
    expect(head_curve).to_have_attribute("data-points", str(len(metrics["history"])))

    features = page.locator("#feature-change tbody tr")
    expect(features).to_have_count(2)
    diff = features.filter(has_text="shifted").locator("td").nth(1)
    expect(diff).to_have_text(f"{metrics['features']['shifted']['difference']:.4f}")
    expect(page.get_by_role("region", name="NTK")).to_contain_text("compare job measures")

    accuracy = metrics["summary"]["test"]["calibrated"]["accuracy"]
    seeds = page.locator("#seeds")
    expect(seeds).to_contain_text("Over seeds 0, 1")
    expect(seeds).to_contain_text(f"{accuracy['mean']:.4f} ± {accuracy['std']:.4f}")
    expect(page.locator("table.log tbody tr").first).to_be_visible()
    expect(page.get_by_role("link", name="Predict with this model")).to_have_attribute(
        "href", f"/ui/predict?job={job['id']}"
    )
    assert console.axe_violations() == []
    screenshot(console, "console-job-findings.png")

    with page.expect_download() as report:
        page.get_by_role("button", name="Download the report").click()
    assert report.value.suggested_filename == f"{job['id']}-report.html"
    assert "<html" in Path(report.value.path()).read_text()

    # Opened in a new tab from a blob: URL (a link would go without the key), styled and
    # its pictures shown under the console's CSP, which the blob: document keeps.
    title = html.unescape(re.search(r"<title>(.*?)</title>", alice.get(f"{route}/report").text)[1])
    tab_errors: list[str] = []
    page.context.on(
        "page",
        lambda tab: tab.on("console", lambda m: m.type == "error" and tab_errors.append(m.text)),
    )
    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Open the report").click()
    tab = opened.value
    expect(tab).to_have_title(title)
    assert tab.url.startswith("blob:"), tab.url
    expect(tab.get_by_role("heading", level=1)).to_have_text(title)
    pictures = tab.locator("figure img")
    expect(pictures.first).to_be_visible()
    assert pictures.evaluate_all("all => all.every(i => i.complete && i.naturalWidth > 0)")
    assert "system-ui" in tab.evaluate("getComputedStyle(document.body).fontFamily")
    expect(page.locator("#download-result")).to_have_text("Opened the report in a new tab.")
    tab.close()
    assert tab_errors == [], tab_errors

    # The export is built off the request: the page says so while it follows the 202s,
    # then saves the archive, fetched with the key.
    page.get_by_label("Export format").select_option("hf")
    with page.expect_download(timeout=180_000) as export:
        page.get_by_role("button", name="Download the export").click()
        expect(page.locator("#download-result")).to_contain_text(
            "The API is building the hf export; asking again in 2 s"
        )
    assert export.value.suggested_filename == f"{job['id']}-hf.tar.gz"
    archive = Path(export.value.path())
    assert archive.stat().st_size > 0
    with tarfile.open(archive) as members:
        assert "./model.safetensors" in members.getnames()
    expect(page.locator("#download-result")).to_have_text(
        f"Downloaded the hf export ({job['id']}-hf.tar.gz)."
    )

    page.get_by_label("Recalibrate on").select_option(job["dataset"]["validation"])
    page.get_by_role("button", name="Recalibrate").click()
    link = page.locator("#download-result a")
    expect(link).to_be_visible()
    recalibration = wait_for(alice, link.text_content(), {"succeeded"}, timeout=120)
    assert recalibration["kind"] == "recalibrate"


def test_a_comparisons_own_page_shows_its_methods(console: Console, jobs: dict[str, dict]) -> None:
    page = console.page
    job = jobs["compare"]
    console.sign_in(KEYS["alice"], f"/ui/jobs/{job['id']}")
    expect(page.get_by_role("heading", name=f"Job {job['id']}")).to_be_visible()
    assert comparison_rows(page) == expected_rows(job)
    for name in ("comparison", "lp-reliability", "lp_ft-reliability"):
        expect_picture(page, name)
    ntk = job["metrics"]["methods"]["lp_ft"]["ntk"]
    expect(page.locator("table.ntk caption")).to_contain_text(f"FT ratio {ntk['ft_ratio']:.4f}")
    expect(page.get_by_role("link", name="Open in the compare view")).to_have_attribute(
        "href", f"/ui/compare?jobs={job['id']}"
    )
    assert console.axe_violations() == []
