"""The files a succeeded job leaves: its model as an archive, its report and plots."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path
from typing import Literal

from lpft_jobstore.records import JobRecord, JobStatus
from lpft_jobstore.store import Store

from lpft_api.errors import Conflict, NotFound


def archive(job: JobRecord, store: Store) -> Path:
    """The job's model directory as a ``.tar.gz``, built on first download and again after
    the model changed (a re-calibration writes a new temperature).

    Raises:
        Conflict: the job has not succeeded.
    """
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job.id} is {job.status.value}; artifacts exist once it succeeded")
    job_dir = store.job_dir(job.id)
    path = job_dir / f"model-{_content_version(store.model_dir(job.id))}.tar.gz"
    if not path.is_file():
        # Built under a unique name, then renamed: a concurrent download never sees a
        # half-written archive. Archives of earlier versions (before a re-calibration) go.
        for stale in job_dir.glob("model-*.tar.gz"):
            if stale != path:  # a concurrent download may have just built this one
                stale.unlink(missing_ok=True)
        base = job_dir / f".model-{uuid.uuid4().hex}"
        partial = Path(f"{base}.tar.gz")  # what make_archive writes
        try:
            shutil.make_archive(str(base), "gztar", root_dir=job_dir, base_dir="model")
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
    return path


def report(job: JobRecord, store: Store, format: Literal["html", "md"]) -> Path:
    """The job's report page (``report.html``) or its markdown twin (``report.md``).

    Raises:
        Conflict: the job has not succeeded. NotFound: its kind writes no report.
    """
    return _finished_file(job, store, f"report.{format}")


def plot(job: JobRecord, store: Store, name: str) -> Path:
    """One picture of the job's report, ``plots/<name>.png``.

    Raises:
        Conflict: the job has not succeeded. NotFound: the report has no such picture.
    """
    return _finished_file(job, store, f"plots/{name}.png")


def _finished_file(job: JobRecord, store: Store, relative: str) -> Path:
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job.id} is {job.status.value}; its report exists once it succeeded")
    path = store.model_dir(job.id) / relative
    if not path.is_file():
        raise NotFound(f"job {job.id} has no {relative}")
    return path


def _content_version(directory: Path) -> str:
    """A digest of the names, sizes and modification times of the directory's files: any
    change to the model (a new temperature, say) makes a new archive."""
    stats = sorted(
        (str(path.relative_to(directory)), path.stat().st_size, path.stat().st_mtime_ns)
        for path in directory.rglob("*")
        if path.is_file()
    )
    return hashlib.sha256(repr(stats).encode()).hexdigest()[:16]
