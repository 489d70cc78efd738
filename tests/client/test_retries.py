"""Retries against a small real HTTP server that answers with a script (``servers``): the
client's protocol handling (``Retry-After``, back-off, which requests may be repeated) is
what is tested here, and the real API cannot be made to answer 429 or 503 on demand."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from lpft_client import LpftApiError, LpftClient, LpftConnectionError
from lpft_client._retry import retry_after

from tests.client.servers import ScriptedServer, job, json_reply

BUSY = {"title": "Too Many Requests", "status": 429, "detail": "slow down", "code": "rate_limited"}
DOWN = {"title": "Service Unavailable", "status": 503, "detail": "restarting", "code": "down"}


def test_a_429_is_retried_after_the_wait_its_retry_after_asks_for() -> None:
    replies = [json_reply(429, BUSY, {"Retry-After": "1"}), json_reply(200, job())]
    with ScriptedServer(replies) as server, LpftClient(server.url) as client:
        started = time.monotonic()
        fetched = client.jobs.retrieve("job-1")
        waited = time.monotonic() - started
    assert fetched.id == "job-1" and fetched.status == "running"
    assert [r.path for r in server.received] == ["/jobs/job-1", "/jobs/job-1"]
    assert waited >= 1.0  # the second request went out after the asked-for second


def test_retry_after_as_an_http_date_is_honoured() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    response = httpx.Response(429, headers={"Retry-After": when})
    assert 28 <= retry_after(response) <= 30
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None


def test_the_client_gives_up_after_max_retries_with_the_last_answer() -> None:
    replies = [json_reply(503, DOWN, {"Retry-After": "0"})]
    with ScriptedServer(replies) as server, LpftClient(server.url, max_retries=2) as client:
        with pytest.raises(LpftApiError) as raised:
            client.jobs.retrieve("job-1")
    assert raised.value.status == 503 and raised.value.code == "down"
    assert len(server.received) == 3  # the request and its two retries


def test_a_retried_create_sends_the_same_idempotency_key() -> None:
    replies = [json_reply(503, DOWN, {"Retry-After": "0"}), json_reply(202, job("queued"))]
    with ScriptedServer(replies) as server, LpftClient(server.url) as client:
        created = client.jobs.create(train="ds-1", method="lp_ft")
    assert created.status == "queued"
    keys = [r.headers.get("idempotency-key") for r in server.received]
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]


def test_a_post_the_api_cannot_deduplicate_is_not_retried() -> None:
    replies = [json_reply(503, DOWN, {"Retry-After": "0"}), json_reply(202, job("queued"))]
    with ScriptedServer(replies) as server, LpftClient(server.url) as client:
        with pytest.raises(LpftApiError):
            client.jobs.recalibrate("job-1", "ds-2")
    assert len(server.received) == 1


def test_a_429_is_retried_even_for_a_post_the_api_cannot_deduplicate() -> None:
    # lpft refuses with 429 before doing any work, so sending it again cannot do it twice
    replies = [json_reply(429, BUSY, {"Retry-After": "0"}), json_reply(202, job("queued"))]
    with ScriptedServer(replies) as server, LpftClient(server.url) as client:
        assert client.jobs.recalibrate("job-1", "ds-2").status == "queued"
    assert len(server.received) == 2


def test_an_api_that_is_not_there_is_a_connection_error_after_the_retries() -> None:
    with ScriptedServer([json_reply(200, {})]) as server:
        url = server.url  # a port that was just free and is closed again below
    with LpftClient(url, max_retries=1) as client, pytest.raises(LpftConnectionError) as raised:
        client.jobs.retrieve("job-1")
    assert "tried 2 times" in str(raised.value)
