"""Several methods on one dataset split, side by side, as the paper's tables.

One linear probe is fitted and shared, so LP, LP-FT and LP-LoRA start from the very same head
and differ only in what follows it. Each method is a full ``run_job`` (its own artifact),
with the NTK taken at the start of its FT stage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpft_core.config import DataFiles, Hyperparameters, JobSpec, Method, spec_from_dict
from lpft_core.errors import ConfigError
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback, never_stop, no_progress
from lpft_core.pipeline import fit_probe, run_job
from lpft_core.results import JobMetrics


@dataclass(frozen=True)
class CompareSpec:
    """A comparison job.

    Attributes:
        methods: the methods to run, in this order (default: all five).
        ntk_samples: train (and evaluation) samples of the NTK at each FT start; 0 skips it.
    """

    data: DataFiles
    output_dir: str
    model: str | None = None
    methods: list[Method] = field(default_factory=lambda: list(Method))
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    ntk_samples: int = 256
    max_text_chars: int = 20_000

    def __post_init__(self) -> None:
        try:
            methods = [Method(m) for m in self.methods]
        except ValueError as exc:
            known = [m.value for m in Method]
            raise ConfigError("methods", f"{exc}; use some of {known}") from None
        if not methods or len(set(methods)) != len(methods):
            raise ConfigError("methods", "give one or more distinct methods")
        object.__setattr__(self, "methods", methods)
        JobSpec(Method.LP, self.data, self.output_dir, ntk_samples=self.ntk_samples)

    def job(self, method: Method) -> JobSpec:
        """The ``run_job`` spec of one method."""
        return JobSpec(
            method=method,
            data=self.data,
            output_dir=str(Path(self.output_dir) / method.value),
            model=self.model,
            hyperparameters=self.hyperparameters,
            max_text_chars=self.max_text_chars,
            ntk_samples=self.ntk_samples if method.finetunes else 0,
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
    """Run ``spec.methods`` on one split with one shared probe."""

    def tagged(method: str) -> ProgressCallback:
        return lambda e: progress(ProgressEvent(f"{method}/{e.stage}", e.step, e.total, e.metrics))

    probe = None
    if any(m.uses_probe for m in spec.methods):
        first = next(m for m in spec.methods if m.uses_probe)
        probe = fit_probe(spec.job(first), tagged("shared"), should_stop)
    results = {}
    for method in spec.methods:
        job = spec.job(method)
        results[method.value] = run_job(job, tagged(method.value), should_stop, probe=probe).metrics
    return Comparison(results)
