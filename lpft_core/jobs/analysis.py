"""Analysis without training: the NTK and the features of a base model on a dataset (the
kernel each method would start FT from), or of a finished model against its base. With
``checkpoint_dir`` a rerun after an interruption reuses the parts that finished (the features,
the probe, each method's kernel; ``lpft_core.jobs.checkpoint``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lpft_core.config import Method
from lpft_core.data.datasets import Label
from lpft_core.diagnostics.features import (
    FeatureChange,
    FeatureStatistics,
    feature_change,
    feature_statistics,
)
from lpft_core.diagnostics.ntk_stats import NtkStatistics
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback, never_stop, no_progress
from lpft_core.jobs.checkpoint import JobCheckpoint, finished_or_run, job_identity
from lpft_core.jobs.finetune import fit_probe_on, ntk_at_start
from lpft_core.jobs.specs import AnalysisSpec
from lpft_core.model.artifacts import load_model, read_labels, read_manifest
from lpft_core.model.classifier import (
    DEFAULT_MODEL,
    build_classifier,
    classifier_head,
    default_pooling,
    load_tokenizer,
    resolve_device,
    resolve_model,
)
from lpft_core.model.lora import apply_lora
from lpft_core.results import AnalysisResult
from lpft_core.stages.prepare import (
    EVALUATION,
    PreparedData,
    features_of,
    load_splits,
    prepare_data,
    seed_everything,
)
from lpft_core.stages.probe import install_head, scale_head


@dataclass
class _Subject:
    """What an analysis measures: the untouched base classifier, the finished model (when
    analysing one), and the data encoded for their tokenizer."""

    base: str
    pooling: str
    labels: list[Label]
    pretrained: torch.nn.Module
    trained: torch.nn.Module | None
    data: PreparedData
    device: torch.device


def analyze(
    spec: AnalysisSpec,
    progress: ProgressCallback = no_progress,
    should_stop: StopCallback = never_stop,
) -> AnalysisResult:
    """Run the analysis ``spec`` describes."""
    seed_everything(spec.hyperparameters.seed)
    checkpoint = (
        JobCheckpoint.open(spec.checkpoint_dir, job_identity(spec)) if spec.checkpoint_dir else None
    )
    timing: dict[str, float] = {}
    started = time.perf_counter()
    progress(ProgressEvent("load", 0, 1))
    subject = _load(spec)
    timing["load"] = round(time.perf_counter() - started, 3)
    progress(ProgressEvent("load", 1, 1))
    statistics: dict[str, FeatureStatistics] = {}
    changes: dict[str, FeatureChange] = {}
    if spec.features:
        started = time.perf_counter()
        statistics, changes = finished_or_run(
            checkpoint,
            "features",
            lambda: _features(spec, subject, progress, should_stop),
            progress,
        )
        timing["features"] = round(time.perf_counter() - started, 3)
    kernels: dict[str, NtkStatistics] = {}
    if spec.ntk:
        started = time.perf_counter()
        kernels = _kernels(spec, subject, progress, should_stop, checkpoint)
        timing["ntk"] = round(time.perf_counter() - started, 3)
    if checkpoint is not None:
        checkpoint.remove()
    return AnalysisResult(
        model=subject.base,
        model_dir=spec.model_dir,
        labels=subject.labels,
        ntk=kernels,
        feature_statistics=statistics,
        feature_change=changes,
        timing=timing,
    )


def _load(spec: AnalysisSpec) -> _Subject:
    """The models and the data, in the finished model's label order when there is one."""
    hp = spec.hyperparameters
    device = resolve_device(hp.device)
    trained = None
    labels: list[Label] | None = None
    if spec.model_dir:
        directory = Path(spec.model_dir)
        manifest = read_manifest(directory)
        labels = read_labels(directory)
        trained = load_model(directory, manifest).to(device)
        base, pooling = manifest.base_model, trained.config.pooling
        tokenizer, max_length = load_tokenizer(str(directory)), manifest.max_length
    else:
        base = spec.model or DEFAULT_MODEL
        pooling = hp.pooling or default_pooling(resolve_model(spec.model))
        tokenizer, max_length = load_tokenizer(resolve_model(spec.model)), hp.max_length
    splits = load_splits(spec.data, seed=hp.seed, max_text_chars=spec.max_text_chars)
    data = prepare_data(splits, tokenizer, max_length, labels)
    return _Subject(
        base=base,
        pooling=pooling,
        labels=data.labels,
        pretrained=build_classifier(resolve_model(base), data.labels, pooling, hp.seed).to(device),
        trained=trained,
        data=data,
        device=device,
    )


def _features(
    spec: AnalysisSpec,
    subject: _Subject,
    progress: ProgressCallback,
    should_stop: StopCallback,
) -> tuple[dict[str, FeatureStatistics], dict[str, FeatureChange]]:
    """Statistics of the base model's features per reported set, and the finished model's
    change against them."""
    data = subject.data

    def phi(model: torch.nn.Module, key: str) -> np.ndarray:
        return features_of(
            model,
            data.encoded[key],
            batch_size=spec.hyperparameters.batch_size,
            device=subject.device,
            should_stop=should_stop,
        )

    statistics, changes = {}, {}
    progress(ProgressEvent("features", 0, len(data.reported)))
    for step, (name, key) in enumerate(data.reported.items(), start=1):
        phi0 = phi(subject.pretrained, key)
        statistics[name] = feature_statistics(phi0, data.targets[key])
        if subject.trained is not None:
            changes[name] = feature_change(phi0, phi(subject.trained, key), data.targets[key])
        progress(ProgressEvent("features", step, len(data.reported)))
    return statistics, changes


def _kernels(
    spec: AnalysisSpec,
    subject: _Subject,
    progress: ProgressCallback,
    should_stop: StopCallback,
    checkpoint: JobCheckpoint | None,
) -> dict[str, NtkStatistics]:
    """The NTK where the finished model ended, or at each method's FT start (those an
    interrupted run measured are taken from ``checkpoint``)."""
    hp = spec.hyperparameters
    if subject.trained is not None:
        trained = subject.trained
        starts: dict[str, Callable[[], torch.nn.Module]] = {"trained": lambda: trained}
    else:
        starts = _method_starts(spec, subject, progress, checkpoint)

    def measure(start: Callable[[], torch.nn.Module]) -> NtkStatistics:
        return ntk_at_start(
            start(),
            subject.data.encoded,
            subject.data.targets["train"],
            subject.data.targets[EVALUATION],
            spec.ntk_samples,
            hp.seed,
            subject.device,
            should_stop,
        )

    kernels = {}
    for step, (name, start) in enumerate(starts.items()):
        progress(ProgressEvent("ntk", step, len(starts)))
        kernels[name] = finished_or_run(
            checkpoint, f"ntk/{name}", lambda s=start: measure(s), progress
        )
    progress(ProgressEvent("ntk", len(starts), len(starts)))
    return kernels


def _method_starts(
    spec: AnalysisSpec,
    subject: _Subject,
    progress: ProgressCallback,
    checkpoint: JobCheckpoint | None,
) -> dict[str, Callable[[], torch.nn.Module]]:
    """For each method, a builder of the model as its FT stage starts (one shared probe,
    fitted on the features of the untouched base classifier, or the one an interrupted run
    fitted)."""
    hp = spec.hyperparameters
    data = subject.data
    probe = None
    if any(m.uses_probe for m in spec.methods):
        probe = finished_or_run(
            checkpoint,
            "lp",
            lambda: fit_probe_on(
                subject.pretrained,
                data.encoded,
                data.targets["train"],
                data.targets["validation"],
                hp.batch_size,
                hp.seed,
                subject.device,
                progress,
                never_stop,
                hp.lp_scoring,
            ),
            progress,
        )

    def start(method: Method) -> Callable[[], torch.nn.Module]:
        def build() -> torch.nn.Module:
            model = build_classifier(
                resolve_model(subject.base), data.labels, subject.pooling, hp.seed
            ).to(subject.device)
            if probe is not None and method.uses_probe:
                install_head(classifier_head(model), probe.weight, probe.bias)
            if hp.head_norm_scale != 1.0:
                scale_head(classifier_head(model), hp.head_norm_scale)
            if method.uses_lora:
                model = apply_lora(model, hp.lora_r, hp.lora_alpha)
            return model

        return build

    return {method.value: start(method) for method in spec.methods}
