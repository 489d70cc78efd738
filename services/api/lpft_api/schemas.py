"""Every request and response body of the API, in one module."""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from lpft_client.wire import DatasetFields, PredictionFields
from lpft_contract.integrations import MAX_TAGS, IntegrationRecord, IntegrationRequest
from lpft_contract.paging import Page
from lpft_contract.records import DatasetRecord, ErrorInfo, JobRecord, JobStatus
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
)

from lpft_core import (
    DEFAULT_CONFORMAL_METHOD,
    DEFAULT_LEARNING_RATES,
    JOB_KINDS,
    MAX_SEEDS,
    MAX_TRIALS,
    ConformalMethod,
    Hyperparameters,
    Method,
    text_problem,
)

_DEFAULTS = Hyperparameters()
MAX_SEED = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
LearningRate = Annotated[float, Field(gt=0, lt=1)]
FinetuningMethod = Literal["ft", "lp_ft", "lora", "lp_lora"]

#: Ids of jobs and datasets as clients send them back (``job-…``, ``ds-…``).
RESOURCE_ID = r"^[A-Za-z0-9_-]{1,100}$"
ResourceId = Annotated[str, StringConstraints(pattern=RESOURCE_ID)]


def _valid_text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(f"the text holds {problem}")
    return value


#: White space as Python's ``str.isspace`` and JSON Schema's (ECMAScript) ``\s`` see it.
_SPACE = r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
#: At least one character that is not white space, and no NUL.
NOT_BLANK = rf"^[^\u0000]*[^{_SPACE}\u0000][^\u0000]*$"


def _not_blank(value: str) -> str:
    if not re.fullmatch(NOT_BLANK, value):
        raise ValueError("the text is blank (white space only)")
    return value


#: An input to classify: not blank, and kept to the document's pattern.
InputText = Annotated[
    str,
    AfterValidator(_valid_text),
    AfterValidator(_not_blank),
    Field(min_length=1, json_schema_extra={"pattern": NOT_BLANK}),
]
#: Free text that must survive tokenisation and UTF-8 (no lone surrogates, no NUL).
Text = Annotated[
    str, AfterValidator(_valid_text), Field(json_schema_extra={"pattern": r"^[^\u0000]*$"})
]


class HyperparametersIn(BaseModel):
    """Training options; unset ones take the documented defaults (see README)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(_DEFAULTS.epochs, ge=1, le=100)
    batch_size: int = Field(_DEFAULTS.batch_size, ge=1, le=1024)
    learning_rate: LearningRate | dict[FinetuningMethod, LearningRate] | None = Field(
        None,
        description="peak AdamW rate of the FT/LoRA stage: one number, or a map per method "
        'such as {"ft": 2e-5, "lp_ft": 1e-5}; default per method: '
        + ", ".join(f"{m.value} {lr:g}" for m, lr in DEFAULT_LEARNING_RATES.items()),
    )
    max_length: int = Field(_DEFAULTS.max_length, ge=8, le=4096)
    pooling: Literal["cls", "mean"] | None = Field(
        None, description="default: mean for sentence-transformers models, else cls"
    )
    head_norm_scale: float = Field(_DEFAULTS.head_norm_scale, gt=0, le=1000)
    lora_r: int = Field(_DEFAULTS.lora_r, ge=1, le=1024)
    lora_alpha: float = Field(_DEFAULTS.lora_alpha, gt=0, le=10_000)
    ece_bins: int = Field(_DEFAULTS.ece_bins, ge=1, le=1000)
    weight_decay: float = Field(_DEFAULTS.weight_decay, ge=0, le=10)
    max_grad_norm: float = Field(_DEFAULTS.max_grad_norm, ge=0, le=1e6)
    device: Literal["auto", "cpu", "cuda"] = Field(
        _DEFAULTS.device, description="also picks the queue: cuda → gpu, cpu → cpu"
    )
    group_by_length: bool = Field(
        _DEFAULTS.group_by_length,
        description="batches of similar-length rows in random order (far less padding); "
        "false gives fully random batches as in the paper",
    )
    lp_scoring: Literal["accuracy", "neg_log_loss"] = Field(
        _DEFAULTS.lp_scoring,
        description="what picks the probe's C: accuracy (the paper's) or neg_log_loss, which "
        "does not tie at the majority class when the features barely separate the classes",
    )
    compile: bool = Field(
        _DEFAULTS.compile,
        description="torch.compile the training step (dynamic shapes); compilation delays "
        "the first steps, so it pays only on long enough runs",
    )


# The service's names are lpft_core's names: a new core option must appear here too.
assert set(HyperparametersIn.model_fields) | {"seed"} == {
    f.name for f in dataclasses.fields(Hyperparameters)
}


class DatasetRef(BaseModel):
    """Dataset ids for each split. Without validation, 10 % of train is held out."""

    model_config = ConfigDict(extra="forbid")

    train: ResourceId
    validation: ResourceId | None = None
    test: ResourceId | None = None


EvalSets = Annotated[
    dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")], ResourceId],
    Field(
        description="extra labelled datasets by name (out-of-distribution sets, say), each "
        "evaluated in full beside the test split; names are letters, digits, '-' and '_'",
        json_schema_extra={"additionalProperties": False},
    ),
]
NtkSamples = Annotated[
    int,
    Field(
        ge=1,
        le=4096,
        description="stratified train samples of the NTK (and as many test samples)",
    ),
]


class JobCreateBase(BaseModel):
    """What every job kind shares."""

    model_config = ConfigDict(extra="forbid")

    model: Text | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="Hugging Face id (org/name), or a path under the server's models "
        "directory (LPFT_MODELS_DIR); default all-MiniLM-L6-v2",
    )
    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="seeds data order, head init and the hold-out"
    )
    eval_sets: EvalSets = Field(default_factory=dict)
    integrations: list[IntegrationRequest] = Field(
        default_factory=list,
        max_length=1,
        description="log the job to a tracker on the deployment's server "
        "(LPFT_MLFLOW_TRACKING_URI): type mlflow, with mlflow's experiment, run_name, tags "
        f"(at most {MAX_TAGS}) and register_as; never a server of the tenant's",
    )

    @field_validator("eval_sets")
    @classmethod
    def _eval_set_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name in ("train", "validation", "test"):
                raise ValueError(f"the name {name!r} is taken by a split; rename it")
        return value


def _distinct_seeds(value: list[int]) -> list[int]:
    if len(set(value)) != len(value):
        raise ValueError("a seed is repeated; list each once")
    return value


Seeds = Annotated[
    list[Seed],
    AfterValidator(_distinct_seeds),
    Field(
        min_length=1,
        max_length=MAX_SEEDS,
        description="one training run per seed, all on the first seed's split; metrics keep "
        "every run under runs and their mean ± std under summary; the first seed's model is "
        "kept and served. Leave seed out, or make it the first of these",
        json_schema_extra={"uniqueItems": True},
    ),
]


class FinetuneJobCreate(JobCreateBase):
    """Train one model with one method (``kind`` may be left out)."""

    kind: Literal["finetune"] = "finetune"
    method: Method = Field(description="lp, ft, lp_ft, lora or lp_lora")
    dataset: DatasetRef
    seeds: Seeds | None = None


class CompareJobCreate(JobCreateBase):
    """Several methods on one dataset split with one shared linear probe; returns the
    paper-style tables and a report."""

    kind: Literal["compare"]
    methods: list[Method] = Field(
        default_factory=lambda: list(Method),
        min_length=1,
        max_length=len(Method),
        description="default: all five",
        json_schema_extra={"uniqueItems": True},
    )
    dataset: DatasetRef
    ntk_samples: int = Field(
        256, ge=0, le=4096, description="NTK samples at each FT start; 0 skips the NTK"
    )
    seeds: Seeds | None = None

    @field_validator("methods")
    @classmethod
    def _distinct(cls, value: list[Method]) -> list[Method]:
        if len(set(value)) != len(value):
            raise ValueError("a method is repeated; list each once")
        return value


class AnalysisJobCreate(JobCreateBase):
    """NTK and/or feature statistics without training: of a base model on a dataset (the
    kernel each of ``methods`` would start FT from), or of a finished finetune job
    (``source_job``; its dataset unless ``dataset`` is given)."""

    kind: Literal["analysis"]
    analyses: list[Literal["ntk", "features"]] = Field(
        default_factory=lambda: ["ntk", "features"], min_length=1, max_length=2
    )
    methods: list[Method] = Field(
        default_factory=lambda: [m for m in Method if m.finetunes],
        min_length=1,
        max_length=sum(m.finetunes for m in Method),
        description="base-model NTK: whose FT start (ft, lp_ft, lora, lp_lora)",
        json_schema_extra={
            "uniqueItems": True,
            "items": {"type": "string", "enum": [m.value for m in Method if m.finetunes]},
        },
    )
    source_job: ResourceId | None = Field(None, description="a succeeded finetune job to analyse")
    dataset: DatasetRef | None = None
    ntk_samples: NtkSamples = 256

    @field_validator("methods")
    @classmethod
    def _finetuning(cls, value: list[Method]) -> list[Method]:
        if Method.LP in value:
            raise ValueError("lp has no FT stage and so no FT kernel; drop it")
        return value


#: A categorical choice: a number, a word or a flag, as the hyperparameter takes it.
Choice = float | int | bool | Annotated[str, StringConstraints(max_length=100)]


class SearchParamIn(BaseModel):
    """The range of one searched hyperparameter: ``low``..``high`` for float and int
    (``log``: on a log scale; ``step``: on a grid), ``choices`` for categorical."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Choice] = Field(default_factory=list, max_length=100)


class SweepObjective(BaseModel):
    """The validation metric after temperature scaling to optimise, and which way."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal[
        "validation.nll", "validation.ece", "validation.accuracy", "validation.macro_f1"
    ]
    direction: Literal["minimize", "maximize"]


class SweepJobCreate(JobCreateBase):
    """A hyperparameter search with Optuna: ``n_trials`` finetune trials of ``method``, up to
    ``parallelism`` at once across the workers, pruned on their per-epoch validation values;
    the best trial's calibrated model is what ``/predict``, export and recalibrate use."""

    kind: Literal["sweep"]
    method: Method = Field(description="lp, ft, lp_ft, lora or lp_lora")
    dataset: DatasetRef
    search_space: (
        Annotated[
            dict[Annotated[str, StringConstraints(max_length=64)], SearchParamIn],
            Field(min_length=1, max_length=16),
        ]
        | Literal["head_norm"]
    ) = Field(
        description="each searched hyperparameter's range (one to 16 of any finetune "
        "hyperparameter but device, ece_bins and seed), bounds within the finetune job's own; "
        'or the preset "head_norm", the paper\'s head-norm analysis over head_norm_scale',
    )
    n_trials: int = Field(ge=1, le=MAX_TRIALS, description="capped by LPFT_MAX_TRIALS")
    parallelism: int = Field(1, ge=1, le=64, description="trials at once; at most n_trials")
    objective: SweepObjective = Field(
        default_factory=lambda: SweepObjective(metric="validation.nll", direction="minimize")
    )
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"


def _job_kind(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("kind", "finetune")
    return getattr(value, "kind", "finetune")


JobCreate = Annotated[
    Annotated[FinetuneJobCreate, Tag("finetune")]
    | Annotated[CompareJobCreate, Tag("compare")]
    | Annotated[AnalysisJobCreate, Tag("analysis")]
    | Annotated[SweepJobCreate, Tag("sweep")],
    Discriminator(_job_kind),
]


#: The registered kinds (``lpft_core.JOB_KINDS``), in their order: what a job's ``kind`` is.
JobKindName = Literal[tuple(kind.value for kind in JOB_KINDS)]


class JobPublic(BaseModel):
    """A job as the API shows it."""

    object: Literal["job"] = "job"
    id: str
    kind: JobKindName
    status: JobStatus
    method: str | None = Field(description="finetune jobs")
    methods: list[str] | None = Field(description="compare and analysis jobs")
    source_job: str | None = Field(description="analysis of a finished job")
    model: str | None
    dataset: dict[str, str | None]
    eval_sets: dict[str, str]
    hyperparameters: dict[str, Any]
    queue: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: ErrorInfo | None
    cancel_requested: bool
    attempts: int = Field(description="runs started; a run lost with its worker is resumed")
    integrations: list[IntegrationRecord] = Field(
        description="each tracker integration: status pending, logged or failed, run_id, "
        "model_version, error"
    )
    sweep: str | None = Field(None, description="a trial's sweep job")
    trial: int | None = Field(None, description="a trial's number in its sweep")

    @classmethod
    def from_record(cls, record: JobRecord) -> JobPublic:
        """The public view of a stored job."""
        return cls(**record.model_dump(exclude={"tenant", "spec", "worker"}))


#: What a list holds: jobs, datasets or events, each with the ``id`` pages start after.
ListItem = TypeVar("ListItem", bound=BaseModel)


class ListPage(BaseModel, Generic[ListItem]):
    """The envelope every list answers with: pass ``last_id`` as ``after`` for the next page
    while ``has_more``."""

    object: Literal["list"] = "list"
    data: list[ListItem]
    first_id: str | None = Field(description="the id of the page's first item")
    last_id: str | None = Field(
        description="the ``after`` of the next page: the id of the last item read (one left "
        "out, deleted meanwhile, still counts); with nothing read, the ``after`` asked for"
    )
    has_more: bool

    @classmethod
    def of(cls, page: Page[Any], data: list[ListItem]) -> Self:
        """The envelope of a store's page whose items became ``data``."""
        first_id = data[0].id if data else None  # type: ignore[attr-defined]
        return cls(data=data, first_id=first_id, last_id=page.last_id, has_more=page.has_more)


class JobList(ListPage[JobPublic]):
    """A page of jobs, newest first."""


class TrialHeadNorm(BaseModel):
    """The paper's head-norm analysis of one complete trial (the ``head_norm`` preset), all
    on the test split it names."""

    split: str = Field(description="the evaluation split: test, or held_out carved from train")
    feature_change: float = Field(
        description="Diff(F): the mean L2 distance between each test row's features from the "
        "trained encoder and from the pre-trained one"
    )
    accuracy: float
    ece_uncalibrated: float = Field(description="ECE before temperature scaling")
    ece_calibrated: float = Field(description="ECE after temperature scaling")
    head_norm: float = Field(description="the head's Frobenius norm where training ended")


class TrialPublic(BaseModel):
    """One trial of a sweep: a finetune job of its own (``id``; its events, metrics and
    logs are that job's), its parameters and how it ended."""

    object: Literal["trial"] = "trial"
    number: int
    id: str = Field(description="the trial's job")
    params: dict[str, Any]
    state: Literal["queued", "running", "complete", "pruned", "failed", "cancelled"]
    value: float | None = Field(description="the objective, once complete")
    intermediate_values: dict[int, float] = Field(
        description="each epoch's validation value the pruner read (the loss for nll and "
        "ece, the accuracy for accuracy and macro_f1)"
    )
    worker: str | None
    started_at: float | None
    finished_at: float | None
    error: ErrorInfo | None
    head_norm: TrialHeadNorm | None = Field(
        None,
        description='a complete trial of the "head_norm" preset: its Diff(F), accuracy '
        "and ECE on the test split",
    )


class TrialList(BaseModel):
    """A page of a sweep's trials in number order: pass the last ``number`` as ``after``
    for the next page while ``has_more``."""

    object: Literal["list"] = "list"
    data: list[TrialPublic]
    has_more: bool


class DatasetRecordsIn(BaseModel):
    """A dataset sent as JSON instead of a file."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field("records", min_length=1, max_length=200)
    records: list[dict[str, Any]] = Field(min_length=1)


class DatasetPublic(DatasetFields):
    """An uploaded, validated dataset and its summary."""

    object: Literal["dataset"] = "dataset"

    @classmethod
    def from_record(cls, record: DatasetRecord) -> DatasetPublic:
        """The public view of a stored dataset."""
        return cls(**record.model_dump(exclude={"tenant", "path"}))


class DatasetList(ListPage[DatasetPublic]):
    """A page of datasets, newest first."""


#: The most rows a dataset preview shows.
MAX_PREVIEW_ROWS = 50


class DatasetRow(BaseModel):
    """One stored row, under our names whatever the uploaded file called its columns."""

    text: str
    text_pair: str | None = None
    label: str | int


class DatasetPreview(BaseModel):
    """A dataset's first rows, as stored, for a person to check what was read."""

    object: Literal["dataset_preview"] = "dataset_preview"
    id: str
    rows: list[DatasetRow]
    has_more: bool = Field(description="whether the dataset holds rows beyond these")


class Event(BaseModel):
    """One entry of a job's event log."""

    id: str
    type: str = Field(description="status, stage, step, epoch, metrics, message or warning")
    created_at: float
    data: dict[str, Any]


class EventList(ListPage[Event]):
    """A page of events, in order."""


class LogRecord(BaseModel):
    """One record of a job's log, as its worker or training process wrote it; more fields
    (``error_id``, ``status``, ...) come with the records that have them. Tracebacks stay in
    the operator's process log, which the ``error_id`` leads to."""

    model_config = ConfigDict(extra="allow")

    time: str = Field(description="UTC, ISO 8601")
    level: str
    logger: str
    message: str
    job_id: str | None = None


class JobLog(BaseModel):
    """The newest records of a job's log, oldest first; ``has_more``: older ones exist."""

    object: Literal["list"] = "list"
    data: list[LogRecord]
    has_more: bool


class LiveMetrics(BaseModel):
    """Metrics of an unfinished job: what the event log holds so far."""

    partial: Literal[True] = True
    status: JobStatus
    kind: str
    method: str | None
    stage: str | None
    history: list[dict[str, Any]]
    epochs: list[dict[str, Any]]


class PredictInput(BaseModel):
    """One input; ``text_pair`` only for models trained on sentence pairs."""

    model_config = ConfigDict(extra="forbid")

    text: InputText
    text_pair: InputText | None = None


class ConformalIn(BaseModel):
    """Conformal prediction sets: miscoverage ``alpha``, the score ``method``, and whether
    each label is covered on its own (``mondrian``)."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(gt=0, lt=1, description="e.g. 0.1 for sets that cover 90 %")
    method: ConformalMethod = Field(
        DEFAULT_CONFORMAL_METHOD,
        description="lac (default): the smallest sets on average, at the coverage asked for "
        "(benchmarks/RESULTS.md); aps: adaptive sets, deterministic, conservative where the "
        "error rate exceeds alpha (binary tasks: often both labels); aps_randomized: adaptive "
        "sets that cover 1 - alpha without that excess (the draw is a hash of the input, so "
        "an input always gets the same set)",
    )
    mondrian: bool = Field(
        False,
        description="class-conditional sets: each label has its own threshold from its own "
        "calibration rows, so every label, rare ones too, is covered at 1 - alpha (marginal "
        "sets cover 1 - alpha on average over labels); needs at least ceil(1/alpha) - 1 "
        "calibration rows per label, else 422",
    )


class PredictRequest(BaseModel):
    """Inputs to classify with a finished job's model."""

    model_config = ConfigDict(extra="forbid")

    job_id: ResourceId
    inputs: list[PredictInput] = Field(
        min_length=1, description="at most LPFT_MAX_PREDICT_INPUTS (1024 unless configured)"
    )
    calibrated: bool = Field(True, description="divide logits by the job's temperature")
    conformal: ConformalIn | None = Field(
        None,
        description="add to every prediction a set of labels that holds the true one "
        "with probability at least 1 - alpha (split conformal, on the calibrated probabilities)",
    )
    min_confidence: float | None = Field(
        None,
        gt=0,
        le=1,
        description="abstain (label null, abstained true) where the top probability is below",
    )


class PredictionOut(PredictionFields):
    """One input's label and probabilities per label name; ``prediction_set`` when
    ``conformal`` was asked for (it may be empty: no label is likely enough), ``label`` null
    and ``abstained`` true below ``min_confidence``."""


class QuantizationOut(BaseModel):
    """How the int8 graph that answered differs from fp32, on ``rows`` held-out rows of the
    job's ``split`` at ``temperature``; all ``None`` (with ``unmeasured`` saying why) when the
    job's data could no longer be read."""

    split: str | None
    rows: int
    temperature: float
    accuracy_fp32: float | None
    accuracy_int8: float | None
    ece_fp32: float | None
    ece_int8: float | None
    probability_shift_mean: float | None = Field(
        description="mean absolute change of a class probability"
    )
    probability_shift_max: float | None = Field(
        description="largest absolute change of a class probability"
    )
    label_agreement: float | None = Field(description="share of rows with the same label")
    unmeasured: str | None = None


class PredictResponse(BaseModel):
    """Predictions in input order, and the temperature that produced the probabilities.
    ``warnings`` holds the codes of the model's warnings (``metrics.json``): a client can
    refuse to act on a model that, say, predicts one class for every row."""

    job_id: str
    temperature: float
    calibrated: bool
    predictions: list[PredictionOut]
    warnings: list[str] = Field(default_factory=list)
    seed: int | None = Field(
        None, description="the seed of the run that made the model (the first of seeds)"
    )
    seeds: list[int] = Field(
        default_factory=list,
        description="every seed the job trained; its metrics give each run and mean ± std",
    )
    serving: Literal["torch", "onnx", "onnx-int8"] = Field(
        "torch", description="what computed the logits (the server's predict backend)"
    )
    quantization: QuantizationOut | None = Field(
        None,
        description="with onnx-int8 only: what int8 costs against fp32, as measured at the "
        "fitted T (also when this answer is uncalibrated)",
    )


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str
    errors: list[dict[str, Any]] | None = Field(
        None,
        description="per-field errors: {field, message}, and line where a dataset's row is at "
        "fault (its line in a JSONL or CSV file, header included; its row in Parquet or JSON "
        "records, from 1)",
    )
    error_id: str | None = Field(
        None, description="on a 5xx: the id the server's log records carry, to quote"
    )


class Building(BaseModel):
    """A file that is being built: ask again at ``Location`` after ``Retry-After`` seconds."""

    detail: str


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
    serving: str | None = Field(
        None,
        description="readiness only: what runs /predict here (backend, device, intra-op threads) "
        "and why, e.g. a fallback from onnxruntime to torch",
    )


class RecalibrateRequest(BaseModel):
    """A labelled dataset to fit a new temperature on."""

    model_config = ConfigDict(extra="forbid")

    dataset: ResourceId = Field(description="dataset id; its labels must be the model's")
