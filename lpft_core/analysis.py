"""Analysis without training: the NTK and the features of a base model on a dataset (the
kernel each method would start FT from), or of a finished model against its base."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lpft_core.artifacts import load_model, read_labels, read_manifest
from lpft_core.batching import encode
from lpft_core.config import DataFiles, Hyperparameters, JobSpec, Method, spec_from_dict
from lpft_core.data import Example, Label
from lpft_core.errors import ConfigError, DataError
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback, never_stop, no_progress
from lpft_core.features import (
    FeatureChange,
    FeatureStatistics,
    feature_change,
    feature_statistics,
)
from lpft_core.inference import forward_all
from lpft_core.lora import apply_lora
from lpft_core.modeling import (
    DEFAULT_MODEL,
    build_classifier,
    classifier_head,
    default_pooling,
    load_tokenizer,
    resolve_device,
    resolve_model,
)
from lpft_core.ntk_stats import NtkStatistics
from lpft_core.pipeline import fit_probe_on, load_splits, ntk_at_start, seed_everything
from lpft_core.probe import install_head, scale_head

#: Methods whose FT stage has a kernel (LP trains the head only: its kernel is P).
FINETUNING_METHODS = [m for m in Method if m.finetunes]


@dataclass(frozen=True)
class AnalysisSpec:
    """An analysis job.

    Attributes:
        model: the base model (Hugging Face id or directory; default all-MiniLM-L6-v2).
        model_dir: a finished lpft model directory instead: its features are compared with
            its base model's, and its NTK is taken where training ended, over all encoder
            parameters (LoRA adapters are merged into the weights when it is loaded).
        ntk: compute the NTK; ``methods`` picks whose FT-start kernel (base model only).
        features: compute feature statistics (base) or feature change (finished model).
        ntk_samples: stratified, seeded train samples (and as many evaluation samples).
    """

    data: DataFiles
    output_dir: str
    model: str | None = None
    model_dir: str | None = None
    ntk: bool = True
    features: bool = True
    methods: list[Method] = field(default_factory=lambda: list(FINETUNING_METHODS))
    ntk_samples: int = 256
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    max_text_chars: int = 20_000

    def __post_init__(self) -> None:
        if not (self.ntk or self.features):
            raise ConfigError("analysis", "ask for ntk, features or both")
        methods = [Method(m) for m in self.methods]
        if self.ntk and self.model_dir is None:
            if not methods or any(not m.finetunes for m in methods):
                raise ConfigError(
                    "methods", f"give one or more of {[m.value for m in FINETUNING_METHODS]}"
                )
        object.__setattr__(self, "methods", methods)
        if not 1 <= self.ntk_samples <= 4096:
            raise ConfigError("ntk_samples", "must be between 1 and 4096")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AnalysisSpec:
        """The spec ``to_dict`` wrote."""
        return spec_from_dict(cls, raw)


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


def analyze(
    spec: AnalysisSpec,
    progress: ProgressCallback = no_progress,
    should_stop: StopCallback = never_stop,
) -> AnalysisResult:
    """Run the analysis ``spec`` describes."""
    hp = spec.hyperparameters
    seed_everything(hp.seed)
    device = resolve_device(hp.device)
    timing: dict[str, float] = {}
    started = time.perf_counter()
    progress(ProgressEvent("load", 0, 1))
    trained = None
    if spec.model_dir:
        directory = Path(spec.model_dir)
        manifest = read_manifest(directory)
        labels = read_labels(directory)
        trained = load_model(directory, manifest).to(device)
        base = manifest.base_model
        pooling = trained.config.pooling
        tokenizer = load_tokenizer(str(directory))
        max_length = manifest.max_length
    else:
        base = spec.model or DEFAULT_MODEL
        pooling = hp.pooling or default_pooling(resolve_model(spec.model))
        tokenizer = load_tokenizer(resolve_model(spec.model))
        max_length = hp.max_length
        labels = None
    job = JobSpec(Method.LP, spec.data, spec.output_dir, base, hp, spec.max_text_chars)
    splits = load_splits(job)
    labels = labels or list(splits.labels)
    index = _label_index(labels)
    eval_name, eval_examples = splits.evaluation
    encoded = {
        "train": encode(tokenizer, splits.train, max_length),
        "validation": encode(tokenizer, splits.validation, max_length),
        "evaluation": encode(tokenizer, eval_examples, max_length),
    }
    y = {
        "train": index(splits.train),
        "validation": index(splits.validation),
        "evaluation": index(eval_examples),
    }
    reported = {eval_name: "evaluation"}
    for name, examples in splits.eval_sets.items():
        encoded[name] = encode(tokenizer, examples, max_length)
        y[name] = index(examples)
        reported[name] = name
    pretrained = build_classifier(resolve_model(base), labels, pooling, hp.seed).to(device)
    timing["load"] = round(time.perf_counter() - started, 3)
    progress(ProgressEvent("load", 1, 1))

    def features_of(model: torch.nn.Module, key: str) -> np.ndarray:
        return forward_all(
            model,
            encoded[key],
            batch_size=hp.batch_size,
            device=device,
            output="features",
            should_stop=should_stop,
        )

    statistics: dict[str, FeatureStatistics] = {}
    changes: dict[str, FeatureChange] = {}
    if spec.features:
        started = time.perf_counter()
        progress(ProgressEvent("features", 0, len(reported)))
        for step, (name, key) in enumerate(reported.items(), start=1):
            phi0 = features_of(pretrained, key)
            statistics[name] = feature_statistics(phi0, y[key])
            if trained is not None:
                changes[name] = feature_change(phi0, features_of(trained, key), y[key])
            progress(ProgressEvent("features", step, len(reported)))
        timing["features"] = round(time.perf_counter() - started, 3)

    kernels: dict[str, NtkStatistics] = {}
    if spec.ntk:
        started = time.perf_counter()
        if trained is not None:
            starts = {"trained": lambda: trained}
        else:
            starts = _method_starts(
                spec, pretrained, encoded, y, base, labels, pooling, device, progress
            )
        for step, (name, start) in enumerate(starts.items()):
            progress(ProgressEvent("ntk", step, len(starts)))
            kernels[name] = ntk_at_start(
                start(),
                encoded,
                y["train"],
                y["evaluation"],
                spec.ntk_samples,
                hp.seed,
                device,
                should_stop,
            )
        progress(ProgressEvent("ntk", len(starts), len(starts)))
        timing["ntk"] = round(time.perf_counter() - started, 3)
    return AnalysisResult(
        model=base,
        model_dir=spec.model_dir,
        labels=labels,
        ntk=kernels,
        feature_statistics=statistics,
        feature_change=changes,
        timing=timing,
    )


def _label_index(labels: list[Label]) -> Callable[[list[Example]], np.ndarray]:
    """Class indices in the model's label order; a label the model lacks is an error."""
    position = {label: i for i, label in enumerate(labels)}

    def index(examples: list[Example]) -> np.ndarray:
        for example in examples:
            if example.label not in position:
                raise DataError(
                    f"label {example.label!r} is not one of the model's labels "
                    f"{sorted(map(str, labels))}",
                    line=example.line,
                    field="label",
                )
        return np.array([position[e.label] for e in examples], dtype=np.int64)

    return index


def _method_starts(spec, pretrained, encoded, y, base, labels, pooling, device, progress):
    """For each method, a builder of the model as its FT stage starts (one shared probe,
    fitted on the features of ``pretrained``, the untouched base classifier)."""
    hp = spec.hyperparameters
    probe = None
    if any(m.uses_probe for m in spec.methods):
        probe = fit_probe_on(
            pretrained,
            encoded,
            y["train"],
            y["validation"],
            hp.batch_size,
            hp.seed,
            device,
            progress,
            never_stop,
            hp.lp_scoring,
        )

    def start(method: Method):
        def build() -> torch.nn.Module:
            model = build_classifier(resolve_model(base), labels, pooling, hp.seed).to(device)
            if method.uses_probe:
                install_head(classifier_head(model), probe.weight, probe.bias)
            if hp.head_norm_scale != 1.0:
                scale_head(classifier_head(model), hp.head_norm_scale)
            if method.uses_lora:
                model = apply_lora(model, hp.lora_r, hp.lora_alpha)
            return model

        return build

    return {method.value: start(method) for method in spec.methods}
