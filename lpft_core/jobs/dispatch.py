"""The job kinds behind one call, for the worker: run, then write ``metrics.json`` (and the
report, for the kinds that have one) into the job's output directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lpft_core.config import FinetuneSpec
from lpft_core.events import (
    ProgressCallback,
    ProgressEvent,
    StopCallback,
    never_stop,
    no_progress,
)
from lpft_core.jobs.analysis import AnalysisSpec, analyze
from lpft_core.jobs.compare import CompareSpec, compare
from lpft_core.jobs.finetune import finetune
from lpft_core.jobs.kinds import JobKind
from lpft_core.jobs.recalibrate import RecalibrateSpec, recalibrate
from lpft_core.model.artifacts import METRICS, write_json
from lpft_core.reporting.report import analysis_report, job_report, tables

Spec = FinetuneSpec | CompareSpec | AnalysisSpec | RecalibrateSpec
SPEC_CLASSES: dict[JobKind, type] = {
    JobKind.FINETUNE: FinetuneSpec,
    JobKind.COMPARE: CompareSpec,
    JobKind.ANALYSIS: AnalysisSpec,
    JobKind.RECALIBRATE: RecalibrateSpec,
}


def spec_for(kind: str, raw: dict[str, Any]) -> Spec:
    """The spec object of a job kind from its plain data (``to_dict`` output)."""
    return SPEC_CLASSES[JobKind(kind)].from_dict(raw)


def run_job(
    kind: str,
    raw_spec: dict[str, Any],
    title: str,
    progress: ProgressCallback = no_progress,
    should_stop: StopCallback = never_stop,
) -> Path:
    """Run a job of any kind; return its output directory, which then holds
    ``metrics.json``, ``report.html``, ``report.md`` and ``plots/``."""
    spec = spec_for(kind, raw_spec)
    out = Path(spec.output_dir)
    if isinstance(spec, FinetuneSpec):
        metrics = finetune(spec, progress, should_stop).metrics
        job_report(out, title, {spec.method.value: metrics})
    elif isinstance(spec, CompareSpec):
        result = compare(spec, progress, should_stop)
        body = {
            "kind": "compare",
            "tables": {
                name: {"header": header, "rows": rows}
                for name, (header, rows) in tables(result.methods).items()
            },
            **result.to_dict(),
        }
        write_json(out / METRICS, body)
        job_report(out, title, result.methods)
    elif isinstance(spec, RecalibrateSpec):
        progress(ProgressEvent("recalibrate", 0, 1))
        result = recalibrate(
            spec.model_dir, spec.data, name=spec.name, max_text_chars=spec.max_text_chars
        )
        write_json(out / METRICS, {"kind": "recalibrate", **result.to_dict()})
        progress(ProgressEvent("recalibrate", 1, 1, {"temperature": result.temperature}))
    else:
        analysis = analyze(spec, progress, should_stop)
        write_json(out / METRICS, analysis.to_dict())
        analysis_report(out, title, analysis)
    return out
