"""Checkpoints of a job, so that a rerun of the same spec after an interruption (a killed
worker, a cancel) resumes where it stopped and ends with the numbers an uninterrupted run
would have given.

A finetune job's ``checkpoint_dir`` holds:

* ``job.json``: the spec fields that decide the numbers (``job_identity``). A directory
  written for another job is emptied, with a warning, and the job starts from scratch.
* ``probe.pt``: the fitted linear probe; a resumed run installs it and skips LP.
* ``ntk.pt``: the NTK statistics at the start of FT. They are kept rather than recomputed:
  the kernel can take minutes, and once training has moved the model the saved numbers are
  the only record of the starting point.
* ``training.pt``: the FT/LoRA state after the last completed epoch
  (``lpft_core.stages.training.TrainingCheckpoint``).
* ``runs.pt``, in a multi-seed job's directory: the runs that finished
  (``lpft_core.jobs.seeds``); each run keeps the files above in its own ``seed-<s>/``.

A compare or analysis job's holds ``job.json`` and ``finished.pt``: the result of every part
that finished (a compare job's shared probe and each method's metrics, an analysis job's
features, probe and each method's kernel; ``finished_or_run``). Each method a compare job
trains is a finetune job with its own directory inside, so one cut short resumes from its
last epoch.

Every file is written atomically (a temporary file in the same directory, then
``os.replace``), so a worker killed mid-write leaves the previous version. The files are
pickles read back with ``torch.load(weights_only=False)``: the directory is the job's own,
written by the same code, never user input.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lpft_core.config import FinetuneSpec
from lpft_core.events import ProgressCallback, ProgressEvent
from lpft_core.stages.snapshots import load_checkpoint, save_checkpoint, write_atomically

if TYPE_CHECKING:
    from lpft_core.jobs.specs import AnalysisSpec, CompareSpec

IDENTITY = "job.json"
PROBE = "probe.pt"
NTK = "ntk.pt"
TRAINING = "training.pt"
RUNS = "runs.pt"
FINISHED = "finished.pt"
_FILES = (IDENTITY, PROBE, NTK, TRAINING, RUNS, FINISHED)
T = TypeVar("T")


def job_identity(spec: FinetuneSpec | CompareSpec | AnalysisSpec) -> dict[str, Any]:
    """The spec as plain data less where its outputs go: method, model, data paths,
    hyperparameters and the other options that change what the job computes. The files
    behind the data paths are taken to be unchanged (the service's datasets are immutable)."""
    identity = spec.to_dict()
    del identity["output_dir"], identity["checkpoint_dir"]
    return json.loads(json.dumps(identity))


class JobCheckpoint:
    """The checkpoint directory of one job; ``open`` it rather than building one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def open(cls, directory: str | Path, identity: dict[str, Any]) -> JobCheckpoint:
        """The checkpoint of the job ``identity`` in ``directory``, created when missing.

        Files left there by another job are deleted with a warning: resuming from them would
        mix two jobs.
        """
        checkpoint = cls(Path(directory))
        checkpoint.directory.mkdir(parents=True, exist_ok=True)
        marker = checkpoint.directory / IDENTITY
        saved = json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else None
        if saved != identity:
            if saved is not None:
                warnings.warn(
                    f"ignoring the checkpoint in {checkpoint.directory}: it was written for "
                    "another job (method, model, data or hyperparameters differ); starting "
                    "from scratch",
                    stacklevel=2,
                )
            checkpoint._clear()
            text = json.dumps(identity, indent=2).encode()
            write_atomically(marker, lambda file: file.write(text))
        return checkpoint

    def path(self, name: str) -> Path:
        """Where the checkpoint file ``name`` (``PROBE``, ``NTK``, ``TRAINING``) lives."""
        return self.directory / name

    def load(self, name: str) -> Any | None:
        """What ``save`` stored as ``name``, on the CPU; ``None`` when nothing was."""
        path = self.path(name)
        return load_checkpoint(path) if path.exists() else None

    def save(self, name: str, value: Any) -> None:
        """Store ``value`` as ``name``, atomically."""
        save_checkpoint(value, self.path(name))

    def finished(self) -> dict[str, Any]:
        """The result of every part ``finish`` recorded, by the part's name."""
        return self.load(FINISHED) or {}

    def finish(self, part: str, result: Any) -> None:
        """Record ``part`` as finished with ``result``, with those recorded before, in one
        atomic write."""
        self.save(FINISHED, {**self.finished(), part: result})

    def remove(self) -> None:
        """Delete the checkpoint files, and the directory unless something else is in it."""
        self._clear()
        with contextlib.suppress(OSError):
            self.directory.rmdir()

    def _clear(self) -> None:
        for name in _FILES:
            self.path(name).unlink(missing_ok=True)
        for leftover in self.directory.glob(".*.tmp"):  # from writes cut short
            leftover.unlink(missing_ok=True)


def finished_or_run(
    checkpoint: JobCheckpoint | None,
    part: str,
    run: Callable[[], T],
    progress: ProgressCallback,
) -> T:
    """The result of ``part`` that an interrupted run of this job finished, announced as the
    progress event ``<part>/resumed`` with ``already_finished``; else ``run()``, recorded as
    finished once it returned, so whatever it wrote (a method's model) is complete when a
    later run skips it."""
    if checkpoint is None:
        return run()
    done = checkpoint.finished()
    if part in done:
        progress(ProgressEvent(f"{part}/resumed", 1, 1, {"already_finished": 1.0}))
        return done[part]
    result = run()
    checkpoint.finish(part, result)
    return result
