"""How a training process tells its worker what the job came to.

The training process does not write the job's final state itself: it writes its outcome to a
file the worker named, and exits; the worker's supervisor records it (``JobSupervisor``),
the one place a worker ends a job. A process killed before writing leaves no file, which the
supervisor records as a death rather than reading half an outcome: the file appears whole,
by rename, or not at all.
"""

from __future__ import annotations

import os
from pathlib import Path

from lpft_contract.records import ErrorInfo, JobStatus
from pydantic import BaseModel, ValidationError, field_validator


class Outcome(BaseModel):
    """A finished run: ``succeeded``, ``failed`` with its error, or ``cancelled``."""

    status: JobStatus
    error: ErrorInfo | None = None
    #: The process goes on after this outcome, writing the job's trackers (MLflow): the
    #: supervisor records the outcome at once instead of when the process exits.
    tracking: bool = False

    @field_validator("status")
    @classmethod
    def _final(cls, status: JobStatus) -> JobStatus:
        if not status.is_terminal:
            raise ValueError(f"an outcome is a final status, not {status.value}")
        return status

    def write(self, path: Path) -> None:
        """Write the outcome to ``path`` whole, or not at all."""
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(self.model_dump_json())
        os.replace(partial, path)

    @classmethod
    def read(cls, path: Path) -> Outcome | None:
        """The outcome at ``path``; ``None`` if the process wrote none (or a bad one)."""
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            return None
