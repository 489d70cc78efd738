"""When a request is tried again, and after how long: one policy for the sync and async
clients and for the event stream's reconnects."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from lpft_client._errors import LpftConnectionError

if TYPE_CHECKING:
    from lpft_client._calls import Call

#: Answers that say "not now" rather than "no": rate limited, or a proxy without a backend.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: Methods whose repetition has the effect of one request (RFC 9110 §9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Failures that happen before the request leaves: repeating them can never do anything twice.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter (``initial_s``·2ⁿ, at most ``max_s``, minus up to a
    quarter at random so that many clients do not come back in step), unless the server
    said how long to wait in ``Retry-After`` (honoured up to ``max_retry_after_s``)."""

    initial_s: float = 0.5
    max_s: float = 8.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        asked = retry_after(response) if response is not None else None
        if asked is not None and 0 <= asked <= self.max_retry_after_s:
            return asked
        return min(self.max_s, self.initial_s * 2**attempt) * (1 - 0.25 * random.random())


def retry_after(response: httpx.Response) -> float | None:
    """The wait ``Retry-After`` asks for, in seconds (delay-seconds or an HTTP date);
    ``None`` when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_retries`` retries of one request. After a failure that may have reached
    the server, only a repeatable request is retried; a connection that was never made, or a
    429 (refused before any work), is retried for any request."""

    max_retries: int = 2
    backoff: Backoff = Backoff()

    def delay(
        self,
        repeatable: bool,
        attempt: int,
        *,
        response: httpx.Response | None = None,
        error: httpx.TransportError | None = None,
    ) -> float | None:
        """Seconds to wait before trying a request again (``repeatable``: sending it twice
        does what sending it once does), or ``None`` to stop: return ``response`` (success or
        final error), or raise ``error``."""
        if attempt >= self.max_retries:
            return None
        if error is not None:
            return (
                self.backoff.delay(attempt) if repeatable or isinstance(error, NOT_SENT) else None
            )
        if response is None or response.status_code not in RETRYABLE_STATUSES:
            return None
        # lpft answers 429 before doing any of the work, so even an upload may be sent again;
        # a 5xx from a proxy may have followed work done behind it.
        if repeatable or response.status_code == 429:
            return self.backoff.delay(attempt, response)
        return None


#: Seconds a download waits for the server to build an archive (202 until it is built): an
#: export can take a minute on a large model.
BUILD_WAIT_S = 600.0


class Attempts:
    """The decisions of one call's send loop, apart from its I/O, so that the sync and the
    async client make the same ones: after each try, wait and try again, or stop.

    A 202 of a call that ``waits_for_build`` (an archive the server is still building) is
    asked again after its ``Retry-After`` until ``BUILD_WAIT_S`` have passed; those waits
    are not retries.
    """

    def __init__(self, call: Call[Any], policy: RetryPolicy, base_url: httpx.URL) -> None:
        self.call = call
        self.policy = policy
        self.url = base_url.join(call.path)
        self.attempt = 0
        self.build_deadline = time.monotonic() + BUILD_WAIT_S

    def after_error(self, error: httpx.TransportError) -> float:
        """Seconds to wait before the next try.

        Raises:
            LpftConnectionError: no more tries (or the request is not safe to repeat).
        """
        delay = self.policy.delay(self.call.repeatable, self.attempt, error=error)
        if delay is None:
            message = unreachable(self.url, self.call.method, error, self.attempt)
            raise LpftConnectionError(message) from error
        self.attempt += 1
        return delay

    def after_response(self, response: httpx.Response) -> float | None:
        """Seconds to wait before the next try, or ``None``: ``response`` is the answer.

        Raises:
            TimeoutError: the archive was still being built after ``BUILD_WAIT_S``.
        """
        if self.call.waits_for_build and response.status_code == 202:
            if time.monotonic() > self.build_deadline:
                raise TimeoutError(f"{self.url} was still being built; ask again later")
            return retry_after(response) or 1.0
        delay = self.policy.delay(self.call.repeatable, self.attempt, response=response)
        if delay is not None:
            self.attempt += 1
        return delay


def unreachable(url: httpx.URL, method: str, error: Exception, attempt: int) -> str:
    """The message of a request that got no answer: where, why, and how often it was tried."""
    reason = str(error) or type(error).__name__
    tries = f" (tried {attempt + 1} times)" if attempt else ""
    return f"no answer from {method} {url}: {reason}{tries}"
