"""Every request and response body of the API, in one module."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from lpft_contract.records import DatasetRecord, ErrorInfo, JobRecord, JobStatus
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lpft_core.config import DEFAULT_LEARNING_RATES, Hyperparameters, Method

_DEFAULTS = Hyperparameters()


class HyperparametersIn(BaseModel):
    """Training options; unset ones take the documented defaults (see README)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(_DEFAULTS.epochs, ge=1, le=100)
    batch_size: int = Field(_DEFAULTS.batch_size, ge=1, le=4096)
    learning_rate: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="default per method: "
        + ", ".join(f"{m.value} {lr:g}" for m, lr in DEFAULT_LEARNING_RATES.items()),
    )
    max_length: int = Field(_DEFAULTS.max_length, ge=8, le=8192)
    pooling: Literal["cls", "mean"] | None = Field(
        None, description="default: mean for sentence-transformers models, else cls"
    )
    head_norm_scale: float = Field(_DEFAULTS.head_norm_scale, gt=0)
    lora_r: int = Field(_DEFAULTS.lora_r, ge=1, le=1024)
    lora_alpha: float = Field(_DEFAULTS.lora_alpha, gt=0)
    ece_bins: int = Field(_DEFAULTS.ece_bins, ge=1, le=1000)
    weight_decay: float = Field(_DEFAULTS.weight_decay, ge=0)
    max_grad_norm: float = Field(_DEFAULTS.max_grad_norm, ge=0)
    device: Literal["auto", "cpu", "cuda"] = Field(
        _DEFAULTS.device, description="also picks the queue: cuda → gpu, cpu → cpu"
    )


# The service's names are lpft_core's names: a new core option must appear here too.
assert set(HyperparametersIn.model_fields) | {"seed"} == {
    f.name for f in dataclasses.fields(Hyperparameters)
}


class DatasetRef(BaseModel):
    """Dataset ids for each split. Without validation, 10 % of train is held out."""

    model_config = ConfigDict(extra="forbid")

    train: str
    validation: str | None = None
    test: str | None = None


class JobCreate(BaseModel):
    """A fine-tuning job."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Field(description="lp, ft, lp_ft, lora or lp_lora")
    dataset: DatasetRef
    model: str | None = Field(
        None, description="Hugging Face id or server-side path; default all-MiniLM-L6-v2"
    )
    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)
    seed: int = Field(0, ge=0, description="seeds data order, head init and the hold-out")


class JobPublic(BaseModel):
    """A job as the API shows it."""

    object: Literal["job"] = "job"
    id: str
    status: JobStatus
    method: str
    model: str | None
    dataset: dict[str, str | None]
    hyperparameters: dict[str, Any]
    queue: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: ErrorInfo | None
    cancel_requested: bool

    @classmethod
    def from_record(cls, record: JobRecord) -> JobPublic:
        """The public view of a stored job."""
        return cls(**record.model_dump(exclude={"tenant", "spec", "worker"}))


class JobList(BaseModel):
    """A page of jobs, newest first; pass ``last_id`` as ``after`` for the next page."""

    object: Literal["list"] = "list"
    data: list[JobPublic]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DatasetRecordsIn(BaseModel):
    """A dataset sent as JSON instead of a file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("records", max_length=200)
    records: list[dict[str, Any]] = Field(min_length=1)


class DatasetPublic(BaseModel):
    """An uploaded, validated dataset and its summary."""

    object: Literal["dataset"] = "dataset"
    id: str
    name: str
    rows: int
    pair: bool
    label_counts: dict[str, int]
    created_at: float

    @classmethod
    def from_record(cls, record: DatasetRecord) -> DatasetPublic:
        """The public view of a stored dataset."""
        return cls(**record.model_dump(exclude={"tenant", "path"}))


class DatasetList(BaseModel):
    """A page of datasets, newest first."""

    object: Literal["list"] = "list"
    data: list[DatasetPublic]
    has_more: bool


class Event(BaseModel):
    """One entry of a job's event log."""

    id: str
    type: str = Field(description="status, stage, step, epoch, metrics, message or warning")
    created_at: float
    data: dict[str, Any]


class EventList(BaseModel):
    """A page of events in order; pass ``last_id`` as ``after`` for the next page."""

    object: Literal["list"] = "list"
    data: list[Event]
    last_id: str | None
    has_more: bool


class LiveMetrics(BaseModel):
    """Metrics of an unfinished job: what the event log holds so far."""

    partial: Literal[True] = True
    status: JobStatus
    method: str
    stage: str | None
    history: list[dict[str, Any]]
    epochs: list[dict[str, Any]]


class PredictInput(BaseModel):
    """One input; ``text_pair`` only for models trained on sentence pairs."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    text_pair: str | None = Field(None, min_length=1)


class PredictRequest(BaseModel):
    """Inputs to classify with a finished job's model."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    inputs: list[PredictInput] = Field(min_length=1)
    calibrated: bool = Field(True, description="divide logits by the job's temperature")

    @model_validator(mode="after")
    def _not_blank(self) -> PredictRequest:
        for i, item in enumerate(self.inputs):
            if not item.text.strip():
                raise ValueError(f"inputs[{i}].text is blank")
        return self


class PredictionOut(BaseModel):
    """One input's label and probabilities per label name."""

    label: str | int
    probabilities: dict[str, float]
    logits: list[float]


class PredictResponse(BaseModel):
    """Predictions in input order, and the temperature that produced the probabilities."""

    job_id: str
    temperature: float
    calibrated: bool
    predictions: list[PredictionOut]


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str
    errors: list[dict[str, Any]] | None = Field(
        None, description="per-field errors: {field, message}"
    )


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
