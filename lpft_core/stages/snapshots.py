"""Atomic torch saves of a job's state, so that a rerun resumes where an interrupted run
stopped: the training state after each epoch (``stages.training``) and the files of a job's
checkpoint directory (``lpft_core.jobs.checkpoint``). A worker killed mid-write leaves the
previous version. The files are pickles read back with ``torch.load(weights_only=False)``:
the directory is the job's own, written by the same code, never user input."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def save_checkpoint(value: Any, path: Path) -> None:
    """``torch.save`` ``value`` to ``path`` atomically."""
    write_atomically(path, lambda file: torch.save(value, file))


def load_checkpoint(path: Path) -> Any:
    """What ``save_checkpoint`` wrote to ``path``, with every tensor on the CPU (restoring
    copies them where they belong; RNG states must be CPU tensors)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, sync it, then rename it to
    ``path``: readers, and a run killed mid-write, see the old file or the new one whole."""
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
