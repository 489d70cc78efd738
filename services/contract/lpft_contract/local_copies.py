"""This process's copies of what it reads from the artifact store: a job's model for serving
and downloads, a finished job's log.

A copy is fetched on first use and again once the store holds a newer version (its
manifest's ETag): after a re-calibration done through another replica, the next request
finds the new temperature. The version is asked for at most every ``recheck_s`` seconds per
model, so serving does not pay a round trip to the store per request; a re-calibration
reaches a replica that is serving the model within that time. With the local backend the
store is this disk, and the copies are the files themselves.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from lpft_contract.objects import MANIFEST, NotPublished, ObjectNotFound, fetch, join
from lpft_contract.volume import Volume

#: Seconds between two checks of a served model's version in the store.
RECHECK_S = 2.0


class LocalCopies:
    """Fetches published sets and single objects into the volume's root, once per version."""

    def __init__(self, volume: Volume, recheck_s: float = RECHECK_S) -> None:
        self.volume = volume
        self.recheck_s = recheck_s
        #: prefix -> (the version held here, when the store was last asked)
        self._held: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def directory(self, prefix: str) -> Path:
        """The local copy of the set published under ``prefix``, current to within
        ``recheck_s``. Blocks while it is fetched; NotPublished when there is no such set."""
        local = self.volume.path(prefix)
        if self.volume.shares_disk:
            return local
        with self._lock(prefix):
            held = self._held.get(prefix)
            now = time.monotonic()
            if held is not None and now - held[1] < self.recheck_s and local.is_dir():
                return local
            info = self.volume.objects.stat(join(prefix, MANIFEST))
            if info is None:
                raise NotPublished(prefix, f"nothing is published under {prefix!r}")
            if held is None or held[0] != info.etag or not local.is_dir():
                fetch(self.volume.objects, prefix, local)
            self._held[prefix] = (info.etag, now)
        return local

    def current(self, prefix: str) -> Path | None:
        """The local copy of ``prefix`` when it needs no call to the store (the local
        backend, or a copy checked less than ``recheck_s`` ago); else None: ask
        ``directory``, which may block."""
        local = self.volume.path(prefix)
        if self.volume.shares_disk:
            return local
        held = self._held.get(prefix)
        if held is not None and time.monotonic() - held[1] < self.recheck_s:
            return local
        return None

    def version(self, prefix: str) -> str | None:
        """The store's version of the set this process last fetched or checked under
        ``prefix`` (its manifest's ETag), the same on every replica; None with the local
        backend, or before ``directory`` was asked for it."""
        held = self._held.get(prefix)
        return None if held is None or self.volume.shares_disk else held[0]

    def file(self, key: str) -> Path | None:
        """The local copy of the object ``key`` (fetched when the store's is another
        version), or None when the store has none."""
        local = self.volume.path(key)
        if self.volume.shares_disk:
            return local if local.is_file() else None
        with self._lock(key):
            info = self.volume.objects.stat(key)
            if info is None:
                return None
            held = self._held.get(key)
            if held is None or held[0] != info.etag or not local.is_file():
                try:
                    self.volume.objects.download(key, local)
                except ObjectNotFound:  # deleted since the stat
                    return None
            self._held[key] = (info.etag, time.monotonic())
        return local

    def _lock(self, prefix: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(prefix, threading.Lock())
