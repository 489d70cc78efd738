"""A whole `lp_ft` job against the same work done with Trainer + scikit-learn, in one run.

    python benchmarks/job_vs_trainer.py [--epochs 3] [--rows 2000] [--device cpu]

Data: a stratified, seeded 2,000-row SST-2 train sample, split 90/10 (stratified, seeded) into
train and validation files that both sides read; test: SST-2 validation (872 rows).

lpft: ``finetune`` with method ``lp_ft`` and defaults (batch 16, lr 2e-5, length-grouped
batches), which also measures feature change and writes the model, reports and metrics.

Baseline, as the paper's code works (../shared/research/paper-anchor.md, section 2), with
today's usual dynamic padding instead of the paper's padding to 128, in the baseline's favour:
the same classifier class; LP features of the train split from a DataLoader with
``DataCollatorWithPadding``; scikit-learn ``LogisticRegressionCV`` (Cs=10, cv=5, max_iter 5000,
tol 1e-4) installed as the head; ``Trainer`` for FT with evaluation and a checkpoint every epoch
and ``load_best_model_at_end`` on validation accuracy; ``Trainer.predict`` on validation and
test; temperature scaling as the paper (Adam lr 1e-3 on the validation NLL, stop after 10
steps without improvement); the model saved. Both sides report test accuracy and ECE so that
"the same work" can be checked.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from _models import DATA, stratified_sample
from _results import append
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.utils import logging

from lpft_core import DataFiles, FinetuneSpec, Hyperparameters, finetune
from lpft_core.model.classifier import build_classifier, load_tokenizer, resolve_model
from lpft_core.stages.calibration import classification_metrics
from lpft_core.stages.probe import install_head

LABELS = ["negative", "positive"]


@contextmanager
def stage(timing: dict[str, float], name: str):
    started = time.perf_counter()
    yield
    timing[name] = time.perf_counter() - started


def read(path: Path) -> tuple[list[str], np.ndarray]:
    """Texts and class indices (label names in sorted order, as lpft orders them)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["text"] for r in rows], np.array([LABELS.index(r["label"]) for r in rows])


def paper_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T minimising validation NLL: Adam lr 1e-3 from T = 1, stop after 10 non-improving
    steps or 1e5 steps (paper, A.3.3)."""
    z, y = torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(labels)
    t = torch.ones((), requires_grad=True)
    optimizer = torch.optim.Adam([t], lr=1e-3)
    best, best_t, stale = float("inf"), 1.0, 0
    for _ in range(100_000):
        loss = torch.nn.functional.cross_entropy(z / t, y)
        if loss.item() < best - 1e-7:
            best, best_t, stale = loss.item(), t.item(), 0
        else:
            stale += 1
            if stale >= 10:
                break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return best_t


def trainer_and_sklearn(
    files: dict[str, Path], out: Path, epochs: int, device: str
) -> tuple[dict[str, float], float, float]:
    """(seconds per stage, test accuracy, test ECE after TS) of the baseline."""
    timing: dict[str, float] = {}
    with stage(timing, "load"):
        model_ref = resolve_model(None)
        tokenizer = load_tokenizer(model_ref)
        model = build_classifier(model_ref, [0, 1], "mean", seed=0)
        data = {name: read(path) for name, path in files.items()}
        encoded = {}
        for name, (texts, labels) in data.items():
            tokens = tokenizer(texts, truncation=True, max_length=128)
            encoded[name] = [
                {**{k: v[i] for k, v in tokens.items()}, "labels": int(labels[i])}
                for i in range(len(texts))
            ]
    collator = DataCollatorWithPadding(tokenizer)
    with stage(timing, "lp"):
        model.eval()
        features = []
        with torch.no_grad():
            loader = DataLoader(encoded["train"], batch_size=16, collate_fn=collator)
            for batch in loader:
                batch.pop("labels")
                features.append(model.features(**batch).numpy())
        probe = LogisticRegressionCV(Cs=10, cv=5, max_iter=5000, tol=1e-4, random_state=0)
        probe.fit(np.concatenate(features), data["train"][1])
        c, b = probe.coef_, probe.intercept_
        install_head(
            model.classifier, np.concatenate([-c / 2, c / 2]), np.concatenate([-b / 2, b / 2])
        )
        model.train()
    with stage(timing, "ft"):
        arguments = TrainingArguments(
            output_dir=str(out / "trainer"),
            num_train_epochs=epochs,
            per_device_train_batch_size=16,
            per_device_eval_batch_size=16,
            learning_rate=2e-5,
            eval_strategy="epoch",
            save_strategy="epoch",
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model="accuracy",
            seed=0,
            use_cpu=device == "cpu",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            remove_unused_columns=False,
        )
        trainer = Trainer(
            model,
            arguments,
            train_dataset=encoded["train"],
            eval_dataset=encoded["validation"],
            data_collator=collator,
            compute_metrics=lambda p: {"accuracy": float((p[0].argmax(1) == p[1]).mean())},
        )
        trainer.train()
    with stage(timing, "calibrate"):
        validation = trainer.predict(encoded["validation"]).predictions
        test = trainer.predict(encoded["test"]).predictions
        temperature = paper_temperature(validation, data["validation"][1])
        metrics = classification_metrics(test, data["test"][1], temperature=temperature)
    with stage(timing, "save"):
        trainer.save_model(str(out / "model"))
    return timing, metrics.accuracy, metrics.ece


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="job-vs-trainer-"))
    sample = stratified_sample(DATA / "sst2" / "train.jsonl", args.rows, 0)
    labels = [json.loads(line)["label"] for line in sample]
    train, validation = train_test_split(sample, test_size=0.1, random_state=0, stratify=labels)
    files = {"train": work / "train.jsonl", "validation": work / "validation.jsonl"}
    files["train"].write_text("\n".join(train) + "\n")
    files["validation"].write_text("\n".join(validation) + "\n")
    files["test"] = DATA / "sst2" / "validation.jsonl"

    started = time.perf_counter()
    result = finetune(
        FinetuneSpec(
            method="lp_ft",
            data=DataFiles(**{k: str(v) for k, v in files.items()}),
            output_dir=str(work / "lpft"),
            hyperparameters=Hyperparameters(epochs=args.epochs, device=args.device),
        )
    )
    ours_total = time.perf_counter() - started
    ours = result.metrics.timing

    started = time.perf_counter()
    theirs, accuracy, ece = trainer_and_sklearn(files, work / "baseline", args.epochs, args.device)
    theirs_total = time.perf_counter() - started

    rows = ["| stage | lpft job s | Trainer + sklearn s | speed-up |", "|---|---|---|---|"]
    for name in dict.fromkeys([*theirs, *ours]):
        mine, other = ours.get(name), theirs.get(name)
        rows.append(
            f"| {name} | {'–' if mine is None else f'{mine:.1f}'} | "
            f"{'–' if other is None else f'{other:.1f}'} | "
            + (f"{other / mine:.2f}× |" if mine and other else "– |")
        )
    rows.append(
        f"| **whole job** | **{ours_total:.1f}** | **{theirs_total:.1f}** | "
        f"**{theirs_total / ours_total:.2f}×** |"
    )
    test = result.metrics.test
    rows.append(
        f"| test accuracy / ECE w/ TS | {test.calibrated.accuracy:.4f} / "
        f"{test.calibrated.ece:.4f} | {accuracy:.4f} / {ece:.4f} | |"
    )
    table = "\n".join(rows)
    print(table)
    append(
        f"A whole lp_ft job vs Trainer + scikit-learn (SST-2 {args.rows} rows, {args.epochs} "
        f"epochs, {args.device})",
        table,
        "lpft's `features` stage (feature change vs the pre-trained encoder on validation and "
        "test) has no counterpart in the baseline; it is counted in lpft's whole-job time.",
    )


if __name__ == "__main__":
    main()
