"""One setting chooses the store: ``s3://bucket/prefix`` is the S3 backend, a plain path or a
``file://`` URL the local directory (LPFT_ARTIFACTS_URL; LPFT_ARTIFACTS_DIR is its local
form)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .local import LocalObjectStore
from .protocol import ObjectStore


def object_store_from_url(url: str, *, retry_seconds: float = 60.0) -> ObjectStore:
    """The store ``url`` names; ValueError for a scheme it does not know."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"{url!r} names no bucket: write s3://bucket/prefix")
        from .s3 import S3ObjectStore

        return S3ObjectStore(parts.netloc, parts.path.strip("/"), retry_seconds=retry_seconds)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{url!r}: a file:// URL names a local path (file:///dir)")
        return LocalObjectStore(unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:  # "C:" is a drive, not a scheme
        raise ValueError(f"{url!r}: the artifact store is s3://bucket/prefix, file:// or a path")
    if not url:
        raise ValueError("the artifact store's URL is empty")
    return LocalObjectStore(url)
