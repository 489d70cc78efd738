"""``finetune``: data → (LP) → (FT | LoRA) → temperature scaling → artifact.

The one entry point used by the CLI and the worker, so both train exactly the same way. A run
is a sequence of stage functions over one ``FinetuneRun`` (what each stage reads and adds):
load, LP, FT/LoRA (with the NTK at its start), calibration, metrics, save. With
``FinetuneSpec.checkpoint_dir`` a job saves its probe, NTK statistics and training state as it
goes (``lpft_core.jobs.checkpoint``), and a rerun of the same spec resumes from them.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lpft_core.config import FinetuneSpec
from lpft_core.data.batching import EncodedTexts, join_encoded, stratified_rows
from lpft_core.data.datasets import DatasetSummary
from lpft_core.diagnostics.features import FeatureChange, feature_change
from lpft_core.diagnostics.ntk import exact_ntk
from lpft_core.diagnostics.ntk_stats import NtkStatistics, ntk_statistics
from lpft_core.errors import JobCancelled
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback, never_stop, no_progress
from lpft_core.jobs.checkpoint import NTK, PROBE, TRAINING, JobCheckpoint, job_identity
from lpft_core.jobs.seeds import run_seeds, seeds_of
from lpft_core.model.artifacts import ArtifactManifest, CalibrationRecord, save_artifact
from lpft_core.model.classifier import (
    DEFAULT_MODEL,
    build_classifier,
    classifier_head,
    default_pooling,
    load_tokenizer,
    resolve_device,
    resolve_model,
)
from lpft_core.model.inference import forward_all
from lpft_core.model.lora import apply_lora
from lpft_core.results import (
    Calibration,
    Evaluation,
    HeadNorm,
    JobMetrics,
    ParameterCounts,
    ProbeSummary,
)
from lpft_core.stages.calibration import (
    TemperatureAtBoundWarning,
    TemperatureScaler,
    nll_from_logits,
    scaled_softmax,
)
from lpft_core.stages.checks import ModelQualityWarning, check_job
from lpft_core.stages.conformal import (
    ConformalCalibration,
    ConformalResult,
    fit_conformal,
    reported_coverage,
)
from lpft_core.stages.evaluation import evaluate
from lpft_core.stages.prepare import (
    EVALUATION,
    PreparedData,
    features_of,
    load_splits,
    prepare_data,
    seed_everything,
)
from lpft_core.stages.probe import LinearProbe, install_head, scale_head
from lpft_core.stages.training import TrainingOptions, TrainingResult, train


@dataclass(frozen=True)
class FinetuneResult:
    """Where the artifact was written, and what the job measured."""

    output_dir: Path
    metrics: JobMetrics


@dataclass(frozen=True)
class FittedProbe:
    """A fitted linear probe: its summary and the head (V, b) it installs. ``compare`` fits
    one and shares it, so every LP method starts from the very same head."""

    summary: ProbeSummary
    weight: np.ndarray
    bias: np.ndarray


@dataclass
class FinetuneRun:
    """What the stages of one run share. ``_load`` fills the first block; each later stage
    adds its own results below."""

    spec: FinetuneSpec
    device: torch.device
    progress: ProgressCallback
    should_stop: StopCallback
    checkpoints: JobCheckpoint | None
    pooling: str
    tokenizer: Any
    data: PreparedData
    summary: DatasetSummary
    model: torch.nn.Module
    timing: dict[str, float]
    pretrained_features: dict[str, np.ndarray] = field(default_factory=dict)
    initial_norm: float = 0.0
    probe: ProbeSummary | None = None
    after_lp: float | None = None
    ntk: NtkStatistics | None = None
    training: TrainingResult | None = None

    def features(self, model: torch.nn.Module, key: str) -> np.ndarray:
        """phi(x) of the encoded set ``key`` under ``model``."""
        return features_of(
            model,
            self.data.encoded[key],
            batch_size=self.spec.hyperparameters.batch_size,
            device=self.device,
            should_stop=self.should_stop,
        )


@dataclass(frozen=True)
class Calibrated:
    """The calibration stage's results: T, where it was fitted, every reported set scored,
    the trained features of those sets (for the feature change), the conformal scores of the
    validation rows at T and their coverage on the evaluation split, and the validation split
    itself scored at T (what a sweep optimises)."""

    temperature: float
    calibration: Calibration
    evaluations: dict[str, Evaluation]
    trained_features: dict[str, np.ndarray]
    conformal: ConformalCalibration
    coverage: list[ConformalResult]
    validation: Evaluation


def finetune(
    spec: FinetuneSpec,
    progress: ProgressCallback = no_progress,
    should_stop: StopCallback = never_stop,
    *,
    probe: FittedProbe | None = None,
) -> FinetuneResult:
    """Train, calibrate, evaluate and save one model as ``spec`` says.

    Args:
        spec: the job.
        progress: called with a ``ProgressEvent`` at every step of every stage.
        should_stop: polled between steps; when it returns True the job raises
            ``JobCancelled`` within one step and writes nothing but its checkpoint.
        probe: a probe already fitted on the same data and model (``fit_probe``), used
            instead of fitting one.

    With ``spec.checkpoint_dir``, the probe is saved after LP and the training state after
    every FT/LoRA epoch; a rerun of the same spec reuses them (announced as a progress event
    with ``resumed_from_epoch``) and ends with the metrics of an uninterrupted run. The
    directory is deleted once the model is saved.

    With several ``spec.seeds`` it trains one run per seed (``lpft_core.jobs.seeds``) and the
    first seed's run is the saved model; ``probe`` then cannot be given (a probe is fitted
    with one seed).

    Returns:
        The artifact directory and the job's metrics (also saved as ``metrics.json``).

    Raises:
        LpftError: a subclass that says what to fix (data, config, model) or that the job
            was cancelled or diverged.
    """
    if probe is not None and len(seeds_of(spec)) > 1:
        raise ValueError("a shared probe serves one seed; run each seed's spec on its own")
    metrics = run_seeds(
        spec, lambda one, tagged: _run_once(one, tagged, should_stop, probe), progress
    )
    return FinetuneResult(output_dir=Path(spec.output_dir), metrics=metrics)


def _run_once(
    spec: FinetuneSpec,
    progress: ProgressCallback,
    should_stop: StopCallback,
    probe: FittedProbe | None,
) -> JobMetrics:
    """One seed's run of ``finetune``, stage by stage."""
    run = _load(spec, progress, should_stop)
    with _timed(run.timing, "features"):
        run.pretrained_features = {
            name: run.features(run.model, key) for name, key in run.data.reported.items()
        }
    run.initial_norm = _head_norm(run.model)
    if spec.method.uses_probe:
        with _timed(run.timing, "lp"):
            _linear_probe(run, probe)
    if spec.method.finetunes:
        _finetune(run)
    with _timed(run.timing, "calibrate"):
        calibrated = _calibrate(run)
    with _timed(run.timing, "feature_change"):
        changes = {
            name: feature_change(
                run.pretrained_features[name],
                calibrated.trained_features[name],
                run.data.targets[key],
            )
            for name, key in run.data.reported.items()
        }
    if should_stop():
        raise JobCancelled("stopped on request before saving the model")
    metrics = _metrics(run, calibrated, changes)
    with _timed(run.timing, "save"):
        _save(run, metrics, calibrated.conformal)
    return metrics


def _load(spec: FinetuneSpec, progress: ProgressCallback, should_stop: StopCallback) -> FinetuneRun:
    """Seed, read and check the data, build the classifier and encode every set."""
    hp = spec.hyperparameters
    timing: dict[str, float] = {}
    seed_everything(hp.seed)
    device = resolve_device(hp.device)
    with _timed(timing, "load"):
        progress(ProgressEvent("load", 0, 1))
        splits = load_splits(
            spec.data,
            seed=hp.seed,
            max_text_chars=spec.max_text_chars,
            split_seed=spec.split_seed,
        )
        model_ref = resolve_model(spec.model)
        pooling = hp.pooling or default_pooling(model_ref)
        tokenizer = load_tokenizer(model_ref)
        model = build_classifier(model_ref, splits.labels, pooling, hp.seed).to(device)
        run = FinetuneRun(
            spec=spec,
            device=device,
            progress=progress,
            should_stop=should_stop,
            checkpoints=(
                JobCheckpoint.open(spec.checkpoint_dir, job_identity(spec))
                if spec.checkpoint_dir
                else None
            ),
            pooling=pooling,
            tokenizer=tokenizer,
            data=prepare_data(splits, tokenizer, hp.max_length),
            summary=splits.summary(tokenizer),
            model=model,
            timing=timing,
        )
        progress(ProgressEvent("load", 1, 1))
    return run


def _linear_probe(run: FinetuneRun, probe: FittedProbe | None) -> None:
    """Install the shared probe, the one a resumed run saved, or a freshly fitted one."""
    hp = run.spec.hyperparameters
    if probe is None:
        probe = _saved_or_fitted_probe(
            run.checkpoints,
            lambda: fit_probe_on(
                run.model,
                run.data.encoded,
                run.data.targets["train"],
                run.data.targets["validation"],
                hp.batch_size,
                hp.seed,
                run.device,
                run.progress,
                run.should_stop,
                hp.lp_scoring,
            ),
            run.progress,
        )
    install_head(classifier_head(run.model), probe.weight, probe.bias)
    run.probe = probe.summary
    run.after_lp = _head_norm(run.model)


def _finetune(run: FinetuneRun) -> None:
    """The FT or LoRA stage from the current head, with the NTK at its start when asked."""
    spec, hp = run.spec, run.spec.hyperparameters
    stage = "lora" if spec.method.uses_lora else "ft"
    if hp.head_norm_scale != 1.0:
        scale_head(classifier_head(run.model), hp.head_norm_scale)
    if spec.method.uses_lora:
        run.model = apply_lora(run.model, hp.lora_r, hp.lora_alpha)
    if spec.ntk_samples:
        with _timed(run.timing, "ntk"):
            run.ntk = _saved_or_measured_ntk(
                run.checkpoints,
                lambda: ntk_at_start(
                    run.model,
                    run.data.encoded,
                    run.data.targets["train"],
                    run.data.targets[EVALUATION],
                    spec.ntk_samples,
                    hp.seed,
                    run.device,
                    run.should_stop,
                ),
                run.progress,
            )
    with _timed(run.timing, stage):
        run.training = train(
            run.model,
            run.data.encoded["train"],
            run.data.targets["train"],
            run.data.encoded["validation"],
            run.data.targets["validation"],
            TrainingOptions(
                epochs=hp.epochs,
                batch_size=hp.batch_size,
                learning_rate=hp.learning_rate_for(spec.method),
                weight_decay=hp.weight_decay,
                max_grad_norm=hp.max_grad_norm,
                seed=hp.seed,
                group_by_length=hp.group_by_length,
                compile=hp.compile,
            ),
            device=run.device,
            stage=stage,
            progress=run.progress,
            should_stop=run.should_stop,
            checkpoint=run.checkpoints.path(TRAINING) if run.checkpoints else None,
        )


def _calibrate(run: FinetuneRun) -> Calibrated:
    """Fit T on the validation logits and score every reported set before and after it."""
    hp = run.spec.hyperparameters
    run.progress(ProgressEvent("calibrate", 0, 1))
    # One forward pass gives a reported set's features and logits (in eval mode the head sees
    # phi(x) unchanged); before FT the features are the pre-trained ones already computed.
    trained = {
        name: run.features(run.model, key)
        if run.spec.method.finetunes
        else run.pretrained_features[name]
        for name, key in run.data.reported.items()
    }
    head = classifier_head(run.model)
    weight = head.weight.detach().float().cpu().numpy()
    bias = head.bias.detach().float().cpu().numpy()
    validation = forward_all(
        run.model,
        run.data.encoded["validation"],
        batch_size=hp.batch_size,
        device=run.device,
        should_stop=run.should_stop,
    )
    y_validation = run.data.targets["validation"]
    with warnings.catch_warnings():  # reported once, as a ModelWarning, with the metrics
        warnings.simplefilter("ignore", TemperatureAtBoundWarning)
        temperature = TemperatureScaler().fit(validation, y_validation).temperature_
    logits = {name: trained[name] @ weight.T + bias for name in run.data.reported}
    evaluations = {
        name: evaluate(name, logits[name], run.data.targets[key], temperature, hp.ece_bins)
        for name, key in run.data.reported.items()
    }
    # Conformal scores on the split that fitted T (the only held-out labels there are before
    # the test split), scored on the test split, which neither selected nor fitted anything.
    conformal = fit_conformal(scaled_softmax(validation, temperature), y_validation)
    eval_name = next(iter(run.data.reported))
    coverage = reported_coverage(
        conformal,
        scaled_softmax(logits[eval_name], temperature),
        run.data.targets[EVALUATION],
        [str(label) for label in run.data.labels],
    )
    run.progress(ProgressEvent("calibrate", 1, 1, {"temperature": temperature}))
    return Calibrated(
        temperature=temperature,
        calibration=Calibration(
            temperature=temperature,
            fitted_on="validation",
            rows=len(y_validation),
            ece_bins=hp.ece_bins,
            nll_before=nll_from_logits(validation, y_validation),
            nll_after=nll_from_logits(validation / temperature, y_validation),
        ),
        evaluations=evaluations,
        trained_features=trained,
        conformal=conformal,
        coverage=coverage,
        validation=evaluate("validation", validation, y_validation, temperature, hp.ece_bins),
    )


def _metrics(
    run: FinetuneRun, calibrated: Calibrated, changes: dict[str, FeatureChange]
) -> JobMetrics:
    """Everything the run measured, with the reasons not to trust it (also raised as
    ``ModelQualityWarning``s, which the worker publishes as job events)."""
    spec, hp, training = run.spec, run.spec.hyperparameters, run.training
    head_norm = HeadNorm(
        initial=run.initial_norm, after_lp=run.after_lp, final=_head_norm(run.model)
    )
    model_warnings = check_job(
        spec.method.value,
        run.probe,
        head_norm,
        hp.head_norm_scale,
        calibrated.temperature,
        calibrated.evaluations,
    )
    for warning in model_warnings:
        warnings.warn(f"{warning.code}: {warning.message}", ModelQualityWarning, stacklevel=1)
    eval_name = next(iter(run.data.reported))
    return JobMetrics(
        method=spec.method.value,
        model=spec.model or DEFAULT_MODEL,
        pooling=run.pooling,
        device=run.device.type,
        labels=list(run.data.labels),
        splits={name: s.rows for name, s in run.summary.splits.items()},
        dataset=run.summary,
        parameters=_parameter_counts(run),
        lp=run.probe,
        head_norm=head_norm,
        history=training.steps if training else [],
        epochs=training.epochs if training else [],
        best_epoch=training.best_epoch if training else None,
        temperature=calibrated.temperature,
        calibration=calibrated.calibration,
        test=calibrated.evaluations[eval_name],
        eval_sets={name: calibrated.evaluations[name] for name in run.data.splits.eval_sets},
        features=changes,
        ntk=run.ntk,
        timing=run.timing,
        warnings=model_warnings,
        conformal=calibrated.coverage,
        validation=calibrated.validation,
    )


def _parameter_counts(run: FinetuneRun) -> ParameterCounts:
    """All parameters, and those the run trained (the head alone for LP)."""
    parameters = list(run.model.parameters())
    if run.spec.method.finetunes:
        trainable = sum(p.numel() for p in parameters if p.requires_grad)
    else:
        trainable = sum(p.numel() for p in classifier_head(run.model).parameters())
    return ParameterCounts(total=sum(p.numel() for p in parameters), trainable=trainable)


def _save(run: FinetuneRun, metrics: JobMetrics, conformal: ConformalCalibration) -> None:
    """Write the model directory, then drop the checkpoint it supersedes."""
    spec, hp = run.spec, run.spec.hyperparameters
    run.progress(ProgressEvent("save", 0, 1))
    save_artifact(
        Path(spec.output_dir),
        run.model,
        run.tokenizer,
        ArtifactManifest(
            format="lora" if spec.method.uses_lora else "full",
            base_model=spec.model or DEFAULT_MODEL,
            method=spec.method.value,
            pair=run.data.splits.pair,
            max_length=hp.max_length,
        ),
        list(run.data.labels),
        CalibrationRecord(
            temperature=metrics.temperature,
            fitted_on="validation",
            rows=metrics.calibration.rows,
            ece_bins=hp.ece_bins,
            conformal=conformal.to_dict(),
        ),
        metrics.to_dict(),
        spec.to_dict(),
    )
    if run.checkpoints is not None:
        run.checkpoints.remove()
    run.progress(ProgressEvent("save", 1, 1))


def _head_norm(model: torch.nn.Module) -> float:
    return float(classifier_head(model).weight.detach().norm())


def fit_probe(
    spec: FinetuneSpec,
    progress: ProgressCallback = no_progress,
    should_stop: StopCallback = never_stop,
) -> FittedProbe:
    """The LP stage of ``spec`` alone, to share one probe between several jobs on the same
    data, model and seed."""
    hp = spec.hyperparameters
    seed_everything(hp.seed)
    device = resolve_device(hp.device)
    splits = load_splits(
        spec.data, seed=hp.seed, max_text_chars=spec.max_text_chars, split_seed=spec.split_seed
    )
    model_ref = resolve_model(spec.model)
    tokenizer = load_tokenizer(model_ref)
    pooling = hp.pooling or default_pooling(model_ref)
    model = build_classifier(model_ref, splits.labels, pooling, hp.seed).to(device)
    data = prepare_data(splits, tokenizer, hp.max_length)
    return fit_probe_on(
        model,
        data.encoded,
        data.targets["train"],
        data.targets["validation"],
        hp.batch_size,
        hp.seed,
        device,
        progress,
        should_stop,
        hp.lp_scoring,
    )


def fit_probe_on(
    model,
    encoded,
    y_train,
    y_validation,
    batch_size,
    seed,
    device,
    progress,
    should_stop,
    scoring: str = "accuracy",
) -> FittedProbe:
    """Extract frozen train and validation features once and fit the cross-validated probe
    (``encoded`` holds ``train`` and ``validation``; ``scoring`` picks C)."""
    features = {}
    for step, name in enumerate(("train", "validation")):
        progress(ProgressEvent("lp", step, 3))
        features[name] = features_of(
            model, encoded[name], batch_size=batch_size, device=device, should_stop=should_stop
        )
    progress(ProgressEvent("lp", 2, 3))
    probe = LinearProbe(random_state=seed, scoring=scoring).fit(features["train"], y_train)
    summary = ProbeSummary(
        C=probe.C_,
        cv_folds=probe.cv_folds_,
        train_accuracy=float(probe.score(features["train"], y_train)),
        validation_accuracy=float(probe.score(features["validation"], y_validation)),
        C_min=probe.grid_[0],
        C_max=probe.grid_[1],
        scoring=scoring,
    )
    progress(_probe_fitted(summary))
    return FittedProbe(summary, *probe.head_parameters())


def _probe_fitted(summary: ProbeSummary) -> ProgressEvent:
    """The last event of the LP stage."""
    return ProgressEvent(
        "lp", 3, 3, {"C": summary.C, "validation_accuracy": summary.validation_accuracy}
    )


def _saved_or_fitted_probe(
    checkpoints: JobCheckpoint | None,
    fit: Callable[[], FittedProbe],
    progress: ProgressCallback,
) -> FittedProbe:
    """The probe an earlier run of this job saved, reported as LP's last event, or ``fit()``
    saved for a later run. Reusing it skips LP and installs the very head the interrupted run
    trained from (LP is deterministic, but not free)."""
    saved: FittedProbe | None = checkpoints.load(PROBE) if checkpoints else None
    if saved is not None:
        progress(_probe_fitted(saved.summary))
        return saved
    fitted = fit()
    if checkpoints is not None:
        checkpoints.save(PROBE, fitted)
    return fitted


def _saved_or_measured_ntk(
    checkpoints: JobCheckpoint | None,
    measure: Callable[[], NtkStatistics],
    progress: ProgressCallback,
) -> NtkStatistics:
    """The NTK statistics an earlier run of this job saved, or ``measure()`` saved for a later
    run. They are saved rather than measured again on resume: the kernel can take minutes,
    and it is taken before the first step, which a resumed run is long past."""
    ntk: NtkStatistics | None = checkpoints.load(NTK) if checkpoints else None
    if ntk is None:
        progress(ProgressEvent("ntk", 0, 1))
        ntk = measure()
        if checkpoints is not None:
            checkpoints.save(NTK, ntk)
    progress(ProgressEvent("ntk", 1, 1, {"ft_ratio": ntk.ft_ratio}))
    return ntk


def ntk_at_start(
    model: torch.nn.Module,
    encoded: dict[str, EncodedTexts],
    y_train: np.ndarray,
    y_eval: np.ndarray,
    samples: int,
    seed: int,
    device: torch.device,
    should_stop: StopCallback = never_stop,
) -> NtkStatistics:
    """The exact NTK of ``model`` as it stands (build it as the FT stage starts) between
    ``samples`` stratified, seeded train rows and as many ``evaluation`` rows."""
    train_rows = stratified_rows(y_train, samples, seed)
    test_rows = stratified_rows(y_eval, samples, seed)
    offset = len(y_train)
    joined = join_encoded(encoded["train"], encoded[EVALUATION])
    kernels = exact_ntk(
        model,
        joined,
        train_rows,
        [offset + r for r in test_rows],
        device=device,
        should_stop=should_stop,
    )
    head = classifier_head(model)
    logits = kernels.features[: len(train_rows)] @ head.weight.detach().double().cpu().numpy().T
    logits += head.bias.detach().double().cpu().numpy()
    return ntk_statistics(
        kernels,
        logits,
        y_train[train_rows],
        y_eval[test_rows],
        epsilon=float(torch.finfo(head.weight.dtype).eps),
        seed=seed,
    )


@contextmanager
def _timed(timing: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timing[stage] = round(time.perf_counter() - started, 3)
