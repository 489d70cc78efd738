"""Where the stores keep what must outlive Redis: the shared artifact volume."""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Volume:
    """The paths of the artifact volume the API and the workers share."""

    root: Path

    def job_dir(self, job_id: str) -> Path:
        """Where a job's model and durable copies live."""
        return self.root / "jobs" / job_id

    def model_dir(self, job_id: str) -> Path:
        """The artifact directory a job's model is written to."""
        return self.job_dir(job_id) / "model"

    def checkpoint_dir(self, job_id: str) -> Path:
        """Where a finetune job keeps its last completed epoch, to resume a lost run."""
        return self.job_dir(job_id) / "checkpoint"

    def dataset_path(self, dataset_id: str) -> Path:
        """The JSONL file of an uploaded dataset."""
        return self.root / "datasets" / f"{dataset_id}.jsonl"


def safe_id(value: str) -> bool:
    """Ids become file names; refuse anything that could leave the artifact directory."""
    return value.replace("-", "").isalnum()


def tree_bytes(directory: Path) -> int:
    """The bytes of the files under ``directory``; one removed meanwhile (a stale archive, a
    partial file renamed) counts nothing."""
    total = 0
    for path in directory.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size if path.is_file() else 0
    return total


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
