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

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpft_core.config import DataFiles, FinetuneSpec, Hyperparameters, Method, spec_from_dict
from lpft_core.errors import ConfigError
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback, never_stop, no_progress
from lpft_core.jobs.checkpoint import JobCheckpoint, finished_or_run, job_identity
from lpft_core.jobs.finetune import finetune, fit_probe
from lpft_core.jobs.seeds import keep_metrics_only, run_dir, seed_run, with_runs
from lpft_core.model.artifacts import METRICS, write_json
from lpft_core.results import JobMetrics, SeedRun


@dataclass(frozen=True)
class CompareSpec:
    """A comparison job.

    Attributes:
        methods: the methods to run, in this order (default: all five).
        ntk_samples: train (and evaluation) samples of the NTK at each FT start; 0 skips it.
        seeds: as ``FinetuneSpec.seeds``: more than one runs the comparison once per seed.
        checkpoint_dir: as ``FinetuneSpec.checkpoint_dir``; each method's run keeps its own
            checkpoint in a directory inside it.
    """

    data: DataFiles
    output_dir: str
    model: str | None = None
    methods: list[Method] = field(default_factory=lambda: list(Method))
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    ntk_samples: int = 256
    max_text_chars: int = 20_000
    seeds: list[int] = field(default_factory=list)
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        try:
            methods = [Method(m) for m in self.methods]
        except ValueError as exc:
            known = [m.value for m in Method]
            raise ConfigError("methods", f"{exc}; use some of {known}") from None
        if not methods or len(set(methods)) != len(methods):
            raise ConfigError("methods", "give one or more distinct methods")
        object.__setattr__(self, "methods", methods)
        FinetuneSpec(
            Method.LP,
            self.data,
            self.output_dir,
            hyperparameters=self.hyperparameters,
            ntk_samples=self.ntk_samples,
            seeds=self.seeds,
        )

    @property
    def run_seeds(self) -> list[int]:
        """The seeds the comparison runs with, the first one's run being the one served."""
        return self.seeds or [self.hyperparameters.seed]

    def job(self, method: Method, seed: int | None = None) -> FinetuneSpec:
        """The single-seed ``finetune`` spec of one method (default: the first seed's), which
        checkpoints inside ``checkpoint_dir``."""
        seeds = self.run_seeds
        seed = seeds[0] if seed is None else seed
        output_dir = Path(self.output_dir) / method.value
        checkpoint_dir = (
            str(Path(self.checkpoint_dir) / f"{method.value}-seed-{seed}")
            if self.checkpoint_dir
            else None
        )
        return FinetuneSpec(
            method=method,
            data=self.data,
            output_dir=str(output_dir if seed == seeds[0] else run_dir(output_dir, seed)),
            model=self.model,
            hyperparameters=dataclasses.replace(self.hyperparameters, seed=seed),
            max_text_chars=self.max_text_chars,
            ntk_samples=self.ntk_samples if method.finetunes else 0,
            checkpoint_dir=checkpoint_dir,
            split_seed=seeds[0] if len(seeds) > 1 else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CompareSpec:
        """The spec ``to_dict`` wrote."""
        return spec_from_dict(cls, raw)


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
