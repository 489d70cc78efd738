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

import os
from dataclasses import dataclass, field
from pathlib import Path

from lpft_contract.logs import JOB_LOG
from lpft_contract.objects import Manifest, fetch, latest_complete, publish
from lpft_contract.objects.manifest import digest_file, directory_files
from lpft_contract.records import JobRecord
from lpft_contract.volume import Volume

#: The versions of a job's checkpoint, under its checkpoint key: they sort by name.
VERSION = "v-{:06d}"


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
        self.checkpoint_version = int(latest.rsplit("-", 1)[1])
        self.checkpoint_seen = _state_of(local)

    def publish_checkpoint(self) -> bool:
        """Publish the checkpoint directory as its next version if it changed; whether it
        did. Call it only between the writes of a checkpoint (between training steps), so
        that the directory holds one consistent state."""
        if not self.copies:
            return False
        local = self.volume.checkpoint_dir(self.record.id)
        state = _state_of(local)
        if not state or state == self.checkpoint_seen:
            return False
        checkpoints = Volume.checkpoint_key(self.record.id)
        version = f"{checkpoints}/{VERSION.format(self.checkpoint_version + 1)}"
        publish(self.volume.objects, version, local)
        self.checkpoint_version += 1
        self.checkpoint_seen = state
        current = VERSION.format(self.checkpoint_version)
        stored = self.volume.objects.list(checkpoints)
        for older in {info.key[len(checkpoints) + 1 :].split("/")[0] for info in stored}:
            if older != current:
                self.volume.objects.delete_prefix(f"{checkpoints}/{older}")
        return True

    def publish_outputs(self) -> None:
        """Publish the job's model directory, and its source's if the job rewrote it."""
        if not self.copies:
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
