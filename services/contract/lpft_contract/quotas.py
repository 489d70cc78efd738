"""What a tenant may still add: its unfinished jobs (an admission cap) and the bytes it keeps
on the volume (its datasets and finished jobs' directories)."""

from __future__ import annotations

import redis

from lpft_contract.keys import key
from lpft_contract.records import JobRecord
from lpft_contract.volume import Volume

#: The job's bytes are counted only while its record is in Redis: checked and written in one
#: step, so a delete (which drops the record and the count in one transaction) either comes
#: after the write and drops it, or before and the write is skipped.
_MEASURE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
"""


def active_key(tenant: str) -> str:
    """The tenant's unfinished jobs: the admission count, kept by the job store's
    transitions."""
    return key("active", tenant)


def job_bytes_key(tenant: str) -> str:
    """The bytes of each of the tenant's finished jobs (dropped by a delete)."""
    return key("job-bytes", tenant)


def dataset_bytes_key(tenant: str) -> str:
    """The bytes of each of the tenant's datasets (written with the dataset's index)."""
    return key("dataset-bytes", tenant)


class Quotas:
    """Admission caps and stored bytes, per tenant.

    Args:
        client: a Redis client created with ``decode_responses=True``.
        volume: the artifact volume whose files are counted.
    """

    def __init__(self, client: redis.Redis, volume: Volume) -> None:
        self.redis = client
        self.volume = volume
        self._measure = client.register_script(_MEASURE)

    def admit(self, tenant: str, job_id: str, cap: int) -> bool:
        """Count ``job_id`` among the tenant's unfinished jobs unless ``cap`` are already
        there (the add and the count are one transaction, so concurrent requests cannot
        overshoot)."""
        active = active_key(tenant)
        pipe = self.redis.pipeline()
        pipe.sadd(active, job_id)
        pipe.scard(active)
        _, count = pipe.execute()
        if count > cap:
            self.redis.srem(active, job_id)
            return False
        return True

    def release(self, tenant: str, job_id: str) -> None:
        """Stop counting ``job_id`` among the tenant's unfinished jobs."""
        self.redis.srem(active_key(tenant), job_id)

    def dataset_usage(self, tenant: str) -> tuple[int, int]:
        """The tenant's stored datasets: how many, and their bytes on the volume."""
        sizes = self.redis.hvals(dataset_bytes_key(tenant))
        return len(sizes), sum(int(size) for size in sizes)

    def stored_bytes(self, tenant: str) -> int:
        """The bytes the tenant keeps on the volume: its datasets and its finished jobs'
        directories (as ``measure_job`` last found them)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hvals(dataset_bytes_key(tenant))
        pipe.hvals(job_bytes_key(tenant))
        return sum(int(size) for sizes in pipe.execute() for size in sizes)

    def measure_job(self, record: JobRecord) -> None:
        """Count the job's directory (model, reports, archives, its log and records) toward
        its tenant's stored bytes; called whenever the service has written to it after the
        job finished, since the files are then the tenant's to keep until it deletes them.
        A job deleted meanwhile (an archive built, or a finish recorded, as the client deleted
        it) is not counted: the count is written only while the job's record exists."""
        size = self.volume.bytes_under(Volume.job_key(record.id))
        keys = [key("job", record.id), job_bytes_key(record.tenant)]
        self._measure(keys=keys, args=[record.id, size])

    def drop_bytes_of_missing_jobs(self) -> None:
        """Heal the stored-bytes counts after a rebuild: each finished job was just measured
        again, and this drops the counts of jobs Redis does not hold (every job on the volume
        is indexed by now), which an older release could leave behind. Entry by entry rather
        than replacing each tenant's hash, so a job that finished during the rebuild keeps
        the count its finish wrote."""
        for counts in self.redis.scan_iter(match=job_bytes_key("*"), count=1000):
            job_ids = self.redis.hkeys(counts)
            pipe = self.redis.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.exists(key("job", job_id))
            missing = [i for i, held in zip(job_ids, pipe.execute(), strict=True) if not held]
            if missing:
                self.redis.hdel(counts, *missing)
