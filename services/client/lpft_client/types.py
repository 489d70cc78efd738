"""The API's responses as typed models, mirroring ``lpft_api.schemas`` without importing it
(the client runs without the service or the ML stack installed); the field sets both declare
alike are written once, in ``lpft_client.wire``, which the API's schemas build on.

Every model allows fields it does not declare and keeps them (``model.model_extra``), and
open sets of values (statuses, kinds, event types) are plain strings: a newer server that
adds a field or a value does not break an older client. A finished job's metrics are a large
nested document: the parts a user reads first are typed, the rest stays plain data.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from lpft_client.wire import DatasetFields, PredictionFields

#: The statuses a job never leaves.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class ApiModel(BaseModel):
    """A response body: unknown fields are kept, not refused."""

    model_config = ConfigDict(extra="allow")


# ---- datasets and jobs ----------------------------------------------------------------------


class Dataset(ApiModel, DatasetFields):
    """An uploaded, validated dataset and its summary."""


class JobError(ApiModel):
    """Why a job failed: a stable ``code`` and a message that says what to do."""

    code: str
    message: str


class Integration(ApiModel):
    """Where one of the job's integrations stands: ``status`` is ``pending`` until its
    MLflow run is ``logged`` (or ``failed``, with ``error``); with ``register_as``, the
    registered model's full name and the version the job made."""

    type: str
    experiment: str
    status: str
    mlflow: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    registered_model: str | None = None
    model_version: str | None = None
    error: str | None = None


class Job(ApiModel):
    """A job: ``status`` is ``queued → running → succeeded | failed | cancelled``."""

    object: str = "job"
    id: str
    kind: str
    status: str
    method: str | None = None
    methods: list[str] | None = None
    source_job: str | None = None
    model: str | None = None
    dataset: dict[str, str | None] = Field(default_factory=dict)
    eval_sets: dict[str, str] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    queue: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: JobError | None = None
    cancel_requested: bool = False
    attempts: int = 0
    integrations: list[Integration] = Field(default_factory=list)
    sweep: str | None = None
    trial: int | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the job can no longer change."""
        return self.status in TERMINAL_STATUSES


class TrialHeadNorm(ApiModel):
    """The paper's head-norm analysis of a complete trial of the ``head_norm`` preset, on
    the test split it names: Diff(F) (``feature_change``) beside accuracy and ECE."""

    split: str
    feature_change: float
    accuracy: float
    ece_uncalibrated: float
    ece_calibrated: float
    head_norm: float


class Trial(ApiModel):
    """One trial of a sweep: a finetune job of its own (``id``), its parameters, ``state``
    (queued, running, complete, pruned, failed, cancelled) and objective ``value``."""

    object: str = "trial"
    number: int
    id: str
    params: dict[str, Any]
    state: str
    value: float | None = None
    intermediate_values: dict[int, float] = Field(default_factory=dict)
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: JobError | None = None
    head_norm: TrialHeadNorm | None = None


class TrialPage(ApiModel):
    """A page of a sweep's trials in number order: the next starts after the last
    ``number`` while ``has_more``."""

    object: str = "list"
    data: list[Trial]
    has_more: bool


Item = TypeVar("Item")


class CursorPage(ApiModel, Generic[Item]):
    """One page of a list (jobs and datasets newest first, events in order); the next page
    starts after ``next_cursor``."""

    object: str = "list"
    data: list[Item]
    first_id: str | None
    last_id: str | None
    has_more: bool

    @property
    def next_cursor(self) -> str | None:
        """The ``after`` of the next page; ``None`` on the last one."""
        return self.last_id if self.has_more else None


# ---- events -------------------------------------------------------------------------------


class StatusData(ApiModel):
    """The job changed status; ``error`` when it failed."""

    status: str
    error: JobError | None = None


class StageData(ApiModel):
    """A stage started (``load``, ``lp``, ``ft``, ``lora``, ``calibrate``...; ``<method>/<stage>``
    in a comparison) and will take ``total`` steps."""

    stage: str
    total: int | None = None


class StageProgress(ApiModel):
    """How far a stage has come: ``step`` of ``total``, in every progress event's data."""

    stage: str
    step: int
    total: int


class StepData(StageProgress):
    """One optimisation step of a stage, with its training loss."""

    loss: float
    head_weight_norm: float | None = None


class EpochData(StageProgress):
    """The end of an epoch and its validation figures."""

    epoch: float
    validation_accuracy: float | None = None
    validation_loss: float | None = None


class MetricsData(StageProgress):
    """Progress of a stage without a loss (feature extraction, NTK...)."""


class MessageData(ApiModel):
    """A note about the job (``cancel requested``...)."""

    message: str


class WarningData(ApiModel):
    """A warning raised while the job ran."""

    category: str
    message: str


class BaseEvent(ApiModel):
    """One entry of a job's event log; ``id`` is the cursor to resume after."""

    id: str
    type: str
    created_at: float
    data: Any


class StatusEvent(BaseEvent):
    type: Literal["status"]
    data: StatusData


class StageEvent(BaseEvent):
    type: Literal["stage"]
    data: StageData


class StepEvent(BaseEvent):
    type: Literal["step"]
    data: StepData


class EpochEvent(BaseEvent):
    type: Literal["epoch"]
    data: EpochData


class MetricsEvent(BaseEvent):
    type: Literal["metrics"]
    data: MetricsData


class MessageEvent(BaseEvent):
    type: Literal["message"]
    data: MessageData


class WarningEvent(BaseEvent):
    type: Literal["warning"]
    data: WarningData


class OtherEvent(BaseEvent):
    """An event type this client does not know yet; ``data`` stays plain."""

    data: dict[str, Any]


#: An event as the class of its ``type``: each member's ``type`` is a literal, so the first
#: that fits is the one; a type this client does not know yet falls through to ``OtherEvent``.
Event = Annotated[
    StatusEvent
    | StageEvent
    | StepEvent
    | EpochEvent
    | MetricsEvent
    | MessageEvent
    | WarningEvent
    | OtherEvent,
    Field(union_mode="left_to_right"),
]
EVENT = TypeAdapter(Event)


# ---- metrics ------------------------------------------------------------------------------


class ClassificationMetrics(ApiModel):
    """Quality of a set of probabilities: fractions, except ``mcc`` in [-1, 1]."""

    accuracy: float
    macro_f1: float
    nll: float
    brier: float
    ece: float
    mce: float
    mcc: float | None = None


class Evaluation(ApiModel):
    """Metrics on one reported set, before and after temperature scaling."""

    split: str
    rows: int
    uncalibrated: ClassificationMetrics
    calibrated: ClassificationMetrics
    reliability: dict[str, Any] = Field(default_factory=dict)
    majority_rate: float | None = None
    top_prediction_share: float | None = None


class ProbeSummary(ApiModel):
    """The linear probe: its inverse L2 strength ``C`` and accuracies."""

    C: float
    train_accuracy: float
    validation_accuracy: float


class HeadNorm(ApiModel):
    """‖V‖_F of the head: fresh, after LP (``None`` without LP), at the end."""

    initial: float
    after_lp: float | None = None
    final: float


class ModelWarning(ApiModel):
    """A reason not to trust the model, with the figures behind it."""

    code: str
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class JobMetrics(ApiModel):
    """A finished finetune job's ``metrics.json``: the headline figures typed; the history,
    reliability bins, NTK, feature and per-seed details are kept as plain data (extra
    fields)."""

    method: str
    model: str
    pooling: str
    device: str
    labels: list[str | int]
    splits: dict[str, int]
    lp: ProbeSummary | None = None
    head_norm: HeadNorm
    temperature: float
    test: Evaluation
    eval_sets: dict[str, Evaluation] = Field(default_factory=dict)
    timing: dict[str, float] = Field(default_factory=dict)
    warnings: list[ModelWarning] = Field(default_factory=list)


class ComparisonMetrics(ApiModel):
    """A compare job's metrics: every method's, in the order run."""

    methods: dict[str, JobMetrics]


class RecalibrationMetrics(ApiModel):
    """A recalibrate job's metrics: the new temperature and the metrics at T = 1, at the
    previous T and at the new one, measured on the rows T was fitted on."""

    temperature: float
    previous_temperature: float
    rows: int
    uncalibrated: ClassificationMetrics
    previous: ClassificationMetrics
    calibrated: ClassificationMetrics
    in_sample: bool = True


class AnalysisMetrics(ApiModel):
    """An analysis job's metrics: NTK and feature statistics, kept as plain data."""

    kind: Literal["analysis"]
    model: str
    ntk: dict[str, Any] = Field(default_factory=dict)
    feature_statistics: dict[str, Any] = Field(default_factory=dict)
    feature_change: dict[str, Any] = Field(default_factory=dict)
    timing: dict[str, float] = Field(default_factory=dict)


class LiveMetrics(ApiModel):
    """Metrics of an unfinished job: what its event log holds so far."""

    partial: Literal[True] = True
    status: str
    kind: str
    method: str | None = None
    stage: str | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    epochs: list[dict[str, Any]] = Field(default_factory=list)


def _metrics_tag(value: Any) -> str:
    if not isinstance(value, dict):
        return type(value).__name__
    if value.get("partial"):
        return "LiveMetrics"
    if value.get("kind") == "analysis":
        return "AnalysisMetrics"
    if "previous_temperature" in value:
        return "RecalibrationMetrics"
    if "methods" in value and "test" not in value:
        return "ComparisonMetrics"
    return "JobMetrics"


Metrics = Annotated[
    Annotated[JobMetrics, Tag("JobMetrics")]
    | Annotated[ComparisonMetrics, Tag("ComparisonMetrics")]
    | Annotated[RecalibrationMetrics, Tag("RecalibrationMetrics")]
    | Annotated[AnalysisMetrics, Tag("AnalysisMetrics")]
    | Annotated[LiveMetrics, Tag("LiveMetrics")],
    Discriminator(_metrics_tag),
]
METRICS = TypeAdapter(Metrics)


# ---- predictions --------------------------------------------------------------------------


class Prediction(ApiModel, PredictionFields):
    """One input's label and probabilities per label; ``label`` is ``None`` when the model
    abstained below ``min_confidence``."""


class Predictions(ApiModel):
    """Predictions in input order and the temperature that made the probabilities."""

    job_id: str
    temperature: float
    calibrated: bool
    predictions: list[Prediction]
    warnings: list[str] = Field(default_factory=list)
    seed: int | None = None
    seeds: list[int] = Field(default_factory=list)
    serving: str = "torch"
    quantization: dict[str, Any] | None = None


# ---- logs ---------------------------------------------------------------------------------


class LogRecord(ApiModel):
    """One record of a job's log (more fields, such as ``error_id``, where they apply)."""

    time: str
    level: str
    logger: str
    message: str
    job_id: str | None = None


class JobLog(ApiModel):
    """The newest records of a job's log, oldest first; ``has_more``: older ones exist."""

    data: list[LogRecord]
    has_more: bool


__all__ = [
    "EVENT",
    "METRICS",
    "TERMINAL_STATUSES",
    "AnalysisMetrics",
    "ApiModel",
    "BaseEvent",
    "ClassificationMetrics",
    "ComparisonMetrics",
    "CursorPage",
    "Dataset",
    "EpochData",
    "EpochEvent",
    "Evaluation",
    "Event",
    "HeadNorm",
    "Integration",
    "Job",
    "JobError",
    "JobLog",
    "JobMetrics",
    "LiveMetrics",
    "LogRecord",
    "MessageData",
    "MessageEvent",
    "Metrics",
    "MetricsData",
    "MetricsEvent",
    "ModelWarning",
    "OtherEvent",
    "Prediction",
    "Predictions",
    "ProbeSummary",
    "RecalibrationMetrics",
    "StageData",
    "StageEvent",
    "StageProgress",
    "StatusData",
    "StatusEvent",
    "StepData",
    "StepEvent",
    "WarningData",
    "WarningEvent",
]
