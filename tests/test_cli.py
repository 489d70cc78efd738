"""The ``lpft`` command, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_jsonl

#: Each test starts the ML stack in a fresh interpreter: seconds apiece, 20 s for the module.
pytestmark = pytest.mark.slow


def lpft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lpft_client.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_train_then_predict(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    trained = lpft(
        "train",
        "--train",
        str(toy_files["train"]),
        "--validation",
        str(toy_files["validation"]),
        "--test",
        str(toy_files["test"]),
        "--method",
        "lp_lora",
        "--model",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-length",
        "32",
        "--pooling",
        "mean",
        "--lora-r",
        "4",
        "--ece-bins",
        "10",
    )
    assert trained.returncode == 0, trained.stderr
    assert "temperature T =" in trained.stdout and "calibrated" in trained.stdout
    spec = json.loads((out / "spec.json").read_text())
    assert spec["hyperparameters"]["lora_r"] == 4 and spec["hyperparameters"]["ece_bins"] == 10
    assert "lora" in trained.stderr  # the progress bar of the LoRA stage

    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "good great"}, {"text": "awful bad"}])
    output = tmp_path / "out.jsonl"
    predicted = lpft(
        "predict", "--model", str(out), "--input", str(inputs), "--output", str(output)
    )
    assert predicted.returncode == 0, predicted.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert set(line) == {"label", "probabilities", "logits", "prediction_set", "abstained"}
        assert set(line["probabilities"]) == {"neg", "neu", "pos"}
        assert abs(sum(line["probabilities"].values()) - 1) < 1e-9
        assert len(line["logits"]) == 3


def test_user_errors_exit_2_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": "", "label": "y"}\n')
    result = lpft("train", "--train", str(bad), "--method", "lp", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "bad.jsonl, line 2, field 'text': text is empty" in result.stderr
    result = lpft("train", "--train", str(bad), "--method", "lp", "--out", "o", "--epochs", "0")
    assert result.returncode == 2 and "epochs: must be at least 1" in result.stderr
