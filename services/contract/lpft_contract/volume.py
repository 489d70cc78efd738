"""Where the service keeps what must outlive a process: the artifact store, and this
process's local copy of the part of it that it reads or writes.

The store (``lpft_contract.objects``) is what the API and every worker share: a directory
(the default, ``LPFT_ARTIFACTS_DIR``) or a bucket (``LPFT_ARTIFACTS_URL=s3://...``). Training
and serving need files on a local disk, so each process also has a root directory laid out
like the store (``jobs/<id>/model/...``, ``datasets/<id>.jsonl``). With the local backend that
root *is* the store and nothing is copied; with a bucket it is the process's cache
(``LPFT_CACHE_DIR``), which it may lose at any time: what a process needs it fetches, what
others need it publishes.

Paths in a job's spec are keys, relative to the root, so that the same spec means the same
files to every worker, each in its own cache.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from lpft_contract.objects import LocalObjectStore, ObjectNotFound, ObjectStore, join


@dataclass(frozen=True)
class Volume:
    """The artifact store (``objects``) and this process's copy of it (``root``)."""

    root: Path
    objects: ObjectStore

    @classmethod
    def local(cls, root: Path | str) -> Volume:
        """The default: the store is the directory ``root`` itself."""
        return cls(Path(root), LocalObjectStore(root))

    @property
    def shares_disk(self) -> bool:
        """Whether the store is this process's root itself, so nothing needs copying."""
        return isinstance(self.objects, LocalObjectStore) and (
            self.objects.root == self.root.resolve()
        )

    # ---- keys: the same in the store and under the root --------------------------------------

    @staticmethod
    def job_key(job_id: str, *parts: str) -> str:
        """The key of a job's directory, or of ``parts`` inside it."""
        return join("jobs", job_id, *parts)

    @classmethod
    def model_key(cls, job_id: str) -> str:
        """The directory a job's model (and its reports) is written to."""
        return cls.job_key(job_id, "model")

    @classmethod
    def checkpoint_key(cls, job_id: str) -> str:
        """Where a job keeps its last completed epoch, to resume a lost run."""
        return cls.job_key(job_id, "checkpoint")

    @staticmethod
    def dataset_key(dataset_id: str, suffix: str = ".jsonl") -> str:
        """An uploaded dataset's rows (``.jsonl``) or its record (``.json``)."""
        return join("datasets", f"{dataset_id}{suffix}")

    # ---- local paths ----------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """Where ``key`` lives under this process's root."""
        return self.root / key

    def job_dir(self, job_id: str) -> Path:
        """The local copy of a job's directory."""
        return self.path(self.job_key(job_id))

    def model_dir(self, job_id: str) -> Path:
        """The local copy of a job's model directory."""
        return self.path(self.model_key(job_id))

    def checkpoint_dir(self, job_id: str) -> Path:
        """The local copy of a job's checkpoint directory."""
        return self.path(self.checkpoint_key(job_id))

    # ---- documents and prefixes in the store -----------------------------------------------

    def write_text(self, key: str, text: str) -> None:
        """Store a small document whole: a reader sees the old one or the new one."""
        self.objects.put_bytes(key, text.encode("utf-8"))

    def read_text(self, key: str) -> str | None:
        """A small document, or ``None`` when there is none."""
        try:
            return self.objects.get_bytes(key).decode("utf-8")
        except ObjectNotFound:
            return None

    def bytes_under(self, prefix: str) -> int:
        """The bytes stored under ``prefix``."""
        return sum(info.size for info in self.objects.list(prefix))

    def remove(self, prefix: str) -> None:
        """Remove everything under ``prefix``, from the store and from the local copy."""
        self.objects.delete_prefix(prefix)
        self.drop_local_copy(prefix)

    def drop_local_copy(self, prefix: str) -> None:
        """Remove this process's copy of ``prefix``, leaving the store as it is (nothing to
        do when the copy is the store)."""
        if not self.shares_disk:
            shutil.rmtree(self.path(prefix), ignore_errors=True)


def safe_id(value: str) -> bool:
    """Ids become keys; refuse anything that could leave the artifact store."""
    return value.replace("-", "").isalnum()
