"""finetune end to end on the tiny model: every method, artifacts, determinism, cancel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from lpft_core import (
    DataFiles,
    FinetuneSpec,
    Hyperparameters,
    JobCancelled,
    Method,
    Predictor,
    ProgressEvent,
    finetune,
)
from lpft_core.data.datasets import read_examples
from lpft_core.stages.calibration import classification_metrics
from tests.conftest import TINY_HYPERPARAMETERS

if TYPE_CHECKING:
    from tests.core.conftest import TrainedJobs


def spec_for(
    files: dict[str, Path], model_dir: Path, out: Path, method: str, **hyper: object
) -> FinetuneSpec:
    options = {**TINY_HYPERPARAMETERS, **hyper}
    return FinetuneSpec(
        method=Method(method),
        data=DataFiles(**{k: str(v) for k, v in files.items()}),
        output_dir=str(out),
        model=str(model_dir),
        hyperparameters=Hyperparameters(**options),
    )


@pytest.mark.parametrize("method", [m.value for m in Method])
def test_every_method_trains_calibrates_and_saves(method: str, trained_jobs: TrainedJobs) -> None:
    trained = trained_jobs(method)
    events, out, toy_files = trained.events, trained.model_dir, trained.files
    metrics = trained.result.metrics
    m = Method(method)

    stages = list(dict.fromkeys(e.stage for e in events))
    second = ["lora"] if m.uses_lora else ["ft"] if m.finetunes else []
    assert stages == ["load", *(["lp"] if m.uses_probe else []), *second, "calibrate", "save"]
    assert metrics.splits == {"train": 90, "validation": 30, "test": 30}
    assert (metrics.lp is not None) == m.uses_probe
    assert (metrics.head_norm.after_lp is not None) == m.uses_probe
    if m.finetunes:
        assert len(metrics.history) == 2 * 6 and len(metrics.epochs) == 2
        assert metrics.best_epoch in (1, 2)
        assert all(np.isfinite(s.loss) and s.head_weight_norm > 0 for s in metrics.history)
    else:
        assert metrics.history == [] and metrics.best_epoch is None
    if m.uses_lora:
        assert metrics.parameters.trainable < metrics.parameters.total / 10
    assert set(metrics.timing) >= {"load", "calibrate", "save"}
    for before_after in (metrics.test.uncalibrated, metrics.test.calibrated):
        assert (
            0 <= before_after.ece <= before_after.mce + 1e-12 <= 1 + 1e-12
        )  # ECE is a mean of MCE's gaps
    assert sum(b.count for b in metrics.test.reliability.calibrated) == 30

    saved = json.loads((out / "metrics.json").read_text())
    assert (
        saved["test"]["calibrated"]
        == json.loads(json.dumps(metrics.to_dict()))["test"]["calibrated"]
    )
    assert json.loads((out / "labels.json").read_text()) == ["neg", "neu", "pos"]
    assert json.loads((out / "spec.json").read_text())["method"] == method
    assert json.loads((out / "calibration.json").read_text())["temperature"] == pytest.approx(
        metrics.temperature
    )
    assert (out / ("adapter_config.json" if m.uses_lora else "model.safetensors")).is_file()

    # The saved model reproduces the evaluation the job reported.
    predictor = Predictor(out, device="cpu")
    test_rows = [{"text": e.text} for e in read_examples(toy_files["test"])]
    logits = predictor.logits(test_rows)
    y = np.array([predictor.labels.index(e.label) for e in read_examples(toy_files["test"])])
    reloaded = classification_metrics(logits, y, temperature=metrics.temperature)
    assert reloaded.accuracy == metrics.test.calibrated.accuracy
    assert reloaded.nll == pytest.approx(metrics.test.calibrated.nll, abs=1e-5)
    predictions = predictor.predict(test_rows[:3])
    for p in predictions:
        assert sum(p.probabilities.values()) == pytest.approx(1.0)
        assert p.label == max(p.probabilities, key=p.probabilities.get)


def test_probe_learns_the_toy_task(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    metrics = finetune(spec_for(toy_files, tiny_model_dir, tmp_path / "m", "lp")).metrics
    assert metrics.lp is not None and metrics.lp.validation_accuracy >= 0.9
    assert metrics.test.uncalibrated.accuracy >= 0.9


def test_full_artifact_loads_with_automodel(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m"
    finetune(spec_for(toy_files, tiny_model_dir, out, "lp_ft", epochs=1))
    predictor = Predictor(out, device="cpu")
    rows = [{"text": "the movie was good and great"}, {"text": "awful"}]
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    batch = predictor.tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model.eval()(**batch).logits.numpy()
    np.testing.assert_allclose(logits, predictor.logits(rows), atol=1e-5)


def test_same_seed_same_numbers(
    trained_jobs: TrainedJobs, tiny_model_dir: Path, tmp_path: Path
) -> None:
    trained = trained_jobs("lp_ft")
    first, files = trained.result.metrics, trained.files
    second = finetune(spec_for(files, tiny_model_dir, tmp_path / "b", "lp_ft", device="cpu"))
    other = finetune(spec_for(files, tiny_model_dir, tmp_path / "c", "lp_ft", device="cpu", seed=1))
    assert first.history == second.metrics.history
    assert first.test == second.metrics.test
    assert first.temperature == second.metrics.temperature
    assert first.history != other.metrics.history


def test_cancel_stops_within_a_step_and_writes_nothing(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    events: list[ProgressEvent] = []
    out = tmp_path / "m"
    with pytest.raises(JobCancelled, match="stopped on request at ft step 3"):
        finetune(
            spec_for(toy_files, tiny_model_dir, out, "ft"),
            progress=events.append,
            should_stop=lambda: sum(e.stage == "ft" for e in events) >= 3,
        )
    assert not out.exists()


def test_head_norm_scale_multiplies_the_lp_head(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec = spec_for(
        toy_files, tiny_model_dir, tmp_path / "m", "lp_ft", head_norm_scale=10.0, learning_rate=1e-6
    )
    metrics = finetune(spec).metrics
    assert metrics.head_norm.after_lp is not None
    assert metrics.history[0].head_weight_norm == pytest.approx(
        10 * metrics.head_norm.after_lp, rel=1e-3
    )


def test_pair_task_runs_and_predictor_requires_pairs(tiny_model_dir: Path, tmp_path: Path) -> None:
    from lpft_core.errors import DataError
    from tests.conftest import toy_rows, write_jsonl

    files = {"train": write_jsonl(tmp_path / "t.jsonl", toy_rows(40, seed=0, pair=True))}
    out = tmp_path / "m"
    metrics = finetune(spec_for(files, tiny_model_dir, out, "lp", epochs=1)).metrics
    assert metrics.dataset.pair and metrics.test.split == "held_out"
    predictor = Predictor(out, device="cpu")
    assert len(predictor.predict([{"text": "a", "text_pair": "b"}])) == 1
    with pytest.raises(DataError, match=r"inputs\[0\].text_pair"):
        predictor.predict([{"text": "a"}])


def test_eval_sets_feature_change_and_ntk_at_the_start_of_ft(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    files = {**toy_files}
    spec = spec_for(files, tiny_model_dir, tmp_path / "m", "lp_ft")
    spec = FinetuneSpec(
        method=spec.method,
        data=DataFiles(
            train=spec.data.train,
            validation=spec.data.validation,
            test=spec.data.test,
            eval_sets={"shifted": spec.data.validation},
        ),
        output_dir=spec.output_dir,
        model=spec.model,
        hyperparameters=spec.hyperparameters,
        ntk_samples=12,
    )
    metrics = finetune(spec).metrics
    assert set(metrics.eval_sets) == {"shifted"} and metrics.eval_sets["shifted"].rows == 30
    assert set(metrics.features) == {"test", "shifted"}
    change = metrics.features["test"]
    assert change.rows == 30 and change.difference > 0 and 0 < change.cka <= 1 + 1e-9
    ntk = metrics.ntk
    assert ntk is not None and ntk.samples_train == 12 and ntk.samples_test == 12
    # P = (phi·phi' + 1) ⊗ I_C has rank at most C·(d + 1); F is over every encoder weight
    assert 0 < ntk.pretrain_effective.rank <= 3 * 33
    assert ntk.ft_effective.rank > 0 and 0 <= ntk.ft_ratio <= 1
    assert ntk.ntk.spectrum[0] == 1.0 and len(ntk.ntk.spectrum) == 36
    assert 0 <= ntk.ntk.accuracy.train_sample <= 1 and ntk.ntk.accuracy.test_pair is not None
    saved = json.loads((Path(spec.output_dir) / "metrics.json").read_text())
    assert saved["ntk"]["ft_ratio"] == ntk.ft_ratio
