"""What a job reads from the artifact store and what it leaves there, for a worker whose disk
is its own.

Before training, the worker's copy of the store gets the job's inputs: its datasets, its
source job's model, and its last complete checkpoint, so that a job lost with its worker
resumes on any other, from an empty disk. While training, each new checkpoint is published
as a new version (``checkpoint/v-000001``, ...) and the older ones are removed once it is
complete: a worker killed mid-upload leaves the previous version whole. At the end the model
directory is published, its manifest last; a job that rewrote its source's model (a
re-calibration) publishes that one again too.

With the local backend the store is the worker's disk, and all of this is nothing to do.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lpft_contract.logs import JOB_LOG
from lpft_contract.objects import Manifest, ObjectStoreError, fetch, latest_complete, publish
from lpft_contract.objects.manifest import digest_file, directory_files
from lpft_contract.records import JobRecord
from lpft_contract.volume import Volume

#: The versions of a job's checkpoint, under its checkpoint key: they sort by name, and the
#: run (the job's attempt) that wrote one is part of its name, so two runs never write one.
VERSION = "v-{:06d}-run-{:03d}"
logger = logging.getLogger("lpft.store")


@dataclass
class JobFiles:
    """The artifact-store side of one run of ``record`` on this worker."""

    volume: Volume
    record: JobRecord
    #: The published checkpoint version this run last fetched or published.
    checkpoint_version: int = 0
    #: What the checkpoint directory held when last fetched or published (names, sizes,
    #: modification times): unchanged, it is not published again.
    checkpoint_seen: tuple[tuple[str, int, int], ...] = ()
    #: The manifest of the source job's model as fetched, to tell whether the job rewrote it.
    source_manifest: Manifest | None = field(default=None, repr=False)
    #: Whether the job is still this run's. Asked before anything is published: a run whose
    #: job was handed to another worker (its own worker lost) must not write over that one's.
    still_ours: Callable[[], bool] = field(default=lambda: True, repr=False)

    @property
    def copies(self) -> bool:
        """Whether the store is elsewhere than this worker's disk."""
        return not self.volume.shares_disk

    def fetch_inputs(self) -> None:
        """Bring into this worker's copy what the job reads."""
        if not self.copies:
            return
        for dataset_id in {*self.record.dataset.values(), *self.record.eval_sets.values()}:
            if dataset_id is not None:
                key = Volume.dataset_key(dataset_id)
                if not self.volume.path(key).is_file():  # datasets never change
                    self.volume.objects.download(key, self.volume.path(key))
        if self.record.source_job is not None:
            source = self.record.source_job
            self.source_manifest = fetch(
                self.volume.objects, Volume.model_key(source), self.volume.model_dir(source)
            )
        checkpoints = Volume.checkpoint_key(self.record.id)
        latest = latest_complete(self.volume.objects, checkpoints)
        local = self.volume.checkpoint_dir(self.record.id)
        if latest is None:
            return
        fetch(self.volume.objects, latest, local)
        self.checkpoint_version = int(latest.rsplit("/", 1)[1].split("-")[1])
        self.checkpoint_seen = _state_of(local)

    def publish_checkpoint(self) -> bool:
        """Publish the checkpoint directory as its next version if it changed; whether it
        did. Call it only between the writes of a checkpoint (between training steps), so
        that the directory holds one consistent state."""
        if not self.copies:
            return False
        local = self.volume.checkpoint_dir(self.record.id)
        state = _state_of(local)
        if not state or state == self.checkpoint_seen or not self.still_ours():
            return False
        checkpoints = Volume.checkpoint_key(self.record.id)
        current = VERSION.format(self.checkpoint_version + 1, self.record.attempts)
        started = time.monotonic()
        manifest = publish(self.volume.objects, f"{checkpoints}/{current}", local)
        logger.info(
            "checkpoint %s stored: %d bytes in %.2f s",
            current,
            manifest.total_bytes,
            time.monotonic() - started,
        )
        self.checkpoint_version += 1
        self.checkpoint_seen = state
        stored = self.volume.objects.list(checkpoints)
        for older in {info.key[len(checkpoints) + 1 :].split("/")[0] for info in stored}:
            if older != current:
                self.volume.objects.delete_prefix(f"{checkpoints}/{older}")
        return True

    def publish_outputs(self) -> None:
        """Publish the job's model directory, and its source's if the job rewrote it; nothing
        when the job is no longer this run's (its outcome will not be recorded either)."""
        if not self.copies or not self.still_ours():
            return
        model_dir = self.volume.model_dir(self.record.id)
        if model_dir.is_dir():
            publish(self.volume.objects, Volume.model_key(self.record.id), model_dir)
        source = self.record.source_job
        if source is not None and self.source_manifest is not None:
            source_dir = self.volume.model_dir(source)
            if _manifest_changed(self.source_manifest, source_dir):
                publish(self.volume.objects, Volume.model_key(source), source_dir)
            self.volume.drop_local_copy(Volume.job_key(source))  # another job's, not kept


class LiveLog:
    """Keeps a running job's log in the store, so that its tenant reads it while it trains:
    every ``period_s`` the log goes up again if it grew. From a thread of its own, since an
    upload riding out an outage of the store must not hold up the job's lease renewals."""

    def __init__(self, volume: Volume, job_id: str, period_s: float) -> None:
        self.volume = volume
        self.job_id = job_id
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._mirror, name="live-log", daemon=True)

    def __enter__(self) -> LiveLog:
        if not self.volume.shares_disk:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _mirror(self) -> None:
        log = self.volume.job_dir(self.job_id) / JOB_LOG
        sent = -1
        while not self._stop.wait(self.period_s):
            try:
                size = log.stat().st_size
                if size != sent:
                    publish_job_log(self.volume, self.job_id)
                    sent = size
            except (OSError, ObjectStoreError) as exc:  # the next period tries again
                logger.debug("the job's log could not be stored yet: %s", exc)


def publish_job_log(volume: Volume, job_id: str) -> None:
    """Store the job's log, which its tenant reads through the API (the local backend holds
    it already)."""
    log = volume.job_dir(job_id) / JOB_LOG
    if not volume.shares_disk and log.is_file():
        volume.objects.put_file(Volume.job_key(job_id, JOB_LOG), log)


def _state_of(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """The files under ``directory`` with their sizes and modification times."""
    if not directory.is_dir():
        return ()
    state = []
    for relative, path in directory_files(directory):
        status = os.stat(path)
        state.append((relative, status.st_size, status.st_mtime_ns))
    return tuple(state)


def _manifest_changed(manifest: Manifest, directory: Path) -> bool:
    """Whether ``directory`` no longer holds exactly the files ``manifest`` names."""
    held = dict(directory_files(directory))
    if set(held) != {entry.path for entry in manifest.files}:
        return True
    return any(
        (digest := digest_file(held[entry.path])).size != entry.size
        or digest.sha256 != entry.sha256
        for entry in manifest.files
    )
