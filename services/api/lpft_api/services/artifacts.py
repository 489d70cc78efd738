"""The files a succeeded job leaves: its output as an archive, its report and plots.

An archive is built off the request path, on a thread of its own: a comparison's several
models take seconds to compress, longer than a client should wait for an answer. Until it is
built, a request is told to come back (202); once built, it is streamed from disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from lpft_contract import logs
from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores
from lpft_contract.volume import Volume

from lpft_api.errors import ApiError, BuildFailed, Conflict, NotFound
from lpft_api.services.storage import check_room
from lpft_api.services.sweeps import serving
from lpft_core import ExportFormat, JobKind, LpftError, export_model, job_kind

#: Seconds a client is told to wait (``Retry-After``) before it asks again for an archive
#: that is being built.
BUILD_RETRY_AFTER_S = 2
logger = logging.getLogger("lpft.api")
#: The archives this process is building, so that repeated requests start one build.
_building: set[Path] = set()
#: Builds that failed, by archive, each kept until the next request for it raises it: without
#: this a build that always fails would answer 202 until the client gave up.
_failed: dict[Path, ApiError | LpftError] = {}
_building_lock = threading.Lock()
#: Builds run here, a few at a time: an onnx export runs torch in the API process, and one
#: per request could exhaust its memory.
_builder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="build")


def archive(job: JobRecord, stores: Stores, quota: int) -> Path | None:
    """The job's output directory as a ``.tar.gz``, or None while it is being built (and
    again after the directory changed: a re-calibration writes a new temperature).

    What it holds, by kind: ``finetune``, the model directory; ``compare``, every method's
    model (``model/<method>/``) beside the metrics and the report; ``analysis``, the metrics
    and the report. A ``recalibrate`` job writes no files of its own: the temperature it fits
    goes into its source job's model, hence into that job's archive.

    Raises:
        Conflict: the job has not succeeded, or is a recalibrate job.
        QuotaExceeded: the archive must be built and the tenant's stored bytes (``quota``
            at most) are used up.
    """
    if job.kind == JobKind.RECALIBRATE:
        raise Conflict(
            f"job {job.id} is a recalibrate job and has no files of its own; the temperature "
            f"it fits is in job {job.source_job}'s model: GET /jobs/{job.source_job}/artifacts"
        )
    _succeeded(job, "artifacts")
    model_dir = stores.copies.directory(Volume.model_key(job.id))
    return _built_once(
        stores, job, quota, "model", model_dir, lambda target: _write_archive(model_dir, target)
    )


def export(job: JobRecord, stores: Stores, fmt: ExportFormat, quota: int) -> Path | None:
    """The job's model for another runtime (``lpft_core.serving.export``), or None while it
    is being built (on the first download, and again after the model changed).

    Raises:
        Conflict: the job is not a succeeded finetune job.
        QuotaExceeded: as for ``archive``.
    """
    if not job_kind(job.kind).serves:
        raise Conflict(f"job {job.id} is a {job.kind} job; export a finetune job's model")
    _succeeded(job, "exports")
    job = serving(job, stores)  # a sweep's best trial
    model_dir = stores.copies.directory(Volume.model_key(job.id))
    return _built_once(
        stores,
        job,
        quota,
        f"export-{fmt}",
        model_dir,
        lambda target: export_model(model_dir, target, fmt),
    )


def _succeeded(job: JobRecord, what: str) -> None:
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job.id} is {job.status.value}; {what} exist once it succeeded")


def _built_once(
    stores: Stores,
    job: JobRecord,
    quota: int,
    name: str,
    source: Path,
    build: Callable[[Path], object],
) -> Path | None:
    """``<name>-<version of source>.tar.gz`` in the job's directory once it is built (by this
    replica, or by another: it is kept in the artifact store); until then None, and
    ``build(path)`` runs on the builders' pool. The version is the model's in the store
    when there is one (alike on every replica), else a digest of its files.

    Raises:
        QuotaExceeded: the archive is not built and the tenant's stored bytes reached
            ``quota``: it would add about a model's size.
        ApiError, LpftError: the last build of this archive failed; it is raised once (a
            user error such as an unexportable model as its 4xx, anything else as
            ``BuildFailed``, a 500 whose error id names the logged traceback), and the
            request after it builds again.
    """
    stored = stores.copies.version(Volume.model_key(job.id))
    version = re.sub(r"[^0-9A-Za-z]", "", stored) if stored else _content_version(source)
    key = Volume.job_key(job.id, f"{name}-{version}.tar.gz")
    if (built := stores.copies.file(key)) is not None:
        return built
    path = stores.volume.path(key)
    check_room(stores, job.tenant, quota, "this archive")
    with _building_lock:
        failure = _failed.pop(path, None)
        if failure is not None:
            raise failure
        if path in _building:
            return None
        _building.add(path)
    _builder.submit(_build, stores, job, name, key, build)
    return None


def _build(
    stores: Stores, job: JobRecord, name: str, key: str, build: Callable[[Path], object]
) -> None:
    """Build under a unique name, then rename: a concurrent download never sees a
    half-written archive; then store it for the other replicas. Archives of earlier versions
    (before a re-calibration) go once the new one is in place. A new archive counts toward
    the tenant's stored bytes; one built for a job deleted meanwhile is not kept."""
    path = stores.volume.path(key)
    job_dir = path.parent
    partial = job_dir / f".{name}-{uuid.uuid4().hex}.tar.gz"
    try:
        build(partial)
        partial.replace(path)
        if not stores.volume.shares_disk:
            stores.volume.objects.put_file(key, path)
        for stale in stores.volume.objects.list(Volume.job_key(job.id)):
            stale_name = stale.key.rsplit("/", 1)[1]
            if _is_version_of(stale_name, name) and stale.key != key:
                stores.volume.objects.delete(stale.key)  # another replica may serve this one
                stores.volume.path(stale.key).unlink(missing_ok=True)
        if stores.jobs.get_job(job.id) is None:  # deleted while it was built
            stores.volume.remove(key)
            return
        stores.quotas.measure_job(job)
    except FileNotFoundError:  # the job was deleted meanwhile: nobody will download it
        logger.info("stopped building %s: its job is gone", path.name)
    except (ApiError, LpftError) as error:  # the user's to fix (an unexportable model)
        with _building_lock:
            _failed[path] = error
    except Exception:  # a thread's error must reach the log and its client
        error_id = logs.new_error_id()
        logger.exception("building %s failed", path.name)
        with _building_lock:
            _failed[path] = BuildFailed(
                f"building {path.name} failed; the operator can find it in the API log under "
                f"{error_id}. Ask again to retry",
                error_id=error_id,
            )
    finally:
        partial.unlink(missing_ok=True)
        with _building_lock:
            _building.discard(path)


def _is_version_of(file_name: str, name: str) -> bool:
    """Whether ``file_name`` is a version of the archive ``name`` (``model-<version>.tar.gz``
    is one of ``model``'s, not of ``model-onnx``'s)."""
    version = file_name.removeprefix(f"{name}-").removesuffix(".tar.gz")
    return file_name != version and file_name.endswith(".tar.gz") and version.isalnum()


def _write_archive(directory: Path, target: Path) -> None:
    """``directory`` as ``model/…`` in a gzipped tar. Dot-named entries are other writers'
    scratch files (a re-calibration's ``.calibration.json.partial``, a serving graph's
    ``.build-*``), renamed away at any moment: they are left out, as is a file that vanishes
    while the archive is written."""
    with tarfile.open(target, "w:gz") as tar:
        for path in _files(directory):
            try:
                tar.add(path, arcname=f"model/{path.relative_to(directory)}", recursive=False)
            except FileNotFoundError:
                continue


def _files(directory: Path) -> list[Path]:
    """The files below ``directory``, in a stable order, without dot-named entries."""
    found = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
    return found


def report(job: JobRecord, stores: Stores, format: Literal["html", "md"]) -> Path:
    """The job's report page (``report.html``) or its markdown twin (``report.md``).

    Raises:
        Conflict: the job has not succeeded. NotFound: its kind writes no report.
    """
    return _finished_file(job, stores, f"report.{format}")


def plot(job: JobRecord, stores: Stores, name: str) -> Path:
    """One picture of the job's report, ``plots/<name>.png``.

    Raises:
        Conflict: the job has not succeeded. NotFound: the report has no such picture.
    """
    return _finished_file(job, stores, f"plots/{name}.png")


def _finished_file(job: JobRecord, stores: Stores, relative: str) -> Path:
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job.id} is {job.status.value}; its report exists once it succeeded")
    path = stores.copies.file(f"{Volume.model_key(job.id)}/{relative}")
    if path is None:
        raise NotFound(f"job {job.id} has no {relative}")
    return path


def _content_version(directory: Path) -> str:
    """A digest of the names, sizes and modification times of the directory's files (its
    scratch files aside): any change to the model (a new temperature, say) makes a new
    archive."""
    stats = []
    for path in _files(directory):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        stats.append((str(path.relative_to(directory)), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(repr(stats).encode()).hexdigest()[:16]
