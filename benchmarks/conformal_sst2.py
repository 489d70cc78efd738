"""Conformal coverage on real data: does a set at alpha hold the true label 1 - alpha of the time
on thousands of rows that neither trained nor calibrated anything?

    python benchmarks/conformal_sst2.py                   # trains LP-FT, then reports
    python benchmarks/conformal_sst2.py --out DIR         # reuses DIR's model when it is there

The 8,000-row SST-2 train sample (../shared/data/sst2/train.jsonl) is shuffled once (seed 0) and
cut into train (2,000 rows by default), validation (1,000: picks the epoch, fits T and the
conformal threshold) and test (the rest, 5,000): the test rows only ever measure.

The first table is the library's ``coverage_table`` on the saved model: the scores of the
validation rows at the fitted T, coverage and set size on the test rows (for ``lac`` and
``aps`` the job's ``metrics.json`` figures beside them, computed the same way at training time; a
model trained before ``aps_randomized`` existed gets its rows here too).

The second: each export (``onnx``, ``hf``), unpacked and loaded without lpft (onnxruntime alone;
transformers alone), against lpft's own calibrated probabilities (``Predictor``) on the first
``--parity-rows`` test rows: the largest absolute difference of a class probability.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _models import DATA, write_splits
from _results import append

from lpft_core import FinetuneSpec, Hyperparameters, Method, Predictor, finetune
from lpft_core.model.artifacts import METRICS
from lpft_core.serving.export import export_model, unpack
from lpft_core.stages.calibration import scaled_softmax
from lpft_core.stages.conformal import coverage_table, fit_conformal

RUNS = Path(__file__).resolve().parents[1] / "runs" / "bench" / "conformal_sst2"


def exported_probabilities(directory: Path, fmt: str, texts: list[str]) -> np.ndarray:
    """Calibrated probabilities from an unpacked export, loaded the way its card says."""
    import onnxruntime
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(directory / "model.onnx"))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            directory, trust_remote_code=True
        ).eval()
    out = []
    for start in range(0, len(texts), 64):
        chunk = texts[start : start + 64]
        options = {"padding": True, "truncation": True, "max_length": 128}
        if fmt == "onnx":
            batch = tokenizer(chunk, return_tensors="np", **options)
            feeds = {i.name: batch[i.name].astype(np.int64) for i in session.get_inputs()}
            out.append(session.run(["probabilities"], feeds)[0])
        else:
            batch = tokenizer(chunk, return_tensors="pt", **options)
            with torch.no_grad():
                out.append(torch.softmax(model(**batch).logits, dim=-1).numpy())
    return np.concatenate(out)


def export_parity(model_dir: Path, texts: list[str], scratch: Path) -> list[str]:
    """One table row per export format: the largest probability difference from lpft's."""
    predictor = Predictor(model_dir, device="cpu")
    names = [str(label) for label in predictor.labels]
    served = np.array(
        [
            [p.probabilities[n] for n in names]
            for p in predictor.predict([{"text": t} for t in texts])
        ]
    )
    rows = ["| export | loaded with | rows | max abs probability difference |", "|---|---|---|---|"]
    for fmt, runtime in (("onnx", "onnxruntime alone"), ("hf", "transformers alone")):
        directory = unpack(export_model(model_dir, scratch / f"{fmt}.tar.gz", fmt), scratch / fmt)
        difference = np.abs(exported_probabilities(directory, fmt, texts) - served).max()
        rows.append(f"| {fmt} | {runtime} | {len(texts)} | {difference:.2e} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="lp_ft", choices=[m.value for m in Method])
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--validation-rows", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RUNS)
    parser.add_argument("--parity-rows", type=int, default=1000)
    args = parser.parse_args()

    model_dir = args.out / "model"
    seconds = None
    if not (model_dir / METRICS).is_file():
        lines = (DATA / "sst2" / "train.jsonl").read_text().splitlines()
        rest = len(lines) - args.train_rows - args.validation_rows
        data = write_splits(lines, args.out / "data", args.train_rows, args.validation_rows, rest)
        spec = FinetuneSpec(
            method=Method(args.method),
            data=data,
            output_dir=str(model_dir),
            hyperparameters=Hyperparameters(epochs=args.epochs, device="cpu"),
        )
        started = time.perf_counter()
        finetune(spec)
        seconds = time.perf_counter() - started
    metrics = json.loads((model_dir / METRICS).read_text())
    test = metrics["test"]
    predictor = Predictor(model_dir, device="cpu")
    probabilities, labels = {}, {}
    for split in ("validation", "test"):
        lines = (args.out / "data" / f"{split}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        logits = predictor.logits([{"text": r["text"]} for r in records])
        probabilities[split] = scaled_softmax(logits, predictor.temperature)
        labels[split] = np.array([predictor.labels.index(r["label"]) for r in records])
    scores = fit_conformal(probabilities["validation"], labels["validation"])
    results = coverage_table(scores, probabilities["test"], labels["test"])
    recorded = {
        (r["method"], r["alpha"]): r["coverage"]
        for r in metrics["conformal"]
        if not r.get("mondrian")
    }
    rows = [
        "| alpha | method | target coverage | empirical coverage | mean set size "
        "| coverage in the job's metrics.json |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        in_job = recorded.get((result.method, result.alpha))
        rows.append(
            f"| {result.alpha} | {result.method} | {1 - result.alpha:.2f} | "
            f"{result.coverage:.4f} | {result.mean_set_size:.3f} | "
            f"{'–' if in_job is None else f'{in_job:.4f}'} |"
        )
    table = "\n".join(rows)
    print(table)
    calibration = metrics["calibration"]
    notes = (
        f"`{metrics['method']}` of the default model, trained on {metrics['splits']['train']} "
        f"rows of the SST-2 train sample; T = {calibration['temperature']:.3f} and the conformal "
        f"scores fitted on {metrics['splits']['validation']} validation rows; coverage and set "
        f"size on the {test['rows']} test rows (disjoint from both). Test accuracy "
        f"{test['calibrated']['accuracy']:.4f}, ECE with TS {test['calibrated']['ece']:.4f}."
        + (f" Training took {seconds:.0f} s." if seconds else "")
    )
    print(notes)
    append("Conformal sets on SST-2: coverage on held-out rows", table, notes)

    test_rows = (args.out / "data" / "test.jsonl").read_text().splitlines()[: args.parity_rows]
    texts = [json.loads(line)["text"] for line in test_rows]
    with tempfile.TemporaryDirectory() as scratch:
        parity = "\n".join(export_parity(model_dir, texts, Path(scratch)))
    print(parity)
    append(
        "Exports on the real model: calibrated probabilities without lpft",
        parity,
        f"The `{metrics['method']}` SST-2 model above (T = {calibration['temperature']:.3f}); "
        "each export unpacked and loaded as its model card says, fp32 on the CPU, against "
        "lpft's Predictor on the same test sentences.",
    )


if __name__ == "__main__":
    main()
