"""The job store's tests, each on a Redis database of its own module."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import redis


@contextlib.contextmanager
def empty_database(client: redis.Redis) -> Iterator[None]:
    """The client's database emptied for one test, and again after it (what it leaves must
    not reach the next test)."""
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("the store tests need Redis on 127.0.0.1:6379 (.ci/run starts it)")
    client.flushdb()
    yield
    client.flushdb()
