"""lpft_core: calibrated LP-FT for transformer text classifiers.

Linear probing (a cross-validated L2 logistic regression on frozen features), then full
fine-tuning or LoRA from that head, then temperature scaling fitted on validation data
(Tomihari & Sato, NeurIPS 2024). Pure library: no web framework, no task queue.

The names below are imported on first use (PEP 562), so ``import lpft_core`` and its light
modules (``config``, ``errors``, ``kinds``) load neither torch nor transformers: the client
and the API's schemas use them without the ML stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Public name → the module that defines it.
_EXPORTS = {
    "CancelledError": "lpft_core.errors",
    "ClassificationMetrics": "lpft_core.calibration",
    "ConfigError": "lpft_core.errors",
    "DEFAULT_MODEL": "lpft_core.modeling",
    "DataError": "lpft_core.errors",
    "DataFiles": "lpft_core.config",
    "DatasetSplits": "lpft_core.data",
    "Example": "lpft_core.data",
    "Hyperparameters": "lpft_core.config",
    "JobMetrics": "lpft_core.results",
    "JobResult": "lpft_core.pipeline",
    "JobSpec": "lpft_core.config",
    "LinearProbe": "lpft_core.probe",
    "LpftError": "lpft_core.errors",
    "Method": "lpft_core.config",
    "ModelError": "lpft_core.errors",
    "Prediction": "lpft_core.predictor",
    "Predictor": "lpft_core.predictor",
    "ProgressEvent": "lpft_core.events",
    "ReliabilityBin": "lpft_core.calibration",
    "TemperatureScaler": "lpft_core.calibration",
    "TrainingDivergedError": "lpft_core.errors",
    "build_splits": "lpft_core.data",
    "calibration_errors": "lpft_core.calibration",
    "classification_metrics": "lpft_core.calibration",
    "parse_records": "lpft_core.data",
    "read_examples": "lpft_core.data",
    "reliability_bins": "lpft_core.calibration",
    "resolve_model": "lpft_core.modeling",
    "run_job": "lpft_core.pipeline",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lpft_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
