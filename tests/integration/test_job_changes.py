"""GET /events/jobs on the real stack: a tenant's feed of job changes holds its own jobs and
never another tenant's, live or as pages, and a live feed resumed with ``Last-Event-ID``
goes on after the last change received, missing none and repeating none. On a stack of its
own (a restartable Redis, two stream slots a tenant): live feeds count against the tenant's
stream cap with jobs' event streams and send keep-alives, and a Redis restart that lost the
data ends a live feed cleanly, is a 503 while Redis is away, and tells the feed resumed
after it that it missed changes.

The jobs ask for a GPU (``device: cuda``), whose queue no worker of these tests consumes: they
stay queued until cancelled, so every change is one this test made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import KEYS, ApiServer, job_body, upload
from tests.integration.test_errors import assert_problem
from tests.integration.test_faults import RedisServer

SSE = {"Accept": "text/event-stream"}
#: Longer than a change takes to reach a live feed on 2 busy cores.
WAIT_S = 30
#: The own stack's cap of live streams a tenant, and its keep-alive interval.
STREAMS, KEEPALIVE_S = 2, 1.0


def events(response: httpx.Response) -> Iterator[dict]:
    """The response's Server-Sent Events as {id, event, data}; a keep-alive comment as an
    event ``keep-alive``, so that a reader waiting for a change sees time pass."""
    event: dict = {}
    for line in response.iter_lines():
        if line == "":
            if event:
                yield {**event, "data": json.loads(event["data"])}
            event = {}
        elif line.startswith(":"):
            yield {"event": "keep-alive", "data": {}}
        else:
            field, _, value = line.partition(": ")
            event[field] = value


def next_change(feed: Iterator[dict], what: str, job: str | None = None, never: str = "") -> dict:
    """The next event (with ``job``: the next about that job, skipping changes of the
    tenant's other jobs, from other tests of the session), none about ``never``."""
    started = time.monotonic()
    for event in feed:
        about = event["data"].get("job_id")
        assert not never or about != never, f"another tenant's job leaked: {event}"
        if event["event"] != "keep-alive" and (job is None or about == job):
            return event
        assert time.monotonic() - started < WAIT_S, f"no {what} after {WAIT_S} s"
    raise AssertionError(f"the stream ended before {what}")


def queued_job(client: httpx.Client, toy_dataset_files: dict[str, Path], model: Path) -> str:
    datasets = {"train": upload(client, toy_dataset_files["train"])}
    response = client.post("/jobs", json=job_body(datasets, model, device="cuda"))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_a_tenants_feed_holds_its_jobs_only_and_resumes_after_last_event_id(
    alice: httpx.Client,
    bob: httpx.Client,
    toy_dataset_files: dict[str, Path],
    tiny_model_dir: Path,
) -> None:
    with alice.stream("GET", "/events/jobs", headers=SSE) as live:
        assert live.status_code == 200, live.read()
        assert live.headers["content-type"].startswith("text/event-stream")
        feed = events(live)
        ready = next_change(feed, "ready")
        assert ready["event"] == "ready"
        assert ready["data"] == {"type": "ready", "resumed": False, "missed": False}
        start = ready["id"]

        bobs = queued_job(bob, toy_dataset_files, tiny_model_dir)
        assert bob.post(f"/jobs/{bobs}/cancel").status_code == 200
        alices = queued_job(alice, toy_dataset_files, tiny_model_dir)
        created = next_change(feed, "alice's job created", alices, never=bobs)
        assert (created["event"], created["data"]["job_id"]) == ("created", alices), created
        assert created["data"]["status"] == "queued" and created["data"]["kind"] == "finetune"
        assert created["id"] == created["data"]["id"]
    # The stream closed after the creation: the cancel and the delete come while it is away.
    assert alice.post(f"/jobs/{alices}/cancel").status_code == 200
    assert alice.delete(f"/jobs/{alices}").status_code == 204

    resumed = {**SSE, "Last-Event-ID": created["id"]}
    with alice.stream("GET", "/events/jobs", headers=resumed) as live:
        feed = events(live)
        ready = next_change(feed, "ready")
        assert ready["data"] == {"type": "ready", "resumed": True, "missed": False}
        assert ready["id"] == created["id"]
        cancelled = next_change(feed, "the cancel", alices, never=bobs)
        deleted = next_change(feed, "the delete", alices, never=bobs)
    assert (cancelled["event"], cancelled["data"]["job_id"]) == ("status", alices)
    assert (cancelled["data"]["previous_status"], cancelled["data"]["status"]) == (
        "queued",
        "cancelled",
    )
    assert (deleted["event"], deleted["data"]["job_id"]) == ("deleted", alices)

    # As pages: the same changes, and never the other tenant's job, either way round.
    page = alice.get("/events/jobs", params={"after": start}).json()
    assert [(c["type"], c["job_id"]) for c in page["data"] if c["job_id"] in {alices, bobs}] == [
        ("created", alices),
        ("status", alices),
        ("deleted", alices),
    ]
    assert page["missed"] is False
    assert [c["id"] for c in page["data"]][-2:] == [cancelled["id"], deleted["id"]]
    assert bobs not in {c["job_id"] for c in alice.get("/events/jobs").json()["data"]}
    theirs = bob.get("/events/jobs", params={"limit": 1000}).json()["data"]
    assert bobs in {c["job_id"] for c in theirs}
    assert alices not in {c["job_id"] for c in theirs}


def test_a_bad_last_event_id_is_refused_at_its_header(alice: httpx.Client) -> None:
    refused = alice.get("/events/jobs", headers={**SSE, "Last-Event-ID": "yesterday"})
    assert_problem(refused, 422, field="Last-Event-ID")


@pytest.fixture(scope="module")
def own_stack(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    directory = tmp_path_factory.mktemp("job-changes")
    redis_server = RedisServer(directory)
    env = {
        **service_env,
        "LPFT_REDIS_URL": redis_server.url,
        "LPFT_ARTIFACTS_DIR": str(directory / "artifacts"),
        "LPFT_MAX_EVENT_STREAMS_PER_TENANT": str(STREAMS),
        "LPFT_EVENT_STREAM_KEEPALIVE_SECONDS": str(KEEPALIVE_S),
    }
    api = ApiServer(env, directory / "api.log")
    headers = {"Authorization": f"Bearer {KEYS['alice']}"}
    with httpx.Client(base_url=api.url, headers=headers, timeout=60) as client:
        yield {"redis": redis_server, "api": api, "alice": client, "log": directory / "api.log"}
    api.stop()
    redis_server.stop()


def test_live_feeds_count_against_the_stream_cap_and_send_keep_alives(own_stack: dict) -> None:
    alice: httpx.Client = own_stack["alice"]
    with ExitStack() as stack:
        feeds = [
            stack.enter_context(alice.stream("GET", "/events/jobs", headers=SSE))
            for _ in range(STREAMS)
        ]
        assert [f.status_code for f in feeds] == [200] * STREAMS
        lines = events(feeds[0])
        assert next_change(lines, "ready")["event"] == "ready"
        refused = alice.get("/events/jobs", headers=SSE)
        detail = assert_problem(refused, 429)["detail"]
        assert "GET /events/jobs as JSON pages" in detail, detail
        assert alice.get("/events/jobs").status_code == 200  # pages hold no slot
        started = time.monotonic()
        while next(lines)["event"] != "keep-alive":
            assert time.monotonic() - started < 2 * KEEPALIVE_S + 5, "no keep-alive"
        feeds[1].close()
        deadline = time.monotonic() + 3 * KEEPALIVE_S + 5
        while (status := opened(alice)) == 429:
            assert time.monotonic() < deadline, "the closed feed's slot was never freed"
            time.sleep(0.1)
        assert status == 200


def opened(client: httpx.Client) -> int:
    """The status a live feed opens with (the feed is closed at once: a plain GET would read
    it to its end, minutes away)."""
    with client.stream("GET", "/events/jobs", headers=SSE) as response:
        return response.status_code


def test_a_redis_restart_that_lost_the_feed_ends_it_cleanly_and_the_resumed_feed_missed_it(
    own_stack: dict, toy_dataset_files: dict[str, Path], tiny_model_dir: Path
) -> None:
    alice: httpx.Client = own_stack["alice"]
    redis_server: RedisServer = own_stack["redis"]
    with alice.stream("GET", "/events/jobs", headers=SSE) as live:
        feed = events(live)
        next_change(feed, "ready")
        job = queued_job(alice, toy_dataset_files, tiny_model_dir)
        created = next_change(feed, "the job created", job)
        redis_server._cli("flushall")  # as a restart without persistence would leave it
        redis_server.stop()
        stopped = time.monotonic()
        # The feed ends as a whole response (a broken one raises here), within a wait.
        rest = [event["event"] for event in feed]
        ended_s = time.monotonic() - stopped
    assert set(rest) <= {"keep-alive"}, rest
    assert ended_s < 2 * KEEPALIVE_S + 5, ended_s
    try:
        away = alice.get("/events/jobs", headers={**SSE, "Last-Event-ID": created["id"]})
        assert_problem(away, 503)
    finally:
        redis_server.start()
    resumed = {**SSE, "Last-Event-ID": created["id"]}
    deadline = time.monotonic() + WAIT_S
    while (response := alice.get("/events/jobs", params={"limit": 1})).status_code != 200:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)
    with alice.stream("GET", "/events/jobs", headers=resumed) as live:
        ready = next_change(events(live), "ready")
    assert ready["data"] == {"type": "ready", "resumed": True, "missed": True}
    # It goes on from the head of the feed Redis came back with: empty ("0-0"), or holding
    # only what changed since (the recovery pass may have sent the queued job again).
    assert ready["id"] == "0-0" or ready["id"] > created["id"], (ready, created)
    log = own_stack["log"].read_text()
    assert "Redis unavailable on a live feed of job changes" in log
    assert "Exception in ASGI application" not in log, log[-3000:]
