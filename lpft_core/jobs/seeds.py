"""One job, several seeds: the paper reports mean ± std over seeds, and on small sets one
seed's ECE moves by whole points on a single example.

Every run of a multi-seed job uses the first seed's data split (``FinetuneSpec.split_seed``), so
the runs differ only in what a seed changes in training (head initialisation, data order,
dropout, the probe's folds) and are scored on the very same test rows. The first seed's run
is the job's model: it is saved in ``output_dir`` and served by ``/predict``. The other runs
keep their ``metrics.json`` under ``output_dir/runs/seed-<s>/`` and no weights.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lpft_core.config import FinetuneSpec
from lpft_core.events import ProgressCallback, ProgressEvent, no_progress
from lpft_core.jobs.checkpoint import RUNS, JobCheckpoint, job_identity
from lpft_core.jobs.specs import run_dir
from lpft_core.model.artifacts import METRICS, SPEC, write_json
from lpft_core.results import Evaluation, JobMetrics, MeanStd, SeedRun, SeedSummary, SplitSummary


def seeds_of(spec: FinetuneSpec) -> list[int]:
    """The seeds a job runs, the served one first."""
    return list(spec.seeds) or [spec.hyperparameters.seed]


def spec_for_seed(spec: FinetuneSpec, seed: int) -> FinetuneSpec:
    """The single-seed spec of one run of ``spec``: the job's own output directory for the
    first seed, ``runs/seed-<s>`` for the others, each with its own checkpoint directory."""
    seeds = seeds_of(spec)
    if len(seeds) == 1:
        return spec
    first = seed == seeds[0]
    return dataclasses.replace(
        spec,
        hyperparameters=dataclasses.replace(spec.hyperparameters, seed=seed),
        output_dir=spec.output_dir if first else str(run_dir(spec.output_dir, seed)),
        checkpoint_dir=(
            str(Path(spec.checkpoint_dir) / f"seed-{seed}") if spec.checkpoint_dir else None
        ),
        seeds=[],
        split_seed=seeds[0],
    )


def tagged(progress: ProgressCallback, seed: int, several: bool) -> ProgressCallback:
    """``progress`` with the stage prefixed by ``seed-<s>/`` when a job runs several seeds."""
    if not several:
        return progress
    return lambda e: progress(ProgressEvent(f"seed-{seed}/{e.stage}", e.step, e.total, e.metrics))


def keep_metrics_only(directory: Path) -> None:
    """Drop a secondary run's weights and tokenizer: only its numbers are kept."""
    for entry in directory.iterdir():
        if entry.name in (METRICS, SPEC):
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def seed_run(seed: int, metrics: JobMetrics) -> SeedRun:
    """What one run contributes to a multi-seed job's metrics."""
    return SeedRun(
        seed=seed,
        test=metrics.test,
        eval_sets=metrics.eval_sets,
        temperature=metrics.temperature,
        head_norm=metrics.head_norm,
        lp_C=metrics.lp.C if metrics.lp else None,
        best_epoch=metrics.best_epoch,
        warnings=[w.code for w in metrics.warnings],
    )


def summarise(runs: list[SeedRun]) -> SeedSummary | None:
    """Mean and sample standard deviation (ddof = 1) of every metric over the runs; ``None``
    for a single run."""
    if len(runs) < 2:
        return None
    return SeedSummary(
        seeds=[r.seed for r in runs],
        test=_split_summary([r.test for r in runs]),
        eval_sets={
            name: _split_summary([r.eval_sets[name] for r in runs]) for name in runs[0].eval_sets
        },
        temperature=_mean_std([r.temperature for r in runs]),
    )


def with_runs(metrics: JobMetrics, runs: list[SeedRun]) -> JobMetrics:
    """The served run's metrics with every run and their summary."""
    return dataclasses.replace(metrics, runs=runs, summary=summarise(runs))


def run_seeds(
    spec: FinetuneSpec,
    run: Callable[[FinetuneSpec, ProgressCallback], JobMetrics],
    progress: ProgressCallback = no_progress,
) -> JobMetrics:
    """Run ``spec`` once per seed with ``run(single_seed_spec, progress)``; return the first
    run's metrics with ``runs`` and ``summary``, also written to its ``metrics.json``.

    With ``spec.checkpoint_dir`` every finished run is recorded there, so a rerun after an
    interruption trains only the runs that had not finished.
    """
    seeds = seeds_of(spec)
    checkpoint = (
        JobCheckpoint.open(spec.checkpoint_dir, job_identity(spec))
        if spec.checkpoint_dir and len(seeds) > 1
        else None
    )
    done: dict[int, tuple[SeedRun, JobMetrics | None]] = (
        checkpoint.load(RUNS) or {} if checkpoint else {}
    )
    first: JobMetrics | None = done[seeds[0]][1] if seeds[0] in done else None
    for seed in seeds:
        if seed in done:
            continue
        metrics = run(spec_for_seed(spec, seed), tagged(progress, seed, len(seeds) > 1))
        if seed != seeds[0]:
            keep_metrics_only(run_dir(spec.output_dir, seed))
        else:
            first = metrics
        done[seed] = (seed_run(seed, metrics), metrics if seed == seeds[0] else None)
        if checkpoint:
            checkpoint.save(RUNS, done)
    assert first is not None
    result = with_runs(first, [done[seed][0] for seed in seeds])
    write_json(Path(spec.output_dir) / METRICS, result.to_dict())
    if checkpoint:
        checkpoint.remove()
    return result


def _split_summary(evaluations: list[Evaluation]) -> SplitSummary:
    def side(name: str) -> dict[str, MeanStd]:
        values = [dataclasses.asdict(getattr(e, name)) for e in evaluations]
        return {metric: _mean_std([v[metric] for v in values]) for metric in values[0]}

    return SplitSummary(uncalibrated=side("uncalibrated"), calibrated=side("calibrated"))


def _mean_std(values: list[float]) -> MeanStd:
    array = np.asarray(values, dtype=np.float64)
    return MeanStd(mean=float(array.mean()), std=float(array.std(ddof=1)))
