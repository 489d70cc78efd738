"""The job store's tests, each module on a Redis database of its own (``redis_db``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis


@contextlib.contextmanager
def empty_database(client: redis.Redis) -> Iterator[None]:
    """The client's database emptied for one test, and again after it (what it leaves must
    not reach the next test)."""
    client.flushdb()
    yield
    client.flushdb()
