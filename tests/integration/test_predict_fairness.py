"""Serving /predict fairly, against the real stack: request limits, the per-tenant cap on
requests in flight, and a small request answered while large ones are still being served.

Only the torch-thread level of fairness can be seen here: a tenant predicts only with its own
jobs, so bob's request runs on another model than alice's. The batcher's fairness among
requests to one model is tested with a fake predictor in tests/test_batcher.py.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from lpft_api.errors import TooManyRequests
from lpft_api.services.predict import TenantSlots
from lpft_api.settings import ApiSettings

from tests.integration.conftest import Worker, job_body, tenant_client, upload, wait_for
from tests.integration.test_errors import assert_problem

#: The service tests run the API with these defaults.
CAP = ApiSettings.model_fields["predict_concurrency_per_tenant"].default
MAX_INPUTS = ApiSettings.model_fields["max_predict_inputs"].default
MAX_CHARS = ApiSettings.model_fields["max_text_chars"].default
HANG_GUARD_S = 120  # only ever reached when a request hangs

#: Distinct texts, repeated through the big requests so that a row out of order shows; short,
#: so that the big requests cost the 2-core CI machine little.
TEXTS = [f"a {word} film" for word in ("good", "awful", "table", "great", "poor", "river", "fine")]


@pytest.fixture(scope="module")
def jobs(
    api_url: str,
    cpu_worker: Worker,
    toy_dataset_files: dict[str, Path],
    tiny_model_dir: Path,
    finished_job: dict,
) -> dict[str, str]:
    """A succeeded tiny job per tenant, its model loaded: a tenant predicts only with its own
    jobs. Alice's is the run's shared finished job, which predicting only reads."""
    ids = {"alice": finished_job["id"]}
    with tenant_client(api_url, "bob") as client:
        dataset = {split: upload(client, path) for split, path in toy_dataset_files.items()}
        response = client.post("/jobs", json=job_body(dataset, tiny_model_dir))
        assert response.status_code == 202, response.text
        ids["bob"] = response.json()["id"]
    for tenant, job_id in ids.items():
        with tenant_client(api_url, tenant) as client:
            job = wait_for(client, job_id, {"succeeded", "failed"})
            assert job["status"] == "succeeded", json.dumps(job)
            warm_up = client.post("/predict", json={"job_id": job_id, "inputs": [{"text": "x"}]})
            assert warm_up.status_code == 200, warm_up.text
    return ids


def logits(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([prediction["logits"] for prediction in response.json()["predictions"]])


def test_limits_are_checked_before_any_model_work(
    alice: httpx.Client, jobs: dict[str, str]
) -> None:
    def post(job_id: str, inputs: list[dict[str, str]]) -> httpx.Response:
        return alice.post("/predict", json={"job_id": job_id, "inputs": inputs})

    too_many = [{"text": "fine"}] * (MAX_INPUTS + 1)
    body = assert_problem(post(jobs["alice"], too_many), 422, "inputs")
    assert f"{MAX_INPUTS + 1} inputs; the limit is {MAX_INPUTS}" in body["detail"]
    assert_problem(post("no-such-job", too_many), 422, "inputs")  # before the job is looked up

    too_long = "x" * (MAX_CHARS + 1)
    body = assert_problem(post(jobs["alice"], [{"text": "ok"}, {"text": too_long}]), 422)
    assert (
        body["errors"] == [{"field": "inputs[1].text", "message": body["detail"]}]
        and f"the limit is {MAX_CHARS}" in body["detail"]
    )
    pair = [{"text": "ok", "text_pair": too_long}]
    assert_problem(post(jobs["alice"], pair), 422, "inputs[0].text_pair")


def test_small_request_is_served_while_big_ones_run_and_the_tenant_cap_holds(
    api_url: str, bob: httpx.Client, jobs: dict[str, str]
) -> None:
    with tenant_client(api_url, "alice") as alice:
        reference = logits(
            alice.post(
                "/predict", json={"job_id": jobs["alice"], "inputs": [{"text": t} for t in TEXTS]}
            )
        )
    inputs = [{"text": TEXTS[i % len(TEXTS)]} for i in range(MAX_INPUTS)]
    big = json.dumps({"job_id": jobs["alice"], "inputs": inputs})
    finished: list[tuple[str, httpx.Response]] = []  # in the order the answers came
    record = completion_recorder(finished)

    # CAP + 1 of the largest requests at once: one is refused, and its 429 proves that the
    # other CAP were in flight when it came. Bob asks then, and is answered before any of them.
    outcomes = send_concurrently(api_url, "alice", big, CAP + 1, record)
    first, refused = outcomes.get(timeout=HANG_GUARD_S)
    assert refused.status_code == 429, f"{first} finished before the last one was sent"
    record("bob", bob.post("/predict", json={"job_id": jobs["bob"], "inputs": [{"text": "x"}]}))
    for _ in range(CAP):
        outcomes.get(timeout=HANG_GUARD_S)

    names = [name for name, _ in finished]
    statuses = {name: response.status_code for name, response in finished}
    assert sorted(statuses.values()) == [200] * (CAP + 1) + [429], statuses
    served = [name for name in names if name != "bob" and statuses[name] == 200]
    assert names.index("bob") < names.index(served[0]), names  # before every big one

    body = assert_problem(refused, 429)
    assert refused.headers["retry-after"] == "1" and f"{CAP} /predict requests" in body["detail"]
    expected = reference[np.arange(MAX_INPUTS) % len(TEXTS)]
    for name, response in finished:
        if name in served:
            np.testing.assert_allclose(logits(response), expected, rtol=1e-4, atol=1e-5)


def completion_recorder(
    finished: list[tuple[str, httpx.Response]],
) -> Callable[[str, httpx.Response], None]:
    """A thread-safe ``record(name, response)`` that appends to ``finished``."""
    lock = threading.Lock()

    def record(name: str, response: httpx.Response) -> None:
        with lock:
            finished.append((name, response))

    return record


def send_concurrently(
    api_url: str,
    tenant: str,
    body: str,
    count: int,
    record: Callable[[str, httpx.Response], None],
) -> queue.Queue[tuple[str, httpx.Response]]:
    """POST ``body`` to /predict ``count`` times at once, each from its own thread and
    connection; the answers are recorded and queued as they come."""
    outcomes: queue.Queue[tuple[str, httpx.Response]] = queue.Queue()
    start = threading.Barrier(count)

    def send(name: str) -> None:
        with tenant_client(api_url, tenant) as client:
            start.wait()
            response = client.post(
                "/predict", content=body, headers={"Content-Type": "application/json"}
            )
        record(name, response)
        outcomes.put((name, response))

    for i in range(count):
        threading.Thread(target=send, args=(f"{tenant}-{i}",), daemon=True).start()
    return outcomes


def test_tenant_slots_cap_each_tenant_separately() -> None:
    slots = TenantSlots(2)
    with slots.hold("alice"), slots.hold("alice"):
        with pytest.raises(TooManyRequests) as refused:
            with slots.hold("alice"):
                pass
        assert refused.value.retry_after == 1 and "2 /predict requests" in refused.value.detail
        with slots.hold("bob"):
            assert slots.in_flight == {"alice": 2, "bob": 1}
    with slots.hold("alice"):
        assert slots.in_flight == {"alice": 1}
    assert not slots.in_flight
