"""Uploaded datasets: their rows and records in the artifact store, indexed per tenant in
Redis."""

from __future__ import annotations

import json
from typing import Any

import redis

from lpft_contract.keys import key
from lpft_contract.paging import Page, sorted_set_page
from lpft_contract.quotas import dataset_bytes_key
from lpft_contract.records import DatasetRecord
from lpft_contract.volume import Volume, safe_id


class DatasetStore:
    """Save, find, list and delete datasets.

    Args:
        client: a Redis client created with ``decode_responses=True``.
        volume: the artifact store, where rows and records are written.
    """

    def __init__(self, client: redis.Redis, volume: Volume) -> None:
        self.redis = client
        self.volume = volume

    def save(self, record: DatasetRecord, rows: list[dict[str, Any]]) -> DatasetRecord:
        """Write the rows and the record to the store, then index the record in Redis."""
        data = "".join(json.dumps(row) + "\n" for row in rows)
        self.volume.write_text(Volume.dataset_key(record.id), data)
        record = record.model_copy(update={"bytes": len(data.encode("utf-8"))})
        self.volume.write_text(
            Volume.dataset_key(record.id, ".json"), record.model_dump_json(indent=2)
        )
        self.index(record)
        return record

    def index(self, record: DatasetRecord) -> None:
        """Put the record, its tenant's index entry and its bytes in Redis (also what a
        rebuild does with each copy on the volume)."""
        pipe = self.redis.pipeline()
        pipe.set(key("dataset", record.id), record.model_dump_json())
        pipe.zadd(key("datasets", record.tenant), {record.id: record.created_at})
        pipe.hset(dataset_bytes_key(record.tenant), record.id, record.bytes)
        pipe.execute()

    def get(self, tenant: str, dataset_id: str) -> DatasetRecord | None:
        """The dataset, if it exists and belongs to ``tenant``."""
        raw = self.redis.get(key("dataset", dataset_id))
        if raw is None:
            copy = Volume.dataset_key(dataset_id, ".json") if safe_id(dataset_id) else None
            raw = self.volume.read_text(copy) if copy else None
        record = DatasetRecord.model_validate_json(raw) if raw else None
        return record if record and record.tenant == tenant else None

    def list(self, tenant: str, after: str | None, limit: int) -> Page[DatasetRecord]:
        """A page of the tenant's datasets, newest first, after the id ``after``."""
        ids = sorted_set_page(self.redis, key("datasets", tenant), after, limit)
        records = [r for r in (self.get(tenant, i) for i in ids.items) if r is not None]
        return Page(records, ids.last_id, ids.has_more)

    def first_rows(self, record: DatasetRecord, limit: int) -> list[dict[str, Any]]:
        """The dataset's first ``limit`` rows (fewer when it has fewer), read from the start
        of its stored file and no further: a preview costs what it shows, however large the
        dataset."""
        rows: list[dict[str, Any]] = []
        pending = b""
        chunks = self.volume.objects.stream(record.path)
        try:
            for chunk in chunks:
                *lines, pending = (pending + chunk).split(b"\n")
                rows += [json.loads(line) for line in lines[: limit - len(rows)]]
                if len(rows) >= limit:
                    return rows
        finally:
            close = getattr(chunks, "close", None)  # a generator's: it closes the file or body
            if close:
                close()
        return rows + ([json.loads(pending)] if pending.strip() and len(rows) < limit else [])

    def delete(self, record: DatasetRecord) -> None:
        """Remove the dataset's rows, record and index entries."""
        pipe = self.redis.pipeline()
        pipe.delete(key("dataset", record.id))
        pipe.zrem(key("datasets", record.tenant), record.id)
        pipe.hdel(dataset_bytes_key(record.tenant), record.id)
        pipe.execute()
        for suffix in (".jsonl", ".json"):
            self.volume.objects.delete(Volume.dataset_key(record.id, suffix))
            self.volume.path(Volume.dataset_key(record.id, suffix)).unlink(missing_ok=True)
