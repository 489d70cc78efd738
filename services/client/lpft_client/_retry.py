"""When a request is tried again, and after how long: one policy for the sync and async
clients and for the event stream's reconnects."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

import httpx

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


def unreachable(url: httpx.URL, method: str, error: Exception, attempt: int) -> str:
    """The message of a request that got no answer: where, why, and how often it was tried."""
    reason = str(error) or type(error).__name__
    tries = f" (tried {attempt + 1} times)" if attempt else ""
    return f"no answer from {method} {url}: {reason}{tries}"
