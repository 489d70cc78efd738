"""Serving /predict fairly, against the real stack: request limits, one tenant's 32 clients
served without a 429, the per-tenant cap against abuse, and a small request answered while
large ones are still being served.

A tenant predicts only with its own jobs, so bob's request runs on another model than alice's:
what shows here is the batcher giving tenants their passes in turn. The batcher's passes, counted
per tenant and per request, are tested with a fake predictor in tests/api/test_batcher.py.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from lpft_api.errors import TooManyRequests
from lpft_api.services.predict import TenantSlots
from lpft_api.settings import ApiSettings

from tests.integration.conftest import ApiServer, Worker, job_body, tenant_client, upload, wait_for
from tests.integration.test_errors import assert_problem

#: The service tests run the API with these defaults.
CLIENTS = 32  # the concurrent clients of one application
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


def test_one_tenant_with_32_clients_gets_no_429(
    api_url: str, alice: httpx.Client, jobs: dict[str, str]
) -> None:
    """One application alone may use the whole server: 32 concurrent one-input requests of
    one tenant, on the default settings, are all answered, each with its own input's logits."""
    reference = logits(
        alice.post(
            "/predict", json={"job_id": jobs["alice"], "inputs": [{"text": t} for t in TEXTS]}
        )
    )
    finished: list[tuple[str, httpx.Response]] = []
    bodies = [
        json.dumps({"job_id": jobs["alice"], "inputs": [{"text": TEXTS[i % len(TEXTS)]}]})
        for i in range(CLIENTS)
    ]
    outcomes = send_concurrently(api_url, "alice", bodies, completion_recorder(finished))
    for _ in range(CLIENTS):
        outcomes.get(timeout=HANG_GUARD_S)
    assert sorted(response.status_code for _, response in finished) == [200] * CLIENTS
    for name, response in finished:
        i = int(name.rsplit("-", 1)[1])
        np.testing.assert_allclose(
            logits(response), reference[[i % len(TEXTS)]], rtol=1e-4, atol=1e-5
        )


def test_a_pass_of_mixed_lengths_equals_each_input_alone(
    alice: httpx.Client, jobs: dict[str, str]
) -> None:
    """One request of short and long texts interleaved (one pass, computed in length
    buckets) has each input's logits, in input order, as that input alone gets them."""
    texts = [
        TEXTS[i % len(TEXTS)] if i % 2 else " ".join(TEXTS[: 1 + i % len(TEXTS)] * 3)
        for i in range(16)
    ]
    together = logits(
        alice.post(
            "/predict", json={"job_id": jobs["alice"], "inputs": [{"text": t} for t in texts]}
        )
    )
    for i, text in enumerate(texts):
        alone = logits(
            alice.post("/predict", json={"job_id": jobs["alice"], "inputs": [{"text": text}]})
        )
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-4, atol=1e-5, err_msg=text)


def test_small_request_is_served_while_big_ones_run(
    api_url: str, bob: httpx.Client, jobs: dict[str, str]
) -> None:
    """Bob's one input, sent once alice's largest requests are being served, is answered
    before any of them (each takes 64 passes)."""
    with tenant_client(api_url, "alice") as alice:
        reference = logits(
            alice.post(
                "/predict", json={"job_id": jobs["alice"], "inputs": [{"text": t} for t in TEXTS]}
            )
        )
    passes_before = passes_run(bob)
    finished: list[tuple[str, httpx.Response]] = []  # in the order the answers came
    record = completion_recorder(finished)
    outcomes = send_concurrently(api_url, "alice", [largest_body(jobs["alice"])] * 4, record)
    wait_until_passes_run(bob, passes_before + 1)
    record("bob", bob.post("/predict", json={"job_id": jobs["bob"], "inputs": [{"text": "x"}]}))
    for _ in range(4):
        outcomes.get(timeout=HANG_GUARD_S)

    names = [name for name, _ in finished]
    assert sorted(r.status_code for _, r in finished) == [200] * 5, finished
    assert names[0] == "bob", names  # before every big one
    expected = reference[np.arange(MAX_INPUTS) % len(TEXTS)]
    for name, response in finished:
        if name != "bob":
            np.testing.assert_allclose(logits(response), expected, rtol=1e-4, atol=1e-5)


def test_abuse_cap_answers_429_with_retry_after(
    service_env: dict[str, str], tmp_path: Path, jobs: dict[str, str]
) -> None:
    """An API whose cap is 2: three of the largest requests at once, and one is refused; its
    429 proves that the other two were in flight when it came."""
    env = service_env | {"LPFT_PREDICT_MAX_IN_FLIGHT_PER_TENANT": "2"}
    server = ApiServer(env, tmp_path / "api.log")
    try:
        finished: list[tuple[str, httpx.Response]] = []
        outcomes = send_concurrently(
            server.url, "alice", [largest_body(jobs["alice"])] * 3, completion_recorder(finished)
        )
        first, refused = outcomes.get(timeout=HANG_GUARD_S)
        assert refused.status_code == 429, f"{first} finished before the last one was sent"
        for _ in range(2):
            outcomes.get(timeout=HANG_GUARD_S)
        assert sorted(r.status_code for _, r in finished) == [200, 200, 429]
        body = assert_problem(refused, 429)
        assert refused.headers["retry-after"] == "1"
        assert "2 /predict requests" in body["detail"]
        assert "LPFT_PREDICT_MAX_IN_FLIGHT_PER_TENANT" in body["detail"]
    finally:
        server.stop()


def largest_body(job_id: str) -> str:
    """The largest request the limits allow, as a JSON body."""
    inputs = [{"text": TEXTS[i % len(TEXTS)]} for i in range(MAX_INPUTS)]
    return json.dumps({"job_id": job_id, "inputs": inputs})


def passes_run(client: httpx.Client) -> float:
    """Forward passes the API process has run, from its /metrics page."""
    page = client.get("/metrics")
    assert page.status_code == 200, page.text
    for line in page.text.splitlines():
        if line.startswith("lpft_predict_batch_size_count"):
            return float(line.split()[-1])
    return 0.0


def wait_until_passes_run(client: httpx.Client, count: float) -> None:
    """Returns once the API has run ``count`` passes (the requests sent are being served)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while (seen := passes_run(client)) < count:
        assert time.monotonic() < deadline, f"{seen} passes run, waiting for {count}"
        time.sleep(0.01)


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
    bodies: list[str],
    record: Callable[[str, httpx.Response], None],
) -> queue.Queue[tuple[str, httpx.Response]]:
    """POST each of ``bodies`` to /predict at once, each from its own thread and connection
    (named ``{tenant}-{i}``); the answers are recorded and queued as they come."""
    outcomes: queue.Queue[tuple[str, httpx.Response]] = queue.Queue()
    start = threading.Barrier(len(bodies))

    def send(name: str, body: str) -> None:
        with tenant_client(api_url, tenant) as client:
            start.wait()
            response = client.post(
                "/predict", content=body, headers={"Content-Type": "application/json"}
            )
        record(name, response)
        outcomes.put((name, response))

    for i, body in enumerate(bodies):
        threading.Thread(target=send, args=(f"{tenant}-{i}", body), daemon=True).start()
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
