"""lpft_core: calibrated LP-FT for transformer text classifiers.

Linear probing (a cross-validated L2 logistic regression on frozen features), then full
fine-tuning or LoRA from that head, then temperature scaling fitted on validation data
(Tomihari & Sato, NeurIPS 2024). Pure library: no web framework, no task queue.

The names below are the library's public surface, which the API and the worker use and
nothing deeper. They are imported on first use (PEP 562), so ``import lpft_core`` and its
light modules (``config``, ``errors``, ``jobs.kinds``, ``jobs.specs``) load neither torch nor
transformers: the client, the API's schemas and its spec building use them without the ML
stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lpft_core.config import (
        DEFAULT_LEARNING_RATES,
        MAX_SEEDS,
        DataFiles,
        FinetuneSpec,
        Hyperparameters,
        Method,
    )
    from lpft_core.data.datasets import (
        DatasetSplits,
        Example,
        SplitShape,
        build_splits,
        check_split_shapes,
        examples_from_file,
        parse_records,
        read_examples,
        text_problem,
    )
    from lpft_core.data.fields import MAX_FIELD_NAME_CHARS, FieldMap, option_name
    from lpft_core.data.fields import ROLES as FIELD_ROLES
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
    from lpft_core.jobs.head_norm_analysis import HeadNormFigures, head_norm_figures
    from lpft_core.jobs.kinds import (
        JOB_KINDS,
        JobKind,
        JobKindInfo,
        JobSpec,
        Resume,
        job_kind,
        run_job,
    )
    from lpft_core.jobs.specs import AnalysisSpec, CompareSpec, RecalibrateSpec
    from lpft_core.jobs.sweep import PruningReporter, finish_sweep, objective_value
    from lpft_core.jobs.sweep import ask as ask_trial
    from lpft_core.jobs.sweep import open_study as sweep_study
    from lpft_core.jobs.sweep import tell as tell_trial
    from lpft_core.jobs.sweep_spec import (
        HEAD_NORM_SCALES,
        MAX_TRIALS,
        SweepSpec,
        check_grid_trials,
        check_search_space,
    )
    from lpft_core.jobs.sweep_spec import SEARCHABLE as SWEEP_SEARCHABLE
    from lpft_core.jobs.sweep_storage import database_storage as sweep_database
    from lpft_core.jobs.sweep_storage import delete_study as delete_sweep_study
    from lpft_core.model.artifacts import METRICS as METRICS_FILE
    from lpft_core.model.classifier import DEFAULT_MODEL, resolve_model
    from lpft_core.reporting.style import REPORT_STYLESHEET
    from lpft_core.results import JobMetrics
    from lpft_core.serving.backends import choose_backend
    from lpft_core.serving.cpu_quota import usable_cpus
    from lpft_core.serving.export import (
        ExportFormat,
        ServingFacts,
        export_model,
        serving_facts,
        write_export,
    )
    from lpft_core.serving.onnx_runtime import Precision
    from lpft_core.serving.predictor import Backend, ConformalRequest, Prediction, Predictor
    from lpft_core.stages.calibration import (
        ClassificationMetrics,
        ReliabilityBin,
        TemperatureScaler,
        calibration_errors,
        classification_metrics,
        reliability_bins,
    )
    from lpft_core.stages.conformal import DEFAULT_METHOD as DEFAULT_CONFORMAL_METHOD
    from lpft_core.stages.conformal import ConformalMethod
    from lpft_core.stages.probe import LinearProbe

#: Public name → the module that defines it, as ``module:name`` where the name there differs.
_EXPORTS = {
    "check_search_space": "lpft_core.jobs.sweep_spec",
    "check_grid_trials": "lpft_core.jobs.sweep_spec",
    "SweepSpec": "lpft_core.jobs.sweep_spec",
    "SWEEP_SEARCHABLE": "lpft_core.jobs.sweep_spec:SEARCHABLE",
    "HEAD_NORM_SCALES": "lpft_core.jobs.sweep_spec",
    "MAX_TRIALS": "lpft_core.jobs.sweep_spec",
    "sweep_study": "lpft_core.jobs.sweep:open_study",
    "sweep_database": "lpft_core.jobs.sweep_storage:database_storage",
    "delete_sweep_study": "lpft_core.jobs.sweep_storage:delete_study",
    "ask_trial": "lpft_core.jobs.sweep:ask",
    "tell_trial": "lpft_core.jobs.sweep:tell",
    "PruningReporter": "lpft_core.jobs.sweep",
    "objective_value": "lpft_core.jobs.sweep",
    "finish_sweep": "lpft_core.jobs.sweep",
    "HeadNormFigures": "lpft_core.jobs.head_norm_analysis",
    "REPORT_STYLESHEET": "lpft_core.reporting.style",
    "head_norm_figures": "lpft_core.jobs.head_norm_analysis",
    "AnalysisSpec": "lpft_core.jobs.specs",
    "Backend": "lpft_core.serving.predictor",
    "build_splits": "lpft_core.data.datasets",
    "calibration_errors": "lpft_core.stages.calibration",
    "check_split_shapes": "lpft_core.data.datasets",
    "choose_backend": "lpft_core.serving.backends",
    "classification_metrics": "lpft_core.stages.calibration",
    "ClassificationMetrics": "lpft_core.stages.calibration",
    "CompareSpec": "lpft_core.jobs.specs",
    "ConfigError": "lpft_core.errors",
    "ConformalMethod": "lpft_core.stages.conformal",
    "ConformalRequest": "lpft_core.serving.predictor",
    "DataError": "lpft_core.errors",
    "DataFiles": "lpft_core.config",
    "DatasetSplits": "lpft_core.data.datasets",
    "DEFAULT_CONFORMAL_METHOD": "lpft_core.stages.conformal:DEFAULT_METHOD",
    "DEFAULT_LEARNING_RATES": "lpft_core.config",
    "DEFAULT_MODEL": "lpft_core.model.classifier",
    "Example": "lpft_core.data.datasets",
    "examples_from_file": "lpft_core.data.datasets",
    "export_model": "lpft_core.serving.export",
    "ExportFormat": "lpft_core.serving.export",
    "ServingFacts": "lpft_core.serving.export",
    "serving_facts": "lpft_core.serving.export",
    "write_export": "lpft_core.serving.export",
    "FIELD_ROLES": "lpft_core.data.fields:ROLES",
    "FieldMap": "lpft_core.data.fields",
    "finetune": "lpft_core.jobs.finetune",
    "FinetuneResult": "lpft_core.jobs.finetune",
    "FinetuneSpec": "lpft_core.config",
    "Hyperparameters": "lpft_core.config",
    "job_kind": "lpft_core.jobs.kinds",
    "JOB_KINDS": "lpft_core.jobs.kinds",
    "JobCancelled": "lpft_core.errors",
    "JobKind": "lpft_core.jobs.kinds",
    "JobKindInfo": "lpft_core.jobs.kinds",
    "JobMetrics": "lpft_core.results",
    "JobSpec": "lpft_core.jobs.kinds",
    "LinearProbe": "lpft_core.stages.probe",
    "LpftError": "lpft_core.errors",
    "MAX_FIELD_NAME_CHARS": "lpft_core.data.fields",
    "MAX_SEEDS": "lpft_core.config",
    "Method": "lpft_core.config",
    "METRICS_FILE": "lpft_core.model.artifacts:METRICS",
    "ModelError": "lpft_core.errors",
    "option_name": "lpft_core.data.fields",
    "parse_records": "lpft_core.data.datasets",
    "Precision": "lpft_core.serving.onnx_runtime",
    "Prediction": "lpft_core.serving.predictor",
    "Predictor": "lpft_core.serving.predictor",
    "ProgressEvent": "lpft_core.events",
    "read_examples": "lpft_core.data.datasets",
    "RecalibrateSpec": "lpft_core.jobs.specs",
    "reliability_bins": "lpft_core.stages.calibration",
    "ReliabilityBin": "lpft_core.stages.calibration",
    "resolve_model": "lpft_core.model.classifier",
    "Resume": "lpft_core.jobs.kinds",
    "run_job": "lpft_core.jobs.kinds",
    "SplitShape": "lpft_core.data.datasets",
    "TemperatureScaler": "lpft_core.stages.calibration",
    "text_problem": "lpft_core.data.datasets",
    "TrainingDivergedError": "lpft_core.errors",
    "usable_cpus": "lpft_core.serving.cpu_quota",
}

__all__ = [
    "DEFAULT_CONFORMAL_METHOD",
    "DEFAULT_LEARNING_RATES",
    "DEFAULT_MODEL",
    "FIELD_ROLES",
    "HEAD_NORM_SCALES",
    "JOB_KINDS",
    "MAX_FIELD_NAME_CHARS",
    "MAX_SEEDS",
    "MAX_TRIALS",
    "METRICS_FILE",
    "REPORT_STYLESHEET",
    "SWEEP_SEARCHABLE",
    "AnalysisSpec",
    "Backend",
    "ClassificationMetrics",
    "CompareSpec",
    "ConfigError",
    "ConformalMethod",
    "ConformalRequest",
    "DataError",
    "DataFiles",
    "DatasetSplits",
    "Example",
    "ExportFormat",
    "FieldMap",
    "FinetuneResult",
    "FinetuneSpec",
    "HeadNormFigures",
    "Hyperparameters",
    "JobCancelled",
    "JobKind",
    "JobKindInfo",
    "JobMetrics",
    "JobSpec",
    "LinearProbe",
    "LpftError",
    "Method",
    "ModelError",
    "Precision",
    "Prediction",
    "Predictor",
    "ProgressEvent",
    "PruningReporter",
    "RecalibrateSpec",
    "ReliabilityBin",
    "Resume",
    "ServingFacts",
    "SplitShape",
    "SweepSpec",
    "TemperatureScaler",
    "TrainingDivergedError",
    "ask_trial",
    "build_splits",
    "calibration_errors",
    "check_grid_trials",
    "check_search_space",
    "check_split_shapes",
    "choose_backend",
    "classification_metrics",
    "delete_sweep_study",
    "examples_from_file",
    "export_model",
    "finetune",
    "finish_sweep",
    "head_norm_figures",
    "job_kind",
    "objective_value",
    "option_name",
    "parse_records",
    "read_examples",
    "reliability_bins",
    "resolve_model",
    "run_job",
    "serving_facts",
    "sweep_database",
    "sweep_study",
    "tell_trial",
    "text_problem",
    "usable_cpus",
    "write_export",
]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'lpft_core' has no attribute {name!r}")
    module, _, defined_as = target.partition(":")
    value = getattr(importlib.import_module(module), defined_as or name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
