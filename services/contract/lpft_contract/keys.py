"""Where the stores keep things in Redis: every key starts with ``lpft:``, and each store
builds its own from the parts here, so a transaction that spans two stores (a delete drops a
job's record and its quota count together) names the same keys they do."""

from __future__ import annotations

PREFIX = "lpft"


def key(*parts: str) -> str:
    """The Redis key ``lpft:<part>:<part>...``."""
    return ":".join((PREFIX, *parts))
