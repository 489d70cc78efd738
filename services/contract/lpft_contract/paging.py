"""The one list contract of the stores: every list is a ``Page`` read newest first (or in
order, for events) after a cursor, with one look-ahead entry to know whether more follow."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list.

    Attributes:
        items: the page's entries.
        last_id: the id of the last entry read, the ``after`` of the next page (an entry
            read but left out, deleted since the index was read, still moves it); with
            nothing read, the ``after`` the page was asked for.
        has_more: whether entries follow ``last_id``.
    """

    items: list[T]
    last_id: str | None
    has_more: bool


def sorted_set_page(
    client: redis.Redis, key: str, after: str | None, limit: int, order: str | None = None
) -> Page[str]:
    """Up to ``limit`` ids of the sorted set ``key``, highest score first, after the id
    ``after``, which is looked up in ``order`` (default ``key``): a set holding part of
    ``order``'s ids with their scores pages after an id it lacks. Equal scores keep Redis's
    order, descending ids, as ``ZREVRANGE`` does."""
    ids = _ids_after(client, key, after, limit + 1, order)
    items = ids[:limit]
    return Page(items, items[-1] if items else after, len(ids) > limit)


def _ids_after(
    client: redis.Redis, key: str, after: str | None, count: int, order: str | None
) -> list[str]:
    if after is None:
        return client.zrevrange(key, 0, count - 1)
    score = client.zscore(order or key, after)
    if score is None:
        return []
    tied = [i for i in client.zrevrangebyscore(key, score, score) if i < after]
    rest = client.zrevrangebyscore(key, f"({score}", "-inf", start=0, num=count)
    return (tied + rest)[:count]


def stream_page(
    client: redis.Redis,
    stream: str,
    field: str,
    after: str | None,
    limit: int,
    block_ms: int | None = None,
) -> Page[dict[str, Any]]:
    """Up to ``limit`` entries of the Redis stream ``stream`` after the entry id ``after``
    (from the oldest kept, with none), oldest first, each the JSON document in its ``field``
    with its ``id``; with ``block_ms``, waits that long for a first one."""
    if block_ms is not None:
        found = client.xread({stream: after or "0-0"}, count=limit + 1, block=block_ms)
        entries = found[0][1] if found else []
    else:
        start = f"({after}" if after else "-"
        entries = client.xrange(stream, min=start, max="+", count=limit + 1)
    return entries_page(
        [{"id": entry_id, **json.loads(fields[field])} for entry_id, fields in entries],
        after,
        limit,
    )


def entries_page(
    entries: list[dict[str, Any]], after: str | None, limit: int
) -> Page[dict[str, Any]]:
    """The first ``limit`` of ``entries``, each with its ``id`` (read one past the page, to
    know more follow)."""
    items = entries[:limit]
    return Page(items, items[-1]["id"] if items else after, len(entries) > limit)


def stream_order(entry_id: str) -> tuple[int, int]:
    """Redis stream ids ("<ms>-<seq>") in their numeric order."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
