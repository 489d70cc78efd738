"""Resuming a job's event stream after the connection drops, against a small real HTTP
server that cuts the first stream mid-event as a killed API does (``servers``): the real
API cannot be made to drop a connection at a chosen event. tests/client/test_service.py
checks the same against the real API killed and restarted."""

from __future__ import annotations

import asyncio

from lpft_client import AsyncLpftClient, LpftClient
from lpft_client.types import OtherEvent, StatusEvent, StepEvent

from tests.client.servers import ScriptedServer, event, sse_reply

FIRST = [event(1), event(2), event(3)]
REST = [event(4), event(5), event(6, "status", status="succeeded")]


def replies() -> list:
    # The first stream is cut after event 3; the second resumes after it, but also sends
    # event 3 again (a server may): the client must not pass it on twice.
    return [sse_reply(FIRST, cut=True), sse_reply([event(3), *REST])]


def test_a_cut_stream_resumes_after_the_last_event_with_nothing_lost_or_repeated() -> None:
    with ScriptedServer(replies()) as server, LpftClient(server.url) as client:
        events = list(client.jobs.stream_events("job-1"))
    assert [e.id for e in events] == [e["id"] for e in FIRST + REST]
    assert isinstance(events[0], StepEvent) and events[0].data.loss == 1.0
    assert isinstance(events[-1], StatusEvent) and events[-1].data.status == "succeeded"
    first, second = server.received
    assert "last-event-id" not in first.headers
    assert second.headers["last-event-id"] == FIRST[-1]["id"]


def test_the_async_client_resumes_the_same_way() -> None:
    async def collect(url: str) -> list[str]:
        async with AsyncLpftClient(url) as client:
            return [e.id async for e in client.jobs.stream_events("job-1")]

    with ScriptedServer(replies()) as server:
        ids = asyncio.run(collect(server.url))
    assert ids == [e["id"] for e in FIRST + REST]
    assert server.received[1].headers["last-event-id"] == FIRST[-1]["id"]


def test_an_event_this_client_cannot_read_goes_on_plain_and_the_stream_with_it() -> None:
    """A newer server may send a type this client does not know, or change what a known type
    carries: such an event arrives as an ``OtherEvent`` with its data as sent."""
    unknown = event(2, "checkpoint", path="checkpoints/epoch-1")
    changed = event(3, "step", stage="ft", step="3 of 6")
    stream = [event(1), unknown, changed, event(4, "status", status="succeeded")]
    with ScriptedServer([sse_reply(stream)]) as server, LpftClient(server.url) as client:
        events = list(client.jobs.stream_events("job-1"))
    assert [type(e) for e in events] == [StepEvent, OtherEvent, OtherEvent, StatusEvent]
    assert events[2].data == changed["data"]
