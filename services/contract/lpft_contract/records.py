"""Job and dataset records as stored in Redis and mirrored on the artifact volume."""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from lpft_contract.integrations import IntegrationRecord


class JobStatus(StrEnum):
    """``queued → running → succeeded | failed | cancelled``."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the job can no longer change."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class ErrorInfo(BaseModel):
    """Why a job failed: a stable machine ``code`` and a message that says what to do."""

    code: str
    message: str


class JobRecord(BaseModel):
    """One job. ``spec`` is the lpft_core spec of its ``kind`` as plain data, its paths keys
    in the artifact store (``lpft_contract.volume``)."""

    id: str
    tenant: str
    kind: str = "finetune"
    status: JobStatus = JobStatus.QUEUED
    method: str | None
    methods: list[str] | None = None
    source_job: str | None = None
    model: str | None
    dataset: dict[str, str | None]
    eval_sets: dict[str, str] = Field(default_factory=dict)
    hyperparameters: dict[str, Any]
    queue: str
    spec: dict[str, Any]
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    error: ErrorInfo | None = None
    cancel_requested: bool = False
    attempts: int = Field(0, description="runs started; a run lost with its worker is resumed")
    integrations: list[IntegrationRecord] = Field(
        default_factory=list, description="where each tracker integration stands"
    )
    sweep: str | None = Field(None, description="a trial's sweep job")
    trial: int | None = Field(None, description="a trial's number in its sweep")


class DatasetRecord(BaseModel):
    """An uploaded, validated dataset; the rows live in ``path`` (a key in the artifact store)
    as JSONL."""

    id: str
    tenant: str
    name: str
    path: str
    rows: int
    pair: bool
    label_counts: dict[str, int]
    label_type: Literal["int", "str"] | None = Field(
        None, description='the labels\' JSON type: 1 and "1" are different labels'
    )
    bytes: int = Field(0, description="size of the stored rows on the volume")
    created_at: float = Field(default_factory=time.time)


def worker_lost(worker: str | None, attempts: int) -> ErrorInfo:
    """The failure recorded when a job's last allowed run lost its worker (a SIGKILL, a lost
    machine); earlier losses resume the job instead."""
    return ErrorInfo(
        code="worker_lost",
        message=f"worker {worker} was lost while running this job, on attempt {attempts} of "
        f"{attempts}; the job's events list each attempt. Submit it again, and if it keeps "
        "happening ask the operator about the workers' memory",
    )


def new_id(prefix: str) -> str:
    """A random id such as ``job-3f2a…`` (the prefix tells ids apart in logs and URLs)."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"
