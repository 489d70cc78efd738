"""The kinds of job lpft runs, each registered once, as peft registers a tuning method
(``register_peft_method``): its spec, the function that runs it, how a rerun resumes it and
whether its model is served. The library, the worker, the API and the tests read this
registry instead of chains of ``isinstance`` tests.

Naming a kind, or building and checking its spec, imports nothing heavy: a runner is named by
its import path and imported only when a job of its kind runs, so the API holds every spec
class without loading torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from lpft_core.config import FinetuneSpec
from lpft_core.events import ProgressCallback, StopCallback, never_stop, no_progress
from lpft_core.jobs.specs import AnalysisSpec, CompareSpec, RecalibrateSpec
from lpft_core.jobs.sweep_spec import SweepSpec


class JobKind(StrEnum):
    """``finetune``: one method, one model. ``compare``: several methods on one split.
    ``analysis``: NTK and feature statistics without training. ``recalibrate``: a new
    temperature for a finished finetune job's model. ``sweep``: a hyperparameter search,
    each trial a finetune job, its best trial's model served."""

    FINETUNE = "finetune"
    COMPARE = "compare"
    ANALYSIS = "analysis"
    RECALIBRATE = "recalibrate"
    SWEEP = "sweep"


class JobSpec(Protocol):
    """What the spec of every kind offers: where its job writes, and the plain data that
    its class's ``from_dict`` turns back into an equal spec."""

    @property
    def output_dir(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class Resume(StrEnum):
    """What a rerun of an interrupted job (a lost worker, ``lpft_core.jobs.checkpoint``)
    keeps; every kind but ``FROM_START`` takes a ``checkpoint_dir`` in its spec."""

    #: The probe, the NTK at the FT start and the training state after the last epoch.
    FROM_LAST_EPOCH = "from_last_epoch"
    #: Each part that finished (``finished.pt``); a compare job's method cut short resumes
    #: from its last epoch.
    FINISHED_PARTS = "finished_parts"
    #: Nothing: the job is seconds of work and runs again whole.
    FROM_START = "from_start"


#: A kind's runner: runs the spec, writing ``metrics.json`` (and the report, for the kinds
#: that have one) into ``spec.output_dir``; called as ``runner(spec, title, progress,
#: should_stop)`` for every kind.
Runner = Callable[[Any, str, ProgressCallback, StopCallback], None]


@dataclass(frozen=True)
class JobKindInfo:
    """One registered kind.

    Attributes:
        kind: its name, as the API, the records and the worker spell it.
        spec: its spec class, with ``from_dict`` (see ``JobSpec``).
        runner: ``"module:function"`` of its ``Runner``, imported when a job of it runs.
        resume: what a rerun of an interrupted job of this kind keeps.
        serves: whether its job leaves a model that ``/predict``, exports and
            re-calibration use.
    """

    kind: JobKind
    spec: type
    runner: str
    resume: Resume
    serves: bool

    def load_runner(self) -> Runner:
        """The runner, imported now (with whatever heavy stack it needs)."""
        module, name = self.runner.split(":")
        runner: Runner = getattr(importlib.import_module(module), name)
        return runner


#: Every registered kind, in the order registered (the order the API documents them in).
JOB_KINDS: dict[JobKind, JobKindInfo] = {}


def register_job_kind(
    kind: JobKind, *, spec: type, runner: str, resume: Resume, serves: bool = False
) -> JobKindInfo:
    """Register a kind of job once, for the library, the worker and the API alike.

    Raises:
        ValueError: ``kind`` is registered already, or ``runner`` is not ``module:function``.
    """
    if kind in JOB_KINDS:
        raise ValueError(f"the job kind {kind.value!r} is registered already")
    if runner.count(":") != 1:
        raise ValueError(f"runner {runner!r} is not 'module:function'")
    info = JobKindInfo(kind=kind, spec=spec, runner=runner, resume=resume, serves=serves)
    JOB_KINDS[kind] = info
    return info


def job_kind(kind: str) -> JobKindInfo:
    """The registered kind named ``kind``.

    Raises:
        ValueError: no kind has that name.
    """
    return JOB_KINDS[JobKind(kind)]


def spec_for(kind: str, raw: dict[str, Any]) -> JobSpec:
    """The spec object of a job kind from its plain data (``to_dict`` output)."""
    spec: JobSpec = job_kind(kind).spec.from_dict(raw)
    return spec


def run_job(
    kind: str,
    raw_spec: dict[str, Any],
    title: str,
    progress: ProgressCallback = no_progress,
    should_stop: StopCallback = never_stop,
) -> Path:
    """Run a job of any kind; return its output directory, which then holds
    ``metrics.json`` and, for the kinds that have one, ``report.html``, ``report.md`` and
    ``plots/``."""
    info = job_kind(kind)
    spec = spec_for(kind, raw_spec)
    info.load_runner()(spec, title, progress, should_stop)
    return Path(spec.output_dir)


register_job_kind(
    JobKind.FINETUNE,
    spec=FinetuneSpec,
    runner="lpft_core.jobs.runners:finetune_job",
    resume=Resume.FROM_LAST_EPOCH,
    serves=True,
)
register_job_kind(
    JobKind.COMPARE,
    spec=CompareSpec,
    runner="lpft_core.jobs.runners:compare_job",
    resume=Resume.FINISHED_PARTS,
)
register_job_kind(
    JobKind.ANALYSIS,
    spec=AnalysisSpec,
    runner="lpft_core.jobs.runners:analysis_job",
    resume=Resume.FINISHED_PARTS,
)
register_job_kind(
    JobKind.RECALIBRATE,
    spec=RecalibrateSpec,
    runner="lpft_core.jobs.runners:recalibrate_job",
    resume=Resume.FROM_START,
)
register_job_kind(
    JobKind.SWEEP,
    spec=SweepSpec,
    runner="lpft_core.jobs.sweep:sweep_job",
    resume=Resume.FINISHED_PARTS,
    serves=True,
)
