"""``run_job``: data → (LP) → (FT | LoRA) → temperature scaling → artifact.

The one entry point used by the CLI and the worker, so both train exactly the same way.
With ``JobSpec.checkpoint_dir`` a job saves its probe, NTK statistics and training state as it
goes (``lpft_core.checkpoint``), and a rerun of the same spec resumes from them.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lpft_core.artifacts import ArtifactManifest, CalibrationRecord, save_artifact
from lpft_core.batching import EncodedTexts, encode, join_encoded, stratified_rows
from lpft_core.calibration import (
    TemperatureAtBoundWarning,
    TemperatureScaler,
    classification_metrics,
    nll_from_logits,
    reliability_bins,
    scaled_softmax,
)
from lpft_core.checkpoint import NTK, PROBE, TRAINING, JobCheckpoint, job_identity
from lpft_core.checks import ModelQualityWarning, check_job
from lpft_core.config import JobSpec
from lpft_core.data import DatasetSplits, build_splits, read_examples
from lpft_core.errors import CancelledError
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback, never_stop, no_progress
from lpft_core.features import feature_change
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
from lpft_core.ntk import exact_ntk
from lpft_core.ntk_stats import NtkStatistics, ntk_statistics
from lpft_core.probe import LinearProbe, install_head, scale_head
from lpft_core.results import (
    Calibration,
    Evaluation,
    HeadNorm,
    JobMetrics,
    ParameterCounts,
    ProbeSummary,
    Reliability,
)
from lpft_core.seeds import run_seeds, seeds_of
from lpft_core.training import TrainingOptions, TrainingResult, train


@dataclass(frozen=True)
class JobResult:
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


def load_splits(spec: JobSpec) -> DatasetSplits:
    """Read and cross-check the spec's dataset files."""
    files = spec.data
    read = lambda path: read_examples(path, max_text_chars=spec.max_text_chars)  # noqa: E731
    return build_splits(
        read(files.train),
        read(files.validation) if files.validation else None,
        read(files.test) if files.test else None,
        seed=spec.hyperparameters.seed if spec.split_seed is None else spec.split_seed,
        names={
            "train": Path(files.train).name,
            "validation": Path(files.validation).name if files.validation else "validation",
            "test": Path(files.test).name if files.test else "test",
            **{name: Path(path).name for name, path in files.eval_sets.items()},
        },
        eval_sets={name: read(path) for name, path in files.eval_sets.items()},
    )


def run_job(
    spec: JobSpec,
    progress: ProgressCallback = no_progress,
    should_stop: StopCallback = never_stop,
    *,
    probe: FittedProbe | None = None,
) -> JobResult:
    """Train, calibrate, evaluate and save one model as ``spec`` says.

    Args:
        spec: the job.
        progress: called with a ``ProgressEvent`` at every step of every stage.
        should_stop: polled between steps; when it returns True the job raises
            ``CancelledError`` within one step and writes nothing but its checkpoint.
        probe: a probe already fitted on the same data and model (``fit_probe``), used
            instead of fitting one.

    With ``spec.checkpoint_dir``, the probe is saved after LP and the training state after
    every FT/LoRA epoch; a rerun of the same spec reuses them (announced as a progress event
    with ``resumed_from_epoch``) and ends with the metrics of an uninterrupted run. The
    directory is deleted once the model is saved.

    With several ``spec.seeds`` it trains one run per seed (``lpft_core.seeds``) and the
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
        spec, lambda one, tagged: _run_once(one, tagged, should_stop, probe).metrics, progress
    )
    return JobResult(output_dir=Path(spec.output_dir), metrics=metrics)


def _run_once(
    spec: JobSpec,
    progress: ProgressCallback,
    should_stop: StopCallback,
    probe: FittedProbe | None,
) -> JobResult:
    """One seed's run of ``run_job``."""
    hp = spec.hyperparameters
    timing: dict[str, float] = {}
    seed_everything(hp.seed)
    device = resolve_device(hp.device)

    with _timed(timing, "load"):
        progress(ProgressEvent("load", 0, 1))
        splits = load_splits(spec)
        model_ref = resolve_model(spec.model)
        pooling = hp.pooling or default_pooling(model_ref)
        tokenizer = load_tokenizer(model_ref)
        model = build_classifier(model_ref, splits.labels, pooling, hp.seed).to(device)
        eval_name, eval_examples = splits.evaluation
        encoded = {
            "train": encode(tokenizer, splits.train, hp.max_length),
            "validation": encode(tokenizer, splits.validation, hp.max_length),
            "evaluation": encode(tokenizer, eval_examples, hp.max_length),
        }
        y_train = splits.label_ids(splits.train)
        y_validation = splits.label_ids(splits.validation)
        y_eval = splits.label_ids(eval_examples)
        # The sets whose features and full metrics are reported: the evaluation split under
        # its own name, then every extra eval set.
        reported = {eval_name: ("evaluation", y_eval)}
        for name, examples in splits.eval_sets.items():
            encoded[name] = encode(tokenizer, examples, hp.max_length)
            reported[name] = (name, splits.label_ids(examples))
        summary = splits.summary(tokenizer)
        progress(ProgressEvent("load", 1, 1))

    def features_of(net: torch.nn.Module, key: str) -> np.ndarray:
        return forward_all(
            net,
            encoded[key],
            batch_size=hp.batch_size,
            device=device,
            output="features",
            should_stop=should_stop,
        )

    with _timed(timing, "features"):
        pretrained_features = {name: features_of(model, key) for name, (key, _) in reported.items()}

    checkpoints = (
        JobCheckpoint.open(spec.checkpoint_dir, job_identity(spec)) if spec.checkpoint_dir else None
    )
    head = classifier_head(model)
    initial_norm = float(head.weight.detach().norm())
    probe_summary = None
    if spec.method.uses_probe:
        with _timed(timing, "lp"):
            if probe is None:
                probe = _saved_or_fitted_probe(
                    checkpoints,
                    lambda: fit_probe_on(
                        model,
                        encoded,
                        y_train,
                        y_validation,
                        hp.batch_size,
                        hp.seed,
                        device,
                        progress,
                        should_stop,
                        hp.lp_scoring,
                    ),
                    progress,
                )
            install_head(head, probe.weight, probe.bias)
            probe_summary = probe.summary
    after_lp = float(head.weight.detach().norm()) if probe_summary else None

    training: TrainingResult | None = None
    ntk: NtkStatistics | None = None
    trained = model
    if spec.method.finetunes:
        stage = "lora" if spec.method.uses_lora else "ft"
        if hp.head_norm_scale != 1.0:
            scale_head(head, hp.head_norm_scale)
        if spec.method.uses_lora:
            trained = apply_lora(model, hp.lora_r, hp.lora_alpha)
        if spec.ntk_samples:
            with _timed(timing, "ntk"):
                ntk = _saved_or_measured_ntk(
                    checkpoints,
                    lambda: ntk_at_start(
                        trained,
                        encoded,
                        y_train,
                        y_eval,
                        spec.ntk_samples,
                        hp.seed,
                        device,
                        should_stop,
                    ),
                    progress,
                )
        with _timed(timing, stage):
            options = TrainingOptions(
                epochs=hp.epochs,
                batch_size=hp.batch_size,
                learning_rate=hp.learning_rate_for(spec.method),
                weight_decay=hp.weight_decay,
                max_grad_norm=hp.max_grad_norm,
                seed=hp.seed,
                group_by_length=hp.group_by_length,
                compile=hp.compile,
            )
            training = train(
                trained,
                encoded["train"],
                y_train,
                encoded["validation"],
                y_validation,
                options,
                device=device,
                stage=stage,
                progress=progress,
                should_stop=should_stop,
                checkpoint=checkpoints.path(TRAINING) if checkpoints else None,
            )
    parameters = ParameterCounts(
        total=sum(p.numel() for p in trained.parameters()),
        trainable=sum(p.numel() for p in trained.parameters() if p.requires_grad)
        if spec.method.finetunes
        else sum(p.numel() for p in classifier_head(trained).parameters()),
    )

    with _timed(timing, "calibrate"):
        progress(ProgressEvent("calibrate", 0, 1))
        # The reported sets' logits come from their features (one forward pass gives both;
        # in eval mode the head sees phi(x) unchanged); before FT the features are the
        # pre-trained ones already computed.
        trained_features = {
            name: features_of(trained, key) if spec.method.finetunes else pretrained_features[name]
            for name, (key, _) in reported.items()
        }
        final_head = classifier_head(trained)
        weight = final_head.weight.detach().float().cpu().numpy()
        bias = final_head.bias.detach().float().cpu().numpy()
        logits = {
            "validation": forward_all(
                trained,
                encoded["validation"],
                batch_size=hp.batch_size,
                device=device,
                should_stop=should_stop,
            ),
            **{
                key: trained_features[name] @ weight.T + bias for name, (key, _) in reported.items()
            },
        }
        with warnings.catch_warnings():  # reported once, as a ModelWarning, below
            warnings.simplefilter("ignore", TemperatureAtBoundWarning)
            scaler = TemperatureScaler().fit(logits["validation"], y_validation)
        temperature = scaler.temperature_
        calibration = Calibration(
            temperature=temperature,
            fitted_on="validation",
            rows=len(y_validation),
            ece_bins=hp.ece_bins,
            nll_before=nll_from_logits(logits["validation"], y_validation),
            nll_after=nll_from_logits(logits["validation"] / temperature, y_validation),
        )
        evaluations = {
            name: _evaluate(name, logits[key], y, temperature, hp.ece_bins)
            for name, (key, y) in reported.items()
        }
        progress(ProgressEvent("calibrate", 1, 1, {"temperature": temperature}))

    with _timed(timing, "feature_change"):
        features = {
            name: feature_change(pretrained_features[name], trained_features[name], y)
            for name, (_, y) in reported.items()
        }

    if should_stop():
        raise CancelledError("stopped on request before saving the model")
    out = Path(spec.output_dir)
    head_norm = HeadNorm(
        initial=initial_norm,
        after_lp=after_lp,
        final=float(classifier_head(trained).weight.detach().norm()),
    )
    model_warnings = check_job(
        spec.method.value, probe_summary, head_norm, hp.head_norm_scale, temperature, evaluations
    )
    for warning in model_warnings:  # the worker publishes these as job events
        warnings.warn(f"{warning.code}: {warning.message}", ModelQualityWarning, stacklevel=1)
    metrics = JobMetrics(
        method=spec.method.value,
        model=spec.model or DEFAULT_MODEL,
        pooling=pooling,
        device=device.type,
        labels=list(splits.labels),
        splits={name: s.rows for name, s in summary.splits.items()},
        dataset=summary,
        parameters=parameters,
        lp=probe_summary,
        head_norm=head_norm,
        history=training.steps if training else [],
        epochs=training.epochs if training else [],
        best_epoch=training.best_epoch if training else None,
        temperature=temperature,
        calibration=calibration,
        test=evaluations[eval_name],
        eval_sets={name: evaluations[name] for name in splits.eval_sets},
        features=features,
        ntk=ntk,
        timing=timing,
        warnings=model_warnings,
    )
    with _timed(timing, "save"):
        progress(ProgressEvent("save", 0, 1))
        save_artifact(
            out,
            trained,
            tokenizer,
            ArtifactManifest(
                format="lora" if spec.method.uses_lora else "full",
                base_model=spec.model or DEFAULT_MODEL,
                method=spec.method.value,
                pair=splits.pair,
                max_length=hp.max_length,
            ),
            list(splits.labels),
            CalibrationRecord(
                temperature=temperature,
                fitted_on="validation",
                rows=len(y_validation),
                ece_bins=hp.ece_bins,
            ),
            metrics.to_dict(),
            spec.to_dict(),
        )
        if checkpoints is not None:
            checkpoints.remove()
        progress(ProgressEvent("save", 1, 1))
    return JobResult(output_dir=out, metrics=metrics)


def fit_probe(
    spec: JobSpec,
    progress: ProgressCallback = no_progress,
    should_stop: StopCallback = never_stop,
) -> FittedProbe:
    """The LP stage of ``spec`` alone, to share one probe between several jobs on the same
    data, model and seed."""
    hp = spec.hyperparameters
    seed_everything(hp.seed)
    device = resolve_device(hp.device)
    splits = load_splits(spec)
    model_ref = resolve_model(spec.model)
    tokenizer = load_tokenizer(model_ref)
    pooling = hp.pooling or default_pooling(model_ref)
    model = build_classifier(model_ref, splits.labels, pooling, hp.seed).to(device)
    encoded = {
        name: encode(tokenizer, examples, hp.max_length)
        for name, examples in (("train", splits.train), ("validation", splits.validation))
    }
    return fit_probe_on(
        model,
        encoded,
        splits.label_ids(splits.train),
        splits.label_ids(splits.validation),
        hp.batch_size,
        hp.seed,
        device,
        progress,
        should_stop,
        hp.lp_scoring,
    )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a job is repeatable on one machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
        features[name] = forward_all(
            model,
            encoded[name],
            batch_size=batch_size,
            device=device,
            output="features",
            should_stop=should_stop,
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
    joined = join_encoded(encoded["train"], encoded["evaluation"])
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


def _evaluate(
    split: str, logits: np.ndarray, y: np.ndarray, temperature: float, n_bins: int
) -> Evaluation:
    n_classes = logits.shape[1]
    return Evaluation(
        split=split,
        rows=len(y),
        majority_rate=float(np.bincount(y, minlength=n_classes).max() / len(y)),
        top_prediction_share=float(
            np.bincount(logits.argmax(axis=1), minlength=n_classes).max() / len(y)
        ),
        uncalibrated=classification_metrics(logits, y, n_bins=n_bins),
        calibrated=classification_metrics(logits, y, temperature=temperature, n_bins=n_bins),
        reliability=Reliability(
            uncalibrated=reliability_bins(scaled_softmax(logits, 1.0), y, n_bins),
            calibrated=reliability_bins(scaled_softmax(logits, temperature), y, n_bins),
        ),
    )


@contextmanager
def _timed(timing: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timing[stage] = round(time.perf_counter() - started, 3)
