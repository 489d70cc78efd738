"""The storage interface the service uses for everything that crosses processes, and the
record it answers with. Two backends implement it: LocalObjectStore (a directory, the default)
and S3ObjectStore (any S3-compatible bucket). Publishing a directory atomically is built once
on top of it, in published.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key (relative to the store's root), its size, and a version tag
    that changes whenever the object is rewritten (S3's ETag; a local file's inode, mtime and
    size), which caches key on."""

    key: str
    size: int
    etag: str


@runtime_checkable
class ObjectStore(Protocol):
    """Keys are ``/``-separated and validated before any I/O (keys.validate_key): a bad key is
    a ValueError. A prefix names a directory-like group: ``jobs/j-1`` holds ``jobs/j-1/a``,
    never ``jobs/j-10/a``. Writes are atomic: a reader sees the old object or the new one,
    never part of one. Failures are the types in errors.py."""

    #: Where the store is, for messages and logs (``s3://bucket/prefix`` or a directory).
    url: str

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Store the file at ``path`` under ``key``, streamed (multipart when it is large)."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The whole object, for small ones (manifests, JSON documents); ObjectNotFound."""
        ...

    def stream(self, key: str) -> Iterator[bytes]:
        """The object in chunks of bounded size; ObjectNotFound (at the call) when there is
        none."""
        ...

    def download(self, key: str, path: Path) -> ObjectInfo:
        """Stream the object to ``path`` through a temporary file and a rename: ``path`` is
        the whole object or untouched."""
        ...

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix`` (``""``: the whole store), sorted by key."""
        ...

    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size and version, or None when there is none."""
        ...

    def delete(self, key: str) -> None:
        """Remove one object; a missing one is not an error."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix`` (never the whole store); how many were."""
        ...

    def check(self, *, write: bool = True) -> None:
        """Prove the store usable now (reachable, credentials accepted, bucket present and,
        with ``write``, writable), or raise the error that says which setting to fix."""
        ...
