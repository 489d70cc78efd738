"""The manifest of a published directory: each file's relative path, size and SHA-256. It is
written after every file it names, so its presence is what makes a set complete, and a reader
checks each download against it."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .keys import validate_key

#: The manifest's key under a published prefix.
MANIFEST = "_manifest.json"
FORMAT = 1
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a published set: its path relative to the set, its size and SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A published set of files, in path order."""

    files: tuple[ManifestEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> bytes:
        files = [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in self.files]
        return json.dumps({"format": FORMAT, "files": files}, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """The manifest in ``data``; a path in it is held to the key rule, so a forged
        manifest cannot make a fetch write outside its destination."""
        document = json.loads(data)
        if document.get("format") != FORMAT:
            raise ValueError(f"manifest format {document.get('format')!r}, expected {FORMAT}")
        return cls(
            files=tuple(
                ManifestEntry(
                    path=validate_key(item["path"]),
                    size=int(item["size"]),
                    sha256=str(item["sha256"]),
                )
                for item in document["files"]
            )
        )


class Digest:
    """A running size and SHA-256 over chunks as they pass."""

    def __init__(self) -> None:
        self.size = 0
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._hash.update(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def digest_file(path: Path) -> Digest:
    """The size and SHA-256 of the file at ``path``, read in bounded chunks."""
    digest = Digest()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest


def directory_files(directory: Path) -> Iterable[tuple[str, Path]]:
    """Each regular file under ``directory`` as (relative key, path), in key order; links are
    followed, so a set never stores a link that means nothing on another machine."""
    found = []
    for parent, _, names in os.walk(directory, followlinks=True):
        for name in names:
            path = Path(parent, name)
            if path.is_file():
                found.append((validate_key(path.relative_to(directory).as_posix()), path))
    return sorted(found)
