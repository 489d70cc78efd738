"""Calling a store again while it is briefly away: exponential backoff with full jitter, for
up to a time budget (LPFT_STORE_RETRY_SECONDS), then ObjectStoreUnavailable. A node restart,
a load balancer's 503 SlowDown or a dropped connection then costs a job seconds, not its run."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import ObjectStoreUnavailable

T = TypeVar("T")

FIRST_WAIT_S = 0.1
LONGEST_WAIT_S = 5.0


def backoff_s(attempt: int) -> float:
    """The wait before retry ``attempt`` (0-based): uniform in [0, min(cap, first * 2^n)],
    so that clients which failed together do not come back together."""
    return random.uniform(0, min(LONGEST_WAIT_S, FIRST_WAIT_S * 2**attempt))


def with_retries(call: Callable[[], T], *, budget_s: float, what: str) -> T:
    """``call()``, again after each ObjectStoreUnavailable until ``budget_s`` has passed since
    the first try; the last failure then propagates, its message saying for how long ``what``
    was tried. Other errors propagate at once: retrying bad credentials helps nobody."""
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return call()
        except ObjectStoreUnavailable as failed:
            elapsed = time.monotonic() - started
            wait = backoff_s(attempt)
            if elapsed + wait > budget_s:
                raise ObjectStoreUnavailable(
                    f"{failed}; {what} still failed after {elapsed:.1f} s of retries "
                    f"(LPFT_STORE_RETRY_SECONDS={budget_s:g})"
                ) from failed
            time.sleep(wait)
            attempt += 1
