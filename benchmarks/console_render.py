"""Issue 26: the first render of each /ui page on the local stack with 1,000 jobs (paged), in
Chromium through Playwright. Target: every page under 1 s.

    python benchmarks/console_render.py               # 1,000 jobs, 5 loads a page
    python benchmarks/console_render.py --jobs 1000 --loads 5 --no-record

The stack is the benchmarks' own (a private redis-server, an API and one worker, _stack.py).
Two real jobs are trained on a 2-layer, 32-wide BERT (random weights, the real uncased
vocabulary) over 200 SST-2 rows, so that the job, compare and predict pages draw what a real
job has: curves, metrics before and after temperature scaling, reliability diagrams, a
served model. The other jobs (998 by default) are written straight into the job store as
records (``JobStore.index_jobs``, as a restored store holds them; no training): finished
finetune jobs, a tenth failed, a twentieth cancelled, on the same dataset, older than the two.

A load is one navigation in a fresh browser context (an empty HTTP cache, the key already in
sessionStorage, as after sign-in), timed from the navigation's start (``performance.now()``,
whose origin is the navigation) to the first animation frame at which the page's content is
in the DOM: the jobs list's rows and its "Updated" line; a job's metrics table and its
curves' points; the
comparison's table; the datasets' rows; the new-job form's hyperparameter fields; the predict
form with its model. Every request the page makes for that content is inside the figure.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import redis
from _results import append
from _stack import API_KEY, private_redis, running_stack
from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
TARGET_S = 1.0
CHROMIUM = "/usr/bin/chromium"
HYPER = {
    "epochs": 2,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "max_length": 32,
    "pooling": "mean",
    "device": "cpu",
}

#: Each page: its path (``{job}``, ``{other}``: the two trained jobs), and the condition (a JS
#: expression) that says its content is rendered.
PAGES = {
    "jobs list": (
        "/ui/",
        "document.querySelectorAll('#jobs-body tr[data-job]').length === 20"
        " && document.getElementById('updated').textContent.startsWith('Updated')",
    ),
    "jobs list, status=failed": (
        "/ui/?status=failed",
        "document.querySelectorAll('#jobs-body tr[data-job]').length === 20",
    ),
    "job": (
        "/ui/jobs/{job}",
        "document.querySelector('#metrics table') !== null"
        " && document.querySelector('#curves table tbody tr') !== null",
    ),
    "compare": (
        "/ui/compare?jobs={job},{other}",
        "document.querySelector('#comparison table tbody tr') !== null",
    ),
    "datasets": ("/ui/datasets", "document.querySelector('#datasets-body tr') !== null"),
    "new job": ("/ui/new", "document.querySelector('#hyper-fields input') !== null"),
    "predict": (
        "/ui/predict?job={job}",
        "document.getElementById('model').textContent.trim() !== ''"
        " && !document.getElementById('predict-form').hidden",
    ),
}


def tiny_model(directory: Path) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the real uncased WordPiece vocab."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from lpft_core.model.classifier import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(None))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as handle:
        response = client.post("/datasets", files={"file": (path.name, handle)})
    response.raise_for_status()
    return response.json()["id"]


def train(client: httpx.Client, body: dict, timeout_s: float = 600) -> str:
    """A real job, until it succeeded."""
    response = client.post("/jobs", json=body)
    response.raise_for_status()
    job_id = response.json()["id"]
    deadline = time.monotonic() + timeout_s
    while (job := client.get(f"/jobs/{job_id}").json())["status"] not in {
        "succeeded",
        "failed",
        "cancelled",
    }:
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {job['status']} after {timeout_s} s")
        time.sleep(0.2)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('error')}")
    return job_id


def records(count: int, dataset: dict[str, str], model: str, before: float) -> list[JobRecord]:
    """``count`` finished jobs, one a minute, the newest a minute before ``before``."""
    rng = random.Random(0)
    jobs = []
    for n in range(count):
        status = JobStatus.SUCCEEDED
        if n % 10 == 3:
            status = JobStatus.FAILED
        elif n % 20 == 7:
            status = JobStatus.CANCELLED
        created = before - 60.0 * (count - n)
        started = created + rng.uniform(0.5, 5)
        jobs.append(
            JobRecord(
                id=f"job-bench-{n:06d}",
                tenant="bench",
                status=status,
                method="lp_ft",
                model=model,
                dataset=dataset,
                hyperparameters=HYPER,
                queue="cpu",
                spec={},
                created_at=created,
                started_at=started,
                finished_at=started + rng.uniform(10, 600),
            )
        )
    return jobs


def first_render(browser, base: str, path: str, ready: str) -> float:
    """Seconds from the navigation's start to the first frame at which ``ready`` holds."""
    context = browser.new_context(base_url=base)
    context.add_init_script(f"sessionStorage.setItem('lpft.apiKey', {json.dumps(API_KEY)})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(path, wait_until="commit")
        handle = page.wait_for_function(
            f"() => ({ready}) && performance.now()", polling="raf", timeout=30_000
        )
        seconds = handle.json_value() / 1000
    finally:
        context.close()
    if errors:
        raise RuntimeError(f"{path}: {errors}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the store, in all")
    parser.add_argument("--loads", type=int, default=5, help="fresh loads of each page")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="lpft-console-render-") as tmp:
        root = Path(tmp)
        for name in ("redis", "models", "data"):
            (root / name).mkdir()
        model = tiny_model(root / "models" / "tiny")
        lines = (DATA / "train.jsonl").read_text().splitlines()
        (root / "data" / "train.jsonl").write_text("\n".join(lines[:200]) + "\n")
        (root / "data" / "validation.jsonl").write_text("\n".join(lines[200:300]) + "\n")
        (root / "data" / "test.jsonl").write_text("\n".join(lines[300:400]) + "\n")
        with private_redis(root / "redis") as redis_url:
            env = {
                "LPFT_REDIS_URL": f"{redis_url}/0",
                "LPFT_ARTIFACTS_DIR": str(root / "artifacts"),
                "LPFT_MODELS_DIR": str(root / "models"),
                "LPFT_PREDICT_BACKEND": "torch",
            }
            with running_stack(root / "stack", env) as stack, stack.client() as client:
                dataset = {
                    s: upload(client, root / "data" / f"{s}.jsonl")
                    for s in ("train", "validation", "test")
                }
                stores = Stores.over(
                    redis.Redis.from_url(env["LPFT_REDIS_URL"], decode_responses=True),
                    root / "artifacts",
                )
                cheap = records(args.jobs - 2, dataset, str(model), time.time())
                stores.jobs.index_jobs(cheap)
                body = {
                    "method": "lp_ft",
                    "dataset": dataset,
                    "model": str(model),
                    "hyperparameters": HYPER,
                    "seed": 0,
                }
                trained_at = time.perf_counter()
                job = train(client, body)
                other = train(client, {**body, "method": "ft"})
                train_s = time.perf_counter() - trained_at
                listed = client.get("/jobs", params={"limit": 100}).json()
                print(
                    f"{args.jobs} jobs ({len(listed['data'])} on a first page of 100); two "
                    f"trained in {train_s:.0f} s",
                    flush=True,
                )
                rows = []
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM)
                    first_render(browser, stack.url, "/ui/", PAGES["jobs list"][1])  # warm-up
                    for name, (path, ready) in PAGES.items():
                        url = path.format(job=job, other=other)
                        times = [
                            first_render(browser, stack.url, url, ready) for _ in range(args.loads)
                        ]
                        rows.append((name, url.replace(job, "{a}").replace(other, "{b}"), times))
                        print(f"{name}: {', '.join(f'{t:.3f}' for t in times)} s", flush=True)
                    browser.close()

    table = render(rows, args.loads)
    print(table)
    if args.no_record:
        return
    worst = max(max(t) for _, _, t in rows)
    append(
        f"Issue 26: first render of each /ui page with {args.jobs} jobs (console_render.py)",
        table,
        f"Each page loaded {args.loads} times, each in a fresh Chromium context (empty cache), "
        "timed from the navigation's start to the first frame with its content (module "
        f"docstring). Target: under {TARGET_S:.0f} s. Slowest load: {worst:.3f} s "
        f"({'met' if worst < TARGET_S else 'NOT met'}). Chromium "
        f"{CHROMIUM}, headless; API, worker, Redis and browser on the same machine.",
    )


def render(rows: list[tuple[str, str, list[float]]], loads: int) -> str:
    lines = [
        f"| page | path | median of {loads} (s) | slowest (s) | under {TARGET_S:.0f} s |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for name, path, times in rows:
        verdict = "yes" if max(times) < TARGET_S else "no"
        lines.append(
            f"| {name} | `{path}` | {statistics.median(times):.3f} | {max(times):.3f} | {verdict} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
