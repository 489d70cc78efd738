"""The S3-compatible backend (AWS S3, MinIO, Ceph RGW, Cloudflare R2, GCS's S3 interface),
over obstore: a Rust client with its own multipart uploads, streamed reads and per-request
retries (benchmarks/RESULTS.md, "S3 clients against moto", says why obstore). obstore is the
``[s3]`` extra and is imported only when this backend is built.

Retries come in two layers with one budget, ``retry_seconds``: obstore retries each HTTP
request (a refused or dropped connection, any 5xx, 503 SlowDown) with exponential backoff and
jitter for up to the budget, which lets a multipart upload retry one part instead of the file;
around each call, retry.with_retries retries what obstore cannot (a body cut short mid-stream
resumes at the byte it stopped at, against the same ETag) for what is left of the budget. When
it is spent the call raises ObjectStoreUnavailable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from .errors import IntegrityError, ObjectNotFound, ObjectStoreError, ObjectStoreUnavailable
from .keys import validate_key, validate_prefix
from .local import partial_path
from .protocol import ObjectInfo
from .retry import FIRST_WAIT_S, LONGEST_WAIT_S, backoff_s, with_retries
from .s3_config import S3Settings
from .s3_errors import translate

T = TypeVar("T")

#: Multipart part size: obstore buffers at most PART_BYTES x CONCURRENCY of an upload.
PART_BYTES = 8 * 1024 * 1024
CONCURRENCY = 8
READ_CHUNK = 4 * 1024 * 1024
CHECK_KEY = ".lpft-check"
#: obstore's request budget is also bounded by a count; the time budget is the one that counts.
MAX_REQUEST_RETRIES = 1_000


class S3ObjectStore:
    """Objects in ``bucket`` under ``prefix``; keys are relative to the prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        retry_seconds: float = 60.0,
        part_bytes: int = PART_BYTES,
        settings: S3Settings | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        from obstore.store import S3Store

        self.bucket = bucket
        self.prefix = validate_prefix(prefix.strip("/"), allow_root=True)
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.retry_seconds = retry_seconds
        self.part_bytes = part_bytes
        self.settings = settings or S3Settings.from_environ(environ)
        self._store = S3Store(
            bucket,
            prefix=self.prefix or None,
            client_options={"allow_http": self.settings.allow_http},
            retry_config={
                "max_retries": MAX_REQUEST_RETRIES,
                "retry_timeout": timedelta(seconds=retry_seconds),
                "backoff": {
                    "init_backoff": timedelta(seconds=FIRST_WAIT_S),
                    "max_backoff": timedelta(seconds=LONGEST_WAIT_S),
                    "base": 2,
                },
            },
            **self.settings.store_options(),
        )

    def _call(self, what: str, key: str | None, call: Callable[[], T]) -> T:
        """``call()`` with obstore's failures translated and the transient ones retried."""

        def attempt() -> T:
            try:
                return call()
            except ObjectStoreError:
                raise
            except (ValueError, TypeError):
                raise
            except Exception as failed:  # obstore's errors, translated by type and message
                raise translate(failed, url=self.url, key=key) from failed

        return with_retries(attempt, budget_s=self.retry_seconds, what=f"{what} {self.url}")

    def _info(self, meta: Mapping[str, Any]) -> ObjectInfo:
        return ObjectInfo(key=meta["path"], size=meta["size"], etag=meta.get("e_tag") or "")

    def _put(self, key: str, body: bytes | Path) -> ObjectInfo:
        import obstore

        validate_key(key)
        result = self._call(
            "put",
            key,
            lambda: obstore.put(
                self._store,
                key,
                body,
                chunk_size=self.part_bytes,
                max_concurrency=CONCURRENCY,
            ),
        )
        size = len(body) if isinstance(body, bytes) else body.stat().st_size
        return ObjectInfo(key=key, size=size, etag=result.get("e_tag") or "")

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return self._put(key, bytes(data))

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        return self._put(key, Path(path))

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.stream(key))

    def stream(self, key: str) -> Iterator[bytes]:
        return self._open(key)[1]

    def _open(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        """The object's size and ETag, and its body as chunks."""
        import obstore

        validate_key(key)
        result = self._call("get", key, lambda: obstore.get(self._store, key))
        meta = result.meta
        info = ObjectInfo(key=key, size=meta["size"], etag=meta.get("e_tag") or "")
        return info, self._chunks(info, iter(result.stream(min_chunk_size=READ_CHUNK)))

    def _chunks(self, info: ObjectInfo, body: Iterator[bytes]) -> Iterator[bytes]:
        """The chunks of ``body``; a read cut short resumes from the byte reached, with
        If-Match on the ETag so that a rewrite meanwhile is an IntegrityError, not a splice,
        until the retry budget has passed with no byte read."""
        import obstore
        from obstore.exceptions import PreconditionError

        key, offset = info.key, 0
        pending: Iterator[bytes] | None = body
        progressed, failures = time.monotonic(), 0

        def reopen() -> Iterator[bytes]:
            options: dict[str, Any] = {"range": {"offset": offset}}
            if info.etag:
                options["if_match"] = info.etag
            try:
                result = obstore.get(self._store, key, options=options)
            except PreconditionError as changed:
                raise IntegrityError(f"{key!r} in {self.url} changed while read") from changed
            return iter(result.stream(min_chunk_size=READ_CHUNK))

        while offset < info.size:
            if pending is None:
                time.sleep(backoff_s(failures))
                failures += 1
                pending = self._call("resume get", key, reopen)
            try:
                chunk = next(pending, b"")
            except Exception as failed:  # obstore's errors, translated by type and message
                error = translate(failed, url=self.url, key=key)
                stalled = time.monotonic() - progressed
                if not isinstance(error, ObjectStoreUnavailable) or stalled > self.retry_seconds:
                    raise error from failed
                pending = None
                continue
            if not chunk:  # the body ended before its size: resume where it stopped
                if time.monotonic() - progressed > self.retry_seconds:
                    raise ObjectStoreUnavailable(f"{key!r} in {self.url}: the body ends early")
                pending = None
                continue
            offset += len(chunk)
            progressed, failures = time.monotonic(), 0
            yield bytes(chunk)

    def download(self, key: str, path: Path) -> ObjectInfo:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        info, chunks = self._open(key)
        partial = partial_path(path)
        try:
            with partial.open("wb") as target:
                for chunk in chunks:
                    target.write(chunk)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return info

    def list(self, prefix: str) -> list[ObjectInfo]:
        import obstore

        validate_prefix(prefix, allow_root=True)

        def listing() -> list[ObjectInfo]:
            found = []
            for page in obstore.list(self._store, prefix or None):
                found.extend(self._info(meta) for meta in page)
            return found

        return sorted(self._call("list", prefix, listing), key=lambda info: info.key)

    def stat(self, key: str) -> ObjectInfo | None:
        import obstore

        validate_key(key)
        try:
            return self._info(self._call("head", key, lambda: obstore.head(self._store, key)))
        except ObjectNotFound:
            return None

    def delete(self, key: str) -> None:
        import obstore

        validate_key(key)
        try:
            self._call("delete", key, lambda: obstore.delete(self._store, key))
        except ObjectNotFound:
            pass

    def delete_prefix(self, prefix: str) -> int:
        import obstore

        validate_prefix(prefix)
        keys = [info.key for info in self.list(prefix)]
        for start in range(0, len(keys), 1000):  # S3's bulk delete takes 1,000 keys
            batch = keys[start : start + 1000]
            self._call("delete", prefix, lambda batch=batch: obstore.delete(self._store, batch))
        return len(keys)

    def check(self, *, write: bool = True) -> None:
        """A listing proves the endpoint, the credentials and the bucket (a HEAD cannot tell a
        missing bucket from a missing key); a put and a delete prove the right to write."""
        import obstore

        self._call(
            "check",
            None,
            lambda: next(iter(obstore.list(self._store, CHECK_KEY, chunk_size=1)), None),
        )
        if write:
            self.put_bytes(CHECK_KEY, b"")
            self.delete(CHECK_KEY)
