"""The one list contract of the stores: every list is a ``Page`` read newest first (or in
order, for events) after a cursor, with one look-ahead entry to know whether more follow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

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
