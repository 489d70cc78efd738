"""The five methods on SST-2 with the default model on this machine, over seeds.

Train: a stratified, seeded 2,000-row sample of ../shared/data/sst2/train.jsonl (10 % of it held
out for validation and temperature fitting); test: the full SST-2 validation split (872 rows).
Runs one compare job (``lpft_core.jobs.compare``: one shared probe per seed) with ``--seeds``, then
prints accuracy, MCC, ECE/MCE before/after temperature scaling and T as mean ± std over the
seeds (ddof = 1), the head norms of the first seed's run and the wall time, writes the job's
report beside its models, and appends the table to RESULTS.md.

    python benchmarks/methods_sst2.py [--epochs 3] [--seeds 0 1 2] [--methods lp ft lp_ft ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _models import DATA, stratified_sample
from _results import append
from transformers.utils import logging

from lpft_core import DataFiles, Hyperparameters
from lpft_core.jobs.compare import compare
from lpft_core.jobs.specs import CompareSpec
from lpft_core.reporting.report import job_report
from lpft_core.results import JobMetrics

SST2 = DATA / "sst2"


def _cell(metrics: JobMetrics, side: str, name: str) -> str:
    if metrics.summary is None:
        return f"{getattr(getattr(metrics.test, side), name):.4f}"
    stat = getattr(metrics.summary.test, side)[name]
    return f"{stat.mean:.4f} ± {stat.std:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["lp", "ft", "lp_ft", "lora", "lp_lora"])
    args = parser.parse_args()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="sst2-bench-"))
    train = work / "train.jsonl"
    train.write_text("\n".join(stratified_sample(SST2 / "train.jsonl", args.rows, 0)) + "\n")
    started = time.perf_counter()
    result = compare(
        CompareSpec(
            data=DataFiles(train=str(train), test=str(SST2 / "validation.jsonl")),
            output_dir=str(work / "compare"),
            methods=args.methods,
            hyperparameters=Hyperparameters(epochs=args.epochs, seed=args.seeds[0]),
            ntk_samples=0,
            seeds=args.seeds if len(args.seeds) > 1 else [],
        )
    )
    wall = time.perf_counter() - started
    job_report(work / "compare", "Methods on SST-2", result.methods)
    header = (
        "| method | acc | MCC | ECE w/o TS | ECE w/ TS | MCE w/o TS | MCE w/ TS | T | "
        "‖V‖ after LP | ‖V‖ final |"
    )
    rows = [header, "|" + "---|" * 10]
    for method, metrics in result.methods.items():
        after_lp = metrics.head_norm.after_lp
        temperature = (
            f"{metrics.summary.temperature.mean:.3f} ± {metrics.summary.temperature.std:.3f}"
            if metrics.summary
            else f"{metrics.temperature:.3f}"
        )
        rows.append(
            f"| {method} | {_cell(metrics, 'uncalibrated', 'accuracy')} | "
            f"{_cell(metrics, 'uncalibrated', 'mcc')} | "
            f"{_cell(metrics, 'uncalibrated', 'ece')} | {_cell(metrics, 'calibrated', 'ece')} | "
            f"{_cell(metrics, 'uncalibrated', 'mce')} | {_cell(metrics, 'calibrated', 'mce')} | "
            f"{temperature} | {'-' if after_lp is None else f'{after_lp:.3f}'} | "
            f"{metrics.head_norm.final:.3f} |"
        )
    table = "\n".join(rows)
    print(table)
    print(f"report: {work / 'compare' / 'report.md'}")
    append(
        f"Methods on SST-2 ({args.rows}-row stratified train sample, validation as test), "
        f"seeds {args.seeds}",
        table,
        f"Default model all-MiniLM-L6-v2 (mean pooling), {args.epochs} epochs, batch 16, "
        "max_length 128, default learning rates (FT/LP-FT 2e-5, LoRA/LP-LoRA 5e-4), one "
        "compare job with one shared probe per seed, every seed on the same split. Figures "
        "are mean ± std (ddof = 1) over the seeds; head norms are the first seed's run. "
        f"Accuracy is unchanged by temperature scaling. Whole job: {wall:.0f} s.",
    )


if __name__ == "__main__":
    main()
