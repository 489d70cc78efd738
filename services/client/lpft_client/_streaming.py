"""The bookkeeping of a job's live event stream, shared by the sync and async clients: where
to resume, which events were already seen, and how long to keep reconnecting.

A stream ends for good when the server closes it after the job's last event (it does so
once the job is finished). Any other end (a dropped connection, a refused one, a 5xx while
the API restarts) is followed by a reconnect with ``Last-Event-ID``, after a back-off, for as
long as ``reconnect_for`` seconds pass without a sign of life from the server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping

import httpx
from httpx_sse import ServerSentEvent

from lpft_client import _calls
from lpft_client._errors import LpftConnectionError
from lpft_client._retry import Backoff
from lpft_client.types import EVENT, TERMINAL_STATUSES, Event, StatusEvent

#: How long a watch keeps reconnecting while the API does not answer, by default.
RECONNECT_FOR_S = 300.0


class StreamFailure(Exception):
    """The stream could not be opened or was cut; ``response`` when the server answered
    with a status worth retrying (5xx, 429)."""

    def __init__(self, reason: str, response: httpx.Response | None = None) -> None:
        super().__init__(reason)
        self.response = response


def _position(event_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = event_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class ResumableStream:
    """The state of one job's event stream across reconnects."""

    def __init__(
        self,
        job_id: str,
        after: str | None,
        reconnect_for: float = RECONNECT_FOR_S,
        backoff: Backoff | None = None,
    ) -> None:
        self.job_id = job_id
        self.last_id = after
        self.reconnect_for = reconnect_for
        self.backoff = backoff or Backoff()
        self.finished = False
        self._failures = 0
        self._failing_since: float | None = None

    @contextlib.contextmanager
    def request(
        self, http: httpx.Client | httpx.AsyncClient, headers: Mapping[str, str]
    ) -> Iterator[httpx.Request]:
        """The stream's request on ``http``, with ``headers`` (authentication) and the
        ``Last-Event-ID`` of the last event received, so the server resumes after it."""
        resume = {"Last-Event-ID": self.last_id} if self.last_id else {}
        with _calls.events_stream(self.job_id).request(http, {**headers, **resume}) as request:
            yield request

    def accept(self, sse: ServerSentEvent) -> Event | None:
        """The event ``sse`` carries; ``None`` for a keep-alive or an event already seen.
        Anything received shows the server is back, which refills the reconnect budget."""
        self._failures, self._failing_since = 0, None
        if not sse.data:
            return None
        event = EVENT.validate_json(sse.data)
        if self.last_id is not None and _position(event.id) <= _position(self.last_id):
            return None
        self.last_id = event.id
        if isinstance(event, StatusEvent) and event.data.status in TERMINAL_STATUSES:
            self.finished = True
        return event

    def refuse(self, response: httpx.Response) -> None:
        """Raise for an error answer (its body read): ``StreamFailure`` for one worth
        reconnecting after (5xx, 429), else ``LpftApiError``."""
        if response.status_code >= 500 or response.status_code == 429:
            raise StreamFailure(f"the API answered {response.status_code}", response)
        _calls.raise_for_problem(response)

    def retry_delay(self, failure: Exception) -> float:
        """Seconds to wait before reconnecting after ``failure``.

        Raises:
            LpftConnectionError: the server gave no sign of life for ``reconnect_for`` s.
        """
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since > self.reconnect_for:
            raise LpftConnectionError(
                f"the event stream of job {self.job_id} stayed down for "
                f"{self.reconnect_for:.0f} s ({failure})"
            ) from failure
        response = failure.response if isinstance(failure, StreamFailure) else None
        delay = self.backoff.delay(self._failures, response)
        self._failures += 1
        return delay
