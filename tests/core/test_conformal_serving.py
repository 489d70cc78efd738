"""Conformal sets and abstention through a trained model: the job stores the scores beside T,
reports coverage on the test split, and the Predictor serves sets from the stored scores;
re-calibration replaces both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lpft_core import DataError, ModelError, Predictor, finetune
from lpft_core.jobs.recalibrate import recalibrate
from lpft_core.serving.predictor import ConformalRequest
from lpft_core.stages.conformal import METHODS, ConformalCalibration
from tests.core.test_pipeline import spec_for

ROWS = [{"text": "a good and lovely film"}, {"text": "the table by the window"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from tests.conftest import toy_rows, write_jsonl

    root = tmp_path_factory.mktemp("conformal")
    files = {
        "train": write_jsonl(root / "train.jsonl", toy_rows(90, seed=1)),
        "validation": write_jsonl(root / "validation.jsonl", toy_rows(30, seed=2)),
        "test": write_jsonl(root / "test.jsonl", toy_rows(30, seed=3)),
    }
    finetune(spec_for(files, tiny_model_dir, root / "model", "lp"))
    return root / "model"


def test_the_job_stores_scores_beside_t_and_reports_coverage(model_dir: Path) -> None:
    record = json.loads((model_dir / "calibration.json").read_text())
    stored = ConformalCalibration.from_dict(record["conformal"])
    assert stored.n == record["rows"] == 30  # the validation rows that fitted T
    metrics = json.loads((model_dir / "metrics.json").read_text())
    table = {(row["method"], row["alpha"]): row for row in metrics["conformal"]}
    assert set(table) == {(m, a) for m in METHODS for a in (0.05, 0.1, 0.2)}
    assert all(0 <= row["coverage"] <= 1 for row in table.values())


def test_the_job_reports_coverage_per_label_for_both_modes(model_dir: Path) -> None:
    metrics = json.loads((model_dir / "metrics.json").read_text())
    # 10 validation rows a label: Mondrian sets need 9 at alpha 0.1 and 19 at 0.05, which is
    # therefore not reported (it would be refused).
    mondrian = {(r["method"], r["alpha"]) for r in metrics["conformal"] if r["mondrian"]}
    assert mondrian == {(m, a) for m in METHODS for a in (0.1, 0.2)}
    for row in metrics["conformal"]:
        assert set(row["class_coverage"]) == {"test", "calibration"}
        for split in ("test", "calibration"):
            assert set(row["class_coverage"][split]) == set(metrics["labels"])
        if row["mondrian"]:  # each label's own threshold covers its own calibration rows
            assert min(row["class_coverage"]["calibration"].values()) >= 1 - row["alpha"]


def test_the_predictor_serves_mondrian_sets_and_refuses_too_few_rows(model_dir: Path) -> None:
    predictor = Predictor(model_dir)
    by_label = predictor.predict(ROWS, conformal=ConformalRequest(alpha=0.2, mondrian=True))
    assert all(set(p.prediction_set or []) <= set(predictor.labels) for p in by_label)
    with pytest.raises(DataError, match=r"label '\w+' has \d+ calibration rows.*at least 19") as e:
        predictor.predict(ROWS, conformal=ConformalRequest(alpha=0.05, mondrian=True))
    assert e.value.field == "conformal.alpha"


def test_the_predictor_serves_sets_and_abstains(model_dir: Path) -> None:
    predictor = Predictor(model_dir)
    plain = predictor.predict(ROWS)
    assert all(p.prediction_set is None and not p.abstained for p in plain)
    wide = predictor.predict(ROWS, conformal=ConformalRequest(alpha=0.05, method="lac"))
    narrow = predictor.predict(ROWS, conformal=ConformalRequest(alpha=0.5, method="lac"))
    for w, n in zip(wide, narrow, strict=True):
        assert set(n.prediction_set or []) <= set(w.prediction_set or [])
        assert set(w.prediction_set or []) <= set(predictor.labels)
    unsure = predictor.predict(ROWS, min_confidence=1.0)
    assert all(p.abstained and p.label is None for p in unsure)
    assert [p.probabilities for p in unsure] == [p.probabilities for p in plain]


def test_recalibration_replaces_the_scores(model_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import toy_rows, write_jsonl

    data = write_jsonl(tmp_path / "fresh.jsonl", toy_rows(40, seed=9))
    recalibrate(model_dir, data)
    record = json.loads((model_dir / "calibration.json").read_text())
    assert ConformalCalibration.from_dict(record["conformal"]).n == 40
    assert "conformal" not in record["previous"][0]


def test_sets_need_stored_scores(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    record = json.loads((old / "calibration.json").read_text())
    record["conformal"] = None
    (old / "calibration.json").write_text(json.dumps(record))
    with pytest.raises(ModelError, match="without conformal scores"):
        Predictor(old).predict(ROWS, conformal=ConformalRequest(alpha=0.1))
    # A record saved before Mondrian sets serves marginal ones, and asks for a re-calibration
    # for the others.
    conformal = json.loads((model_dir / "calibration.json").read_text())["conformal"]
    del conformal["class_scores"]
    (old / "calibration.json").write_text(json.dumps({**record, "conformal": conformal}))
    assert Predictor(old).predict(ROWS, conformal=ConformalRequest(alpha=0.2))
    with pytest.raises(ModelError, match="Mondrian lac sets; re-calibrate"):
        Predictor(old).predict(ROWS, conformal=ConformalRequest(alpha=0.2, mondrian=True))


def test_aurc_is_the_mean_error_rate_over_the_most_confident_k() -> None:
    import numpy as np

    from lpft_core.stages.evaluation import selective_prediction

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(57, 3))
    y = rng.integers(0, 3, 57)
    curve = selective_prediction(logits, y)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ranked = sorted(range(57), key=lambda i: -probs[i].max())
    errors = [probs[i].argmax() != y[i] for i in ranked]
    expected = np.mean([np.mean(errors[:k]) for k in range(1, 58)])
    assert curve.aurc == pytest.approx(expected)
    assert curve.coverage[-1] == 1.0
    assert curve.accuracy[-1] == pytest.approx(1 - np.mean(errors))
    # Answering the confident half of a model that errs only where unsure: no errors there.
    sure = np.array([[5.0, 0.0]] * 10 + [[0.1, 0.0]] * 10)
    half = selective_prediction(sure, np.array([0] * 10 + [1] * 10))
    assert half.accuracy[half.coverage.index(0.5)] == 1.0
