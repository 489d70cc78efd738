"""The runner of each job kind (``lpft_core.jobs.kinds``), all called alike by the worker:
run the spec, then write ``metrics.json`` (and the report, for the kinds that have one) into
its output directory."""

from __future__ import annotations

from pathlib import Path

from lpft_core.config import FinetuneSpec
from lpft_core.events import ProgressCallback, ProgressEvent, StopCallback
from lpft_core.jobs.analysis import analyze
from lpft_core.jobs.compare import compare
from lpft_core.jobs.finetune import finetune
from lpft_core.jobs.recalibrate import recalibrate
from lpft_core.jobs.specs import AnalysisSpec, CompareSpec, RecalibrateSpec
from lpft_core.model.artifacts import METRICS, write_json
from lpft_core.reporting.report import analysis_report, job_report, tables


def finetune_job(
    spec: FinetuneSpec, title: str, progress: ProgressCallback, should_stop: StopCallback
) -> None:
    """Train; ``finetune`` writes the metrics beside the model, the report follows."""
    metrics = finetune(spec, progress, should_stop).metrics
    job_report(Path(spec.output_dir), title, {spec.method.value: metrics})


def compare_job(
    spec: CompareSpec, title: str, progress: ProgressCallback, should_stop: StopCallback
) -> None:
    """Run every method; the metrics hold the paper-style tables too."""
    out = Path(spec.output_dir)
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


def analysis_job(
    spec: AnalysisSpec, title: str, progress: ProgressCallback, should_stop: StopCallback
) -> None:
    """Measure the kernels and features, then report them."""
    out = Path(spec.output_dir)
    analysis = analyze(spec, progress, should_stop)
    write_json(out / METRICS, analysis.to_dict())
    analysis_report(out, title, analysis)


def recalibrate_job(
    spec: RecalibrateSpec, title: str, progress: ProgressCallback, should_stop: StopCallback
) -> None:
    """Fit the new temperature (seconds of work, with no step to stop between, so
    ``should_stop`` is not polled); no report."""
    progress(ProgressEvent("recalibrate", 0, 1))
    result = recalibrate(
        spec.model_dir, spec.data, name=spec.name, max_text_chars=spec.max_text_chars
    )
    write_json(Path(spec.output_dir) / METRICS, {"kind": "recalibrate", **result.to_dict()})
    progress(ProgressEvent("recalibrate", 1, 1, {"temperature": result.temperature}))
