"""Several methods on one dataset split, side by side, as the paper's tables.

One linear probe is fitted and shared, so LP, LP-FT and LP-LoRA start from the very same head
and differ only in what follows it. Each method is a full ``finetune`` (its own artifact),
with the NTK taken at the start of its FT stage. With several ``seeds`` the whole comparison
runs once per seed (one probe per seed) on the first seed's split, and each method's metrics
gain ``runs`` and their mean ± std (``lpft_core.jobs.seeds``). With ``checkpoint_dir`` a
rerun after an interruption reuses the probe and the methods that finished, and resumes the
method it was training from its last epoch (``lpft_core.jobs.checkpoint``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpft_core.config import Method
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback, never_stop, no_progress
from lpft_core.jobs.checkpoint import JobCheckpoint, finished_or_run, job_identity
from lpft_core.jobs.finetune import finetune, fit_probe
from lpft_core.jobs.seeds import keep_metrics_only, seed_run, with_runs
from lpft_core.jobs.specs import CompareSpec
from lpft_core.model.artifacts import METRICS, write_json
from lpft_core.results import JobMetrics, SeedRun


@dataclass(frozen=True)
class Comparison:
    """Every method's metrics, in the order run."""

    methods: dict[str, JobMetrics]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (``comparison.json``)."""
        return {"methods": {name: m.to_dict() for name, m in self.methods.items()}}


def compare(
    spec: CompareSpec,
    progress: ProgressCallback = no_progress,
    should_stop: StopCallback = never_stop,
) -> Comparison:
    """Run ``spec.methods`` on one split with one shared probe, once per seed."""
    seeds = spec.run_seeds
    checkpoint = (
        JobCheckpoint.open(spec.checkpoint_dir, job_identity(spec)) if spec.checkpoint_dir else None
    )
    served: dict[str, JobMetrics] = {}
    runs: dict[str, list[SeedRun]] = {m.value: [] for m in spec.methods}
    for seed in seeds:
        prefix = f"seed-{seed}/" if len(seeds) > 1 else ""
        results = _compare_once(spec, seed, prefix, progress, should_stop, checkpoint)
        for method, metrics in results.items():
            runs[method].append(seed_run(seed, metrics))
            if seed == seeds[0]:
                served[method] = metrics
    if len(seeds) == 1:
        methods = served
    else:
        methods = {name: with_runs(served[name], runs[name]) for name in served}
        for name, metrics in methods.items():
            write_json(Path(spec.job(Method(name)).output_dir) / METRICS, metrics.to_dict())
    if checkpoint is not None:
        checkpoint.remove()
    return Comparison(methods)


def _compare_once(
    spec: CompareSpec,
    seed: int,
    prefix: str,
    progress: ProgressCallback,
    should_stop: StopCallback,
    checkpoint: JobCheckpoint | None,
) -> dict[str, JobMetrics]:
    """Every method with ``seed``, sharing one probe fitted with that seed; the probe and the
    methods an interrupted run finished are taken from ``checkpoint``."""

    def tagged(method: str) -> ProgressCallback:
        return lambda e: progress(
            ProgressEvent(f"{prefix}{method}/{e.stage}", e.step, e.total, e.metrics)
        )

    def train(method: Method) -> JobMetrics:
        job = spec.job(method, seed)
        metrics = finetune(job, tagged(method.value), should_stop, probe=probe).metrics
        if seed != spec.run_seeds[0]:
            keep_metrics_only(Path(job.output_dir))
        return metrics

    probe = None
    if any(m.uses_probe for m in spec.methods):
        first = next(m for m in spec.methods if m.uses_probe)
        probe = finished_or_run(
            checkpoint,
            f"{prefix}shared/lp",
            lambda: fit_probe(spec.job(first, seed), tagged("shared"), should_stop),
            progress,
        )
    return {
        method.value: finished_or_run(
            checkpoint, f"{prefix}{method.value}", lambda m=method: train(m), progress
        )
        for method in spec.methods
    }
