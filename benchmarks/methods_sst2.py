"""The five methods on SST-2 with the default model on this machine.

Train: a stratified, seeded 2,000-row sample of ../shared/data/sst2/train.jsonl (10 % of it held
out for validation and temperature fitting); test: the full SST-2 validation split (872 rows).
Prints accuracy, ECE/MCE before/after temperature scaling, T, head norms and wall time, and
appends the table to RESULTS.md.

    python benchmarks/methods_sst2.py [--epochs 3] [--methods lp ft lp_ft lora lp_lora]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _models import DATA, stratified_sample
from _results import append
from transformers.utils import logging

from lpft_core import DataFiles, Hyperparameters, JobSpec, run_job

SST2 = DATA / "sst2"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--methods", nargs="+", default=["lp", "ft", "lp_ft", "lora", "lp_lora"])
    args = parser.parse_args()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="sst2-bench-"))
    train = work / "train.jsonl"
    train.write_text("\n".join(stratified_sample(SST2 / "train.jsonl", args.rows, 0)) + "\n")
    header = (
        "| method | acc | ECE w/o TS | ECE w/ TS | MCE w/o TS | MCE w/ TS | T | "
        "‖V‖ after LP | ‖V‖ final | wall s |"
    )
    rows = [header, "|" + "---|" * 10]
    for method in args.methods:
        started = time.perf_counter()
        metrics = run_job(
            JobSpec(
                method=method,
                data=DataFiles(train=str(train), test=str(SST2 / "validation.jsonl")),
                output_dir=str(work / method),
                hyperparameters=Hyperparameters(epochs=args.epochs),
            )
        ).metrics
        wall = time.perf_counter() - started
        before, after = metrics.test.uncalibrated, metrics.test.calibrated
        after_lp = metrics.head_norm.after_lp
        row = (
            f"| {method} | {before.accuracy:.4f} | {before.ece:.4f} | {after.ece:.4f} | "
            f"{before.mce:.4f} | {after.mce:.4f} | {metrics.temperature:.3f} | "
            f"{'-' if after_lp is None else f'{after_lp:.3f}'} | "
            f"{metrics.head_norm.final:.3f} | {wall:.0f} |"
        )
        rows.append(row)
        print(row, flush=True)
    table = "\n".join(rows)
    print(table)
    append(
        f"Methods on SST-2 ({args.rows}-row stratified train sample, validation as test)",
        table,
        f"Default model all-MiniLM-L6-v2 (mean pooling), {args.epochs} epochs, batch 16, "
        "max_length 128, seed 0, default learning rates (FT 2e-5, LoRA 5e-4). "
        "Accuracy is unchanged by temperature scaling.",
    )


if __name__ == "__main__":
    main()
