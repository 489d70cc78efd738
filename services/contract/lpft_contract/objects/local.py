"""The default backend: a plain directory. Keys are paths under the root, so the layout is
today's (``jobs/<id>/...``, ``datasets/<id>.jsonl``) and a directory written before the store
existed reads as a store. No dependency beyond the standard library."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import ObjectNotFound, ObjectStoreUnavailable
from .keys import validate_key, validate_prefix
from .protocol import ObjectInfo

CHUNK = 1024 * 1024
#: The temporary files an atomic write leaves while it runs; never listed as objects.
PARTIAL = re.compile(r"^\..+\.[0-9a-f]{32}\.partial$")


def partial_path(path: Path) -> Path:
    """A unique temporary name beside ``path``: a rename onto ``path`` is then atomic."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")


def version_of(status: os.stat_result) -> str:
    """A version tag for a file: an atomic write makes a new inode with a new mtime, so any
    rewrite changes it; no hash to compute or store."""
    return f"{status.st_ino:x}-{status.st_mtime_ns:x}-{status.st_size:x}"


class LocalObjectStore:
    """Objects as files under ``root``; every write goes through a temporary file in the
    target's directory and ``os.replace``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _info(self, key: str, path: Path) -> ObjectInfo:
        status = path.stat()
        return ObjectInfo(key=key, size=status.st_size, etag=version_of(status))

    def _replace_with(self, key: str, write: Callable[[Path], object]) -> ObjectInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(path)
        try:
            write(partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return self._info(key, path)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return self._replace_with(key, lambda partial: partial.write_bytes(data))

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        return self._replace_with(key, lambda partial: shutil.copyfile(path, partial))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as missing:
            raise ObjectNotFound(key) from missing

    def stream(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            source = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as missing:
            raise ObjectNotFound(key) from missing
        return self._chunks(source)

    @staticmethod
    def _chunks(source: BinaryIO) -> Iterator[bytes]:
        with source:
            while chunk := source.read(CHUNK):
                yield chunk

    def download(self, key: str, path: Path) -> ObjectInfo:
        source = self._path(key)
        try:
            info = self._info(key, source)
        except (FileNotFoundError, NotADirectoryError) as missing:
            raise ObjectNotFound(key) from missing
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(path)
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, path)
        except FileNotFoundError as missing:
            raise ObjectNotFound(key) from missing
        finally:
            partial.unlink(missing_ok=True)
        return info

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self.root / validate_prefix(prefix, allow_root=True) if prefix else self.root
        found = []
        for directory, _, names in os.walk(base):
            for name in names:
                if PARTIAL.match(name):
                    continue
                path = Path(directory, name)
                key = path.relative_to(self.root).as_posix()
                try:
                    found.append(self._info(key, path))
                except FileNotFoundError:  # removed while listed
                    continue
        return sorted(found, key=lambda info: info.key)

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            return self._info(key, path) if path.is_file() else None
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except IsADirectoryError:  # a prefix, not an object: nothing stored under this key
            pass

    def delete_prefix(self, prefix: str) -> int:
        base = self.root / validate_prefix(prefix)
        count = len(self.list(prefix))
        if base.is_dir():
            shutil.rmtree(base, ignore_errors=True)
        return count

    def check(self, *, write: bool = True) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if write:
                probe = partial_path(self.root / "check")
                probe.write_bytes(b"")
                probe.unlink()
        except OSError as failed:
            raise ObjectStoreUnavailable(
                f"artifact directory {self.root} is not writable ({failed.strerror}); "
                "fix LPFT_ARTIFACTS_URL (or LPFT_ARTIFACTS_DIR) or the directory's permissions"
            ) from failed
