"""Writing a download to disk as it arrives."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def partial_file(path: Path) -> Iterator[BinaryIO]:
    """A file to write chunks to: ``<path>.part`` while the download runs, renamed to
    ``path`` once it is whole, removed if it fails, so ``path`` never holds half an
    archive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("wb") as handle:
            yield handle
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
