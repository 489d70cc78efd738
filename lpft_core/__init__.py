"""lpft_core: calibrated LP-FT for transformer text classifiers.

Linear probing (a cross-validated L2 logistic regression on frozen features), then full
fine-tuning or LoRA from that head, then temperature scaling fitted on validation data
(Tomihari & Sato, NeurIPS 2024). Pure library: no web framework, no task queue.
"""

from lpft_core.calibration import (
    ClassificationMetrics,
    ReliabilityBin,
    TemperatureScaler,
    calibration_errors,
    classification_metrics,
    reliability_bins,
)
from lpft_core.config import DataFiles, Hyperparameters, JobSpec, Method
from lpft_core.data import DatasetSplits, Example, build_splits, parse_records, read_examples
from lpft_core.errors import (
    CancelledError,
    ConfigError,
    DataError,
    LpftError,
    ModelError,
    TrainingDivergedError,
)
from lpft_core.events import ProgressEvent
from lpft_core.modeling import DEFAULT_MODEL, resolve_model
from lpft_core.pipeline import JobResult, run_job
from lpft_core.predictor import Prediction, Predictor
from lpft_core.probe import LinearProbe
from lpft_core.results import JobMetrics

__all__ = [
    "DEFAULT_MODEL",
    "CancelledError",
    "ClassificationMetrics",
    "ConfigError",
    "DataError",
    "DataFiles",
    "DatasetSplits",
    "Example",
    "Hyperparameters",
    "JobMetrics",
    "JobResult",
    "JobSpec",
    "LinearProbe",
    "LpftError",
    "Method",
    "ModelError",
    "Prediction",
    "Predictor",
    "ProgressEvent",
    "ReliabilityBin",
    "TemperatureScaler",
    "TrainingDivergedError",
    "build_splits",
    "calibration_errors",
    "classification_metrics",
    "parse_records",
    "read_examples",
    "reliability_bins",
    "resolve_model",
    "run_job",
]
