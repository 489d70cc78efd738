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
    from lpft_core.config import DataFiles, FinetuneSpec, Hyperparameters, Method
    from lpft_core.data.datasets import (
        DatasetSplits,
        Example,
        build_splits,
        parse_records,
        read_examples,
    )
    from lpft_core.errors import (
        ConfigError,
        DataError,
        JobCancelled,
        LpftError,
        ModelError,
        TrainingDivergedError,
    )
    from lpft_core.events import ProgressEvent
    from lpft_core.jobs.finetune import FinetuneResult, finetune
    from lpft_core.model.classifier import DEFAULT_MODEL, resolve_model
    from lpft_core.results import JobMetrics
    from lpft_core.serving.predictor import Prediction, Predictor
    from lpft_core.stages.calibration import (
        ClassificationMetrics,
        ReliabilityBin,
        TemperatureScaler,
        calibration_errors,
        classification_metrics,
        reliability_bins,
    )
    from lpft_core.stages.probe import LinearProbe

#: Public name → the module that defines it.
_EXPORTS = {
    "JobCancelled": "lpft_core.errors",
    "ClassificationMetrics": "lpft_core.stages.calibration",
    "ConfigError": "lpft_core.errors",
    "DEFAULT_MODEL": "lpft_core.model.classifier",
    "DataError": "lpft_core.errors",
    "DataFiles": "lpft_core.config",
    "DatasetSplits": "lpft_core.data.datasets",
    "Example": "lpft_core.data.datasets",
    "Hyperparameters": "lpft_core.config",
    "JobMetrics": "lpft_core.results",
    "FinetuneResult": "lpft_core.jobs.finetune",
    "FinetuneSpec": "lpft_core.config",
    "LinearProbe": "lpft_core.stages.probe",
    "LpftError": "lpft_core.errors",
    "Method": "lpft_core.config",
    "ModelError": "lpft_core.errors",
    "Prediction": "lpft_core.serving.predictor",
    "Predictor": "lpft_core.serving.predictor",
    "ProgressEvent": "lpft_core.events",
    "ReliabilityBin": "lpft_core.stages.calibration",
    "TemperatureScaler": "lpft_core.stages.calibration",
    "TrainingDivergedError": "lpft_core.errors",
    "build_splits": "lpft_core.data.datasets",
    "calibration_errors": "lpft_core.stages.calibration",
    "classification_metrics": "lpft_core.stages.calibration",
    "parse_records": "lpft_core.data.datasets",
    "read_examples": "lpft_core.data.datasets",
    "reliability_bins": "lpft_core.stages.calibration",
    "resolve_model": "lpft_core.model.classifier",
    "finetune": "lpft_core.jobs.finetune",
}

__all__ = [
    "DEFAULT_MODEL",
    "ClassificationMetrics",
    "ConfigError",
    "DataError",
    "DataFiles",
    "DatasetSplits",
    "Example",
    "FinetuneResult",
    "FinetuneSpec",
    "Hyperparameters",
    "JobCancelled",
    "JobMetrics",
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
    "finetune",
    "parse_records",
    "read_examples",
    "reliability_bins",
    "resolve_model",
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
