"""A sweep as an Optuna study, driven ask-and-tell: whoever starts a trial asks the study
for its parameters, the trial reports each epoch's validation value (and stops when the
pruner says so), and whoever sees it end tells the study its objective. Nothing here waits
for a trial, so the service runs trials on any worker (``lpft_worker.sweeps``) while
``sweep_job`` runs them one after another in process with the very same calls.

The study lives in whatever ``optuna.storages`` the caller opens (the service's is a
journal on its Redis; the in-process run's is in memory).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from lpft_core.errors import JobCancelled
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback
from lpft_core.jobs.head_norm_analysis import HeadNormFigures, head_norm_figures
from lpft_core.jobs.sweep_report import PICTURES, sweep_report
from lpft_core.jobs.sweep_spec import ParamType, Pruner, Sampler, SearchParam, SweepSpec
from lpft_core.model.artifacts import METRICS, write_json

optuna.logging.set_verbosity(optuna.logging.WARNING)
logger = logging.getLogger("lpft.sweep")


def distribution(param: SearchParam) -> BaseDistribution:
    """The Optuna distribution of one search range."""
    if param.type is ParamType.CATEGORICAL:
        return CategoricalDistribution(param.choices)
    assert param.low is not None and param.high is not None
    if param.type is ParamType.INT:
        return IntDistribution(
            int(param.low), int(param.high), log=param.log, step=int(param.step or 1)
        )
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def _sampler(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    if spec.sampler is Sampler.GRID:
        # The grid sampler shuffles its grid with its seed and gives trial n the n-th point:
        # every worker's sampler must shuffle alike, or two trials get the same point.
        grid = {name: param.grid() for name, param in spec.search_space.items()}
        return optuna.samplers.GridSampler(grid, seed=spec.hyperparameters.seed)
    if spec.sampler is Sampler.RANDOM:
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    epochs = spec.search_space.get("epochs")
    most = int(epochs.high) if epochs and epochs.high is not None else spec.hyperparameters.epochs
    if spec.pruner is Pruner.MEDIAN:
        # A trial is compared with those before it from its first epoch on, once one other
        # trial has reported that epoch: sweeps here are a few trials of a few epochs.
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    if spec.pruner is Pruner.HYPERBAND:
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(most, 1))
    return optuna.pruners.NopPruner()


def open_study(
    spec: SweepSpec, storage: optuna.storages.BaseStorage | str, name: str
) -> optuna.Study:
    """The sweep's study in ``storage`` (created at the first call), with its sampler and
    pruner. The sampler is seeded with the base seed plus the trials the study holds: a
    sampler is built anew at each ask (each on whichever worker asks), and one seed alone
    would draw the same first parameters every time (the grid sampler, which draws none,
    keeps the base seed: see ``_sampler``)."""
    study = optuna.create_study(
        storage=storage, study_name=name, direction=spec.direction, load_if_exists=True
    )
    seed = spec.hyperparameters.seed + len(study.get_trials(deepcopy=False))
    return optuna.load_study(
        study_name=name, storage=storage, sampler=_sampler(spec, seed), pruner=_pruner(spec)
    )


def ask(study: optuna.Study, spec: SweepSpec) -> tuple[int, dict[str, Any]]:
    """A new trial's number and parameters."""
    distributions = {name: distribution(p) for name, p in spec.search_space.items()}
    with warnings.catch_warnings():  # the grid sampler warns when its grid is used up
        warnings.simplefilter("ignore")
        trial = study.ask(distributions)
    return trial.number, dict(trial.params)


def _trial(study: optuna.Study, number: int) -> optuna.Trial:
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.Trial(study, trial_id)


class PruningReporter:
    """Wraps a trial's progress callback: reports each epoch's validation value (the
    objective's ``epoch_metric``) to the study, and from then on ``should_stop`` is true
    once the pruner has spoken. An epoch a resumed run announces again is not re-reported
    (Optuna keeps the first value of a step)."""

    def __init__(
        self,
        study: optuna.Study,
        spec: SweepSpec,
        number: int,
        progress: ProgressCallback,
        on_value: Callable[[int, float], None] | None = None,
    ) -> None:
        self.trial = _trial(study, number)
        self.metric = spec.objective.epoch_metric
        self.progress = progress
        self.on_value = on_value
        self.pruned_at: int | None = None

    def __call__(self, event: ProgressEvent) -> None:
        self.progress(event)
        if "epoch" not in event.metrics or self.metric not in event.metrics:
            return
        epoch, value = int(event.metrics["epoch"]), float(event.metrics[self.metric])
        self.trial.report(value, step=epoch)
        if self.on_value is not None:
            self.on_value(epoch, value)
        if self.pruned_at is None and self.trial.should_prune():
            self.pruned_at = epoch

    def should_stop(self, then: StopCallback) -> StopCallback:
        """``then``, or true once the trial is pruned."""
        return lambda: self.pruned_at is not None or then()


def objective_value(metrics: dict[str, Any], spec: SweepSpec) -> float:
    """The trial's objective: its validation metric after calibration."""
    return float(metrics["validation"]["calibrated"][spec.objective.value])


def tell(study: optuna.Study, number: int, state: TrialState, value: float | None = None) -> None:
    """End trial ``number`` in the study (once: a second telling is ignored, so a trial
    whose end is seen twice, a redelivered message, does no harm)."""
    trial = study.get_trials(deepcopy=False)[number]
    if trial.state.is_finished():
        return
    try:
        study.tell(trial.number, value if state is TrialState.COMPLETE else None, state=state)
    except RuntimeError:
        # The grid sampler calls ``study.stop()`` once its grid is used up, which raises
        # outside ``optimize``; Optuna stores the trial's end before that, so it is told.
        if not study.get_trials(deepcopy=False)[number].state.is_finished():
            raise


@dataclass(frozen=True)
class TrialSummary:
    """One trial as the sweep reports it. ``state`` is Optuna's (complete, pruned, fail,
    running, waiting); ``head_norm``, with the head-norm preset, the figures of the paper's
    analysis of a complete trial."""

    number: int
    params: dict[str, Any]
    state: str
    value: float | None
    intermediate_values: dict[int, float]
    head_norm: HeadNormFigures | None = None


@dataclass(frozen=True)
class SweepResult:
    """What a finished sweep reports (its ``metrics.json``): every trial, the best one and
    the best trial's full metrics."""

    objective: str
    direction: str
    n_trials: int
    trials: list[TrialSummary]
    best_trial: dict[str, Any] | None
    best_metrics: dict[str, Any] | None
    kind: str = "sweep"
    plots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return asdict(self)


def summarise(
    study: optuna.Study, spec: SweepSpec, metrics: dict[int, dict[str, Any]]
) -> SweepResult:
    """The sweep's result from its study and the metrics of its complete trials."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    best = (
        (min if spec.direction == "minimize" else max)(complete, key=lambda t: t.value)
        if complete
        else None
    )
    return SweepResult(
        objective=f"validation.{spec.objective.value}",
        direction=spec.direction,
        n_trials=len(trials),
        trials=[
            TrialSummary(
                number=t.number,
                params=dict(t.params),
                state=t.state.name.lower(),
                value=t.value,
                intermediate_values=dict(t.intermediate_values),
                head_norm=(
                    head_norm_figures(metrics[t.number])
                    if spec.preset and t.number in metrics
                    else None
                ),
            )
            for t in trials
        ],
        best_trial=(
            {"number": best.number, "params": dict(best.params), "value": best.value}
            if best
            else None
        ),
        best_metrics=metrics.get(best.number) if best else None,
    )


def study_pictures(study: optuna.Study) -> dict[str, bytes]:
    """The optimisation history, parameter importances and parallel coordinates as PNGs, by
    name (``sweep_report.PICTURES``); those Optuna cannot draw yet (importances need two
    complete trials that differ) are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as views

    views_by_name = {
        "optimization-history": views.plot_optimization_history,
        "param-importances": views.plot_param_importances,
        "parallel-coordinates": views.plot_parallel_coordinate,
    }
    drawn = {}
    for name in PICTURES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the matplotlib views are "experimental"
                axes = views_by_name[name](study)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            plt.close(figure)
            drawn[name] = buffer.getvalue()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            logger.info("the %s plot was not drawn: %s", name, exc)
    return drawn


def finish_sweep(
    study: optuna.Study,
    spec: SweepSpec,
    metrics: dict[int, dict[str, Any]],
    title: str | None = None,
) -> SweepResult:
    """Summarise the sweep and write its ``metrics.json``, its report (``report.html``,
    ``report.md``, titled ``title``) and its pictures (``plots/<name>.png``)."""
    out = Path(spec.output_dir)
    result = summarise(study, spec, metrics)
    plots = sweep_report(
        out, title or f"Sweep of {spec.method.value}", result, spec, study_pictures(study)
    )
    result = replace(result, plots=plots)
    write_json(out / METRICS, result.to_dict())
    return result


def sweep_job(
    spec: SweepSpec, title: str, progress: ProgressCallback, should_stop: StopCallback
) -> None:
    """Run the whole sweep in this process, one trial after another (``parallelism`` is the
    service's to use), on a study in memory."""
    from lpft_core.jobs.finetune import finetune

    study = open_study(spec, optuna.storages.InMemoryStorage(), "sweep")
    metrics: dict[int, dict[str, Any]] = {}
    for _ in range(spec.n_trials):
        if should_stop():
            raise JobCancelled("stopped on request between trials")
        study = open_study(spec, study._storage, "sweep")
        number, params = ask(study, spec)

        def tagged(event: ProgressEvent, n: int = number) -> None:
            progress(
                ProgressEvent(f"trial-{n}/{event.stage}", event.step, event.total, event.metrics)
            )

        reporter = PruningReporter(study, spec, number, tagged)
        try:
            result = finetune(
                spec.trial_spec(number, params), reporter, reporter.should_stop(should_stop)
            )
        except JobCancelled:
            if reporter.pruned_at is None:
                raise
            tell(study, number, TrialState.PRUNED)
            continue
        metrics[number] = result.metrics.to_dict()
        tell(study, number, TrialState.COMPLETE, objective_value(metrics[number], spec))
    finish_sweep(study, spec, metrics, title)
