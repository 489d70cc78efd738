"""What can go wrong with the object store, one type per thing an operator or a caller does
differently about it: wait (unavailable), fix a setting (auth, bucket), or treat the data as
absent or damaged (not found, integrity)."""

from __future__ import annotations


class ObjectStoreError(Exception):
    """Any failure of the object store that is not a bad argument (those are ValueError)."""


class ObjectStoreUnavailable(ObjectStoreError):
    """The store could not be reached, or kept failing, for the whole retry budget."""


class ObjectStoreAuthError(ObjectStoreError):
    """The store refused the credentials, or none could be found."""


class BucketMissing(ObjectStoreError):
    """The bucket named by the store's URL does not exist."""


class ObjectNotFound(ObjectStoreError):
    """No object under the key."""

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message or f"no object at {key!r}")
        self.key = key


class NotPublished(ObjectNotFound):
    """A prefix holds no manifest: its set of files is absent or still being written."""


class IntegrityError(ObjectStoreError):
    """An object differs from what its manifest says (size or SHA-256), or changed while it
    was read."""
