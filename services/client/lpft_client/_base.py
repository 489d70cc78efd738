"""What the sync and async clients share besides the calls: where the API is, how to
authenticate, and the retry and reconnect settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from lpft_client._calls import Call
from lpft_client._retry import Attempts, RetryPolicy
from lpft_client._streaming import RECONNECT_FOR_S, ResumableStream

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
#: Seconds per request; an event stream has its own (longer) read timeout.
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 2


@dataclass(frozen=True)
class ClientOptions:
    """One client's settings.

    Attributes:
        base_url: the API, e.g. ``http://127.0.0.1:8000``.
        headers: sent with every request (``Authorization`` when there is a key).
        retry: how often and after how long a failed request is tried again.
        reconnect_for: seconds an event stream keeps reconnecting to an API that does not
            answer before it gives up.
    """

    base_url: str
    headers: dict[str, str]
    retry: RetryPolicy
    reconnect_for: float

    @classmethod
    def resolve(
        cls,
        base_url: str | None,
        api_key: str | None,
        max_retries: int,
        reconnect_for: float | None,
    ) -> ClientOptions:
        """The settings from the arguments, else ``LPFT_API_URL`` / ``LPFT_API_KEY``."""
        url = base_url or os.environ.get("LPFT_API_URL") or DEFAULT_BASE_URL
        key = api_key if api_key is not None else os.environ.get("LPFT_API_KEY")
        return cls(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"} if key else {},
            retry=RetryPolicy(max_retries=max_retries),
            reconnect_for=RECONNECT_FOR_S if reconnect_for is None else reconnect_for,
        )

    def attempts(self, call: Call[Any], base_url: httpx.URL) -> Attempts:
        """The send loop's decisions for one ``call``."""
        return Attempts(call, self.retry, base_url)

    def stream_state(
        self, job_id: str, after: str | None, reconnect_for: float | None
    ) -> ResumableStream:
        """A job's event stream from after ``after``, reconnecting for ``reconnect_for``
        seconds (default this client's)."""
        budget = self.reconnect_for if reconnect_for is None else reconnect_for
        return ResumableStream(job_id, after, budget)
