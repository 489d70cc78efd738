"""Each tenant's feed of job changes (a job created, its status changed, deleted): a capped
Redis stream per tenant, appended in the same transaction as the change it reports, so a
list that follows the feed never sees a change the store did not make, nor misses one it did.

Why a stream per tenant: a reader is scoped by the key it reads (no filtering of other
tenants' entries, nothing to leak), and its entry ids are the cursors a client resumes from.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import redis

from lpft_contract.keys import key
from lpft_contract.paging import Page, stream_order, stream_page
from lpft_contract.records import JobRecord, JobStatus

#: Entries kept per tenant (approximately: Redis trims whole nodes, so it is cheap): a client
#: that reconnects after more changes than this is told that it missed some.
CHANGES_MAXLEN = 10_000
#: A feed no change was written to for this long is dropped (each change renews it): a
#: tenant gone idle keeps no key; a reader resuming after it is told that it missed changes.
CHANGES_TTL_S = 30 * 86_400

Change = Literal["created", "status", "deleted"]


def changes_key(tenant: str) -> str:
    """The tenant's stream. The tenant comes last: a name holding ':' reaches no other key."""
    return key("job-changes", tenant)


def queue_change(
    pipe: redis.client.Pipeline,
    change: Change,
    record: JobRecord,
    previous: JobStatus | None = None,
) -> None:
    """Queue the entry reporting ``change`` of ``record`` (``previous``: the status it left)
    on ``pipe``, the transaction that makes the change."""
    entry = {
        "type": change,
        "job_id": record.id,
        "kind": record.kind,
        "status": record.status.value,
        "previous_status": previous.value if previous is not None else None,
        "at": time.time(),
    }
    pipe.xadd(
        changes_key(record.tenant),
        {"change": json.dumps(entry)},
        maxlen=CHANGES_MAXLEN,
        approximate=True,
    )
    pipe.expire(changes_key(record.tenant), CHANGES_TTL_S)


@dataclass(frozen=True)
class Position:
    """Where a reader of a tenant's feed stands.

    Attributes:
        head: the id of the newest entry ("0-0" for none), where a fresh reader starts.
        missed: whether entries after the reader's cursor may be gone (trimmed away, or
            lost by Redis): it must read the jobs list again.
    """

    head: str
    missed: bool


class JobChanges:
    """Read the tenants' feeds of job changes.

    Args:
        client: a Redis client created with ``decode_responses=True``.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def position(self, tenant: str, after: str | None) -> Position:
        """The feed's newest id, and whether a reader at ``after`` missed entries: those
        trimmed away, or every one Redis lost (a restart that came back empty or from an
        older snapshot, a feed that expired). ``after`` is an id the feed gave (an entry's,
        or its head when the reader started: "0-0" for an empty feed): a feed that lacks it
        (no feed at all, or one starting after it, unless it is "0-0" and nothing was ever
        trimmed) or that ends before it is not the one the reader read. Conservative: at
        worst a reader re-reads a list it had right."""
        stream = changes_key(tenant)
        info = self._info(stream)
        if info is None:
            return Position("0-0", after is not None)
        head = info["last-generated-id"]
        if after is None:
            return Position(head, False)
        first = info["first-entry"][0] if info["first-entry"] else None
        # Redis before 7.0 does not count entries-added: a feed there may always be trimmed.
        added = info.get("entries-added")
        trimmed = added is None or int(added) > int(info["length"])
        behind = first is not None and stream_order(after) < stream_order(first)
        ahead = stream_order(after) > stream_order(head)
        missed = ahead or (behind and (trimmed or after != "0-0"))
        return Position(head, missed)

    def _info(self, stream: str) -> dict[str, Any] | None:
        """``XINFO STREAM``, or ``None`` for a feed that does not exist."""
        try:
            return self.redis.xinfo_stream(stream)
        except redis.ResponseError:
            return None

    def read(
        self, tenant: str, after: str | None, limit: int, block_ms: int | None = None
    ) -> Page[dict[str, Any]]:
        """Up to ``limit`` changes after the entry id ``after`` (from the oldest kept, with
        none), oldest first; with ``block_ms``, waits that long for a first one."""
        return stream_page(self.redis, changes_key(tenant), "change", after, limit, block_ms)
