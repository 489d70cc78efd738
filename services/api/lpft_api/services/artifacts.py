"""The files a succeeded job leaves: its model as an archive, its report and plots."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from lpft_jobstore.records import JobRecord, JobStatus
from lpft_jobstore.store import Store

from lpft_api.errors import Conflict, NotFound
from lpft_core.jobs.kinds import JobKind
from lpft_core.serving.export import ExportFormat, export_model


def archive(job: JobRecord, store: Store) -> Path:
    """The job's model directory as a ``.tar.gz``, built on first download and again after
    the model changed (a re-calibration writes a new temperature).

    Raises:
        Conflict: the job has not succeeded.
    """
    _succeeded(job, "artifacts")
    job_dir = store.job_dir(job.id)
    return _built_once(
        store,
        job,
        "model",
        store.model_dir(job.id),
        lambda target: shutil.make_archive(
            str(target)[: -len(".tar.gz")], "gztar", root_dir=job_dir, base_dir="model"
        ),
    )


def export(job: JobRecord, store: Store, fmt: ExportFormat) -> Path:
    """The job's model for another runtime (``lpft_core.serving.export``), built on first
    download and again after the model changed.

    Raises:
        Conflict: the job is not a succeeded finetune job.
    """
    if job.kind != JobKind.FINETUNE:
        raise Conflict(f"job {job.id} is a {job.kind} job; export a finetune job's model")
    _succeeded(job, "exports")
    model_dir = store.model_dir(job.id)
    return _built_once(
        store,
        job,
        f"export-{fmt}",
        model_dir,
        lambda target: export_model(model_dir, target, fmt),
    )


def _succeeded(job: JobRecord, what: str) -> None:
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job.id} is {job.status.value}; {what} exist once it succeeded")


def _built_once(
    store: Store, job: JobRecord, name: str, source: Path, build: Callable[[Path], object]
) -> Path:
    """``<name>-<version of source>.tar.gz`` in the job's directory, built by ``build(path)``
    when missing. Built under a unique name, then renamed: a concurrent download never sees a
    half-written archive. Archives of earlier versions (before a re-calibration) go. A new
    archive counts toward the tenant's stored bytes."""
    job_dir = store.job_dir(job.id)
    path = job_dir / f"{name}-{_content_version(source)}.tar.gz"
    if not path.is_file():
        for stale in job_dir.glob(f"{name}-*.tar.gz"):
            if stale != path:  # a concurrent download may have just built this one
                stale.unlink(missing_ok=True)
        partial = job_dir / f".{name}-{uuid.uuid4().hex}.tar.gz"
        try:
            build(partial)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        store.measure_job(job)
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
