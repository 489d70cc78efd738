"""Typed results of a job; ``JobMetrics.to_dict()`` is ``metrics.json`` and the service's
``GET /jobs/{id}/metrics`` body."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lpft_core.data.datasets import DatasetSummary, Label
from lpft_core.diagnostics.features import FeatureChange, FeatureStatistics
from lpft_core.diagnostics.ntk_stats import NtkStatistics
from lpft_core.stages.calibration import ClassificationMetrics, ReliabilityBin
from lpft_core.stages.conformal import ConformalResult
from lpft_core.stages.training import EpochRecord, StepRecord


@dataclass(frozen=True)
class ProbeSummary:
    """The linear probe: chosen inverse L2 strength C (from the grid ``C_min``..``C_max``,
    picked by ``scoring``) and its accuracies."""

    C: float
    cv_folds: int
    train_accuracy: float
    validation_accuracy: float
    C_min: float
    C_max: float
    scoring: str


@dataclass(frozen=True)
class HeadNorm:
    """‖V‖_F of the head: fresh, after LP (``None`` without LP), and at the end."""

    initial: float
    after_lp: float | None
    final: float


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram bins before and after temperature scaling."""

    uncalibrated: list[ReliabilityBin]
    calibrated: list[ReliabilityBin]


@dataclass(frozen=True)
class SelectivePrediction:
    """Accuracy when the model answers only the inputs it is most confident about.

    Attributes:
        aurc: the area under the risk–coverage curve, the mean over k = 1..n of the error rate
            among the k most confident inputs (Geifman, Uziel & El-Yaniv 2019): lower is
            better. Temperature scaling does not change it (it keeps the order of confidences).
        coverage, accuracy: points of the curve: the share of inputs answered and the accuracy
            on them, at 20 evenly spaced shares.
    """

    aurc: float
    coverage: list[float]
    accuracy: list[float]


@dataclass(frozen=True)
class Evaluation:
    """Metrics on a reported set: the test file (``split`` ``test``), the held-out test split
    (``held_out``) or an extra eval set. ``majority_rate`` is the share of its most common
    label, ``top_prediction_share`` the share of its most predicted class, ``selective``
    the risk–coverage curve."""

    split: str
    rows: int
    uncalibrated: ClassificationMetrics
    calibrated: ClassificationMetrics
    reliability: Reliability
    majority_rate: float
    top_prediction_share: float
    selective: SelectivePrediction | None = None


@dataclass(frozen=True)
class Calibration:
    """The fitted temperature, where it was fitted, and the NLL it bought on that split."""

    temperature: float
    fitted_on: str
    rows: int
    ece_bins: int
    nll_before: float
    nll_after: float


@dataclass(frozen=True)
class ParameterCounts:
    """Parameters of the classifier, and how many the FT/LoRA stage trained."""

    total: int
    trainable: int


@dataclass(frozen=True)
class ModelWarning:
    """One reason not to trust a model (``lpft_core.stages.checks``): a stable ``code``, a message
    a user understands, and the figures behind it."""

    code: str
    message: str
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (ddof = 1) of one figure over a job's seeds."""

    mean: float
    std: float


@dataclass(frozen=True)
class SplitSummary:
    """Every ``ClassificationMetrics`` field over the seeds, without and with TS."""

    uncalibrated: dict[str, MeanStd]
    calibrated: dict[str, MeanStd]


@dataclass(frozen=True)
class SeedRun:
    """One seed's run of a job: its reported sets and what the seed changed."""

    seed: int
    test: Evaluation
    eval_sets: dict[str, Evaluation]
    temperature: float
    head_norm: HeadNorm
    lp_C: float | None
    best_epoch: int | None
    warnings: list[str]


@dataclass(frozen=True)
class SeedSummary:
    """Mean ± std over the runs of a multi-seed job, all scored on the same rows."""

    seeds: list[int]
    test: SplitSummary
    eval_sets: dict[str, SplitSummary]
    temperature: MeanStd


@dataclass(frozen=True)
class JobMetrics:
    """Everything measured in one job.

    ``history`` has one entry per optimisation step; ``epochs`` one per epoch; ``test`` the
    metrics on the evaluation split and ``eval_sets`` those on each extra set; ``features``
    the feature change on each of them (keyed by set name); ``ntk`` the kernel statistics at
    the start of the FT stage when asked for; ``timing`` the wall seconds of each stage;
    ``warnings`` the reasons not to trust the model (``lpft_core.stages.checks``).
    """

    method: str
    model: str
    pooling: str
    device: str
    labels: list[Label]
    splits: dict[str, int]
    dataset: DatasetSummary
    parameters: ParameterCounts
    lp: ProbeSummary | None
    head_norm: HeadNorm
    history: list[StepRecord]
    epochs: list[EpochRecord]
    best_epoch: int | None
    temperature: float
    calibration: Calibration
    test: Evaluation
    eval_sets: dict[str, Evaluation]
    features: dict[str, FeatureChange]
    ntk: NtkStatistics | None
    timing: dict[str, float]
    warnings: list[ModelWarning] = dataclasses.field(default_factory=list)
    runs: list[SeedRun] = dataclasses.field(default_factory=list)
    summary: SeedSummary | None = None
    conformal: list[ConformalResult] = dataclasses.field(default_factory=list)
    #: The validation split's metrics, on the rows T was fitted on: what a sweep optimises
    #: (``validation.calibrated.nll``...), never to be read as held-out figures.
    validation: Evaluation | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AnalysisResult:
    """What an analysis measured.

    Attributes:
        ntk: kernel statistics by method (at its FT start), or ``trained`` for a finished
            model.
        feature_statistics: statistics of the base model's features per evaluated set.
        feature_change: a finished model's features against its base model's, per set.
    """

    model: str
    model_dir: str | None
    labels: list[Label]
    ntk: dict[str, NtkStatistics]
    feature_statistics: dict[str, FeatureStatistics]
    feature_change: dict[str, FeatureChange]
    timing: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (the analysis job's ``metrics.json``)."""
        return {"kind": "analysis", **dataclasses.asdict(self)}
