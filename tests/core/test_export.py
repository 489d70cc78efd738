"""Exports load without lpft and reproduce the Predictor's calibrated probabilities: the HF
directory through transformers alone, the ONNX graph through onnxruntime alone; LoRA merged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lpft_core import Predictor
from lpft_core.serving.export import export_model, unpack
from tests.core.conftest import TrainedJobs

INPUTS = ["the movie was good and great", "awful bad plot", "a river and a chair"]


@pytest.fixture(scope="module", params=["lp_ft", "lp_lora"])
def model_dir(request: pytest.FixtureRequest, trained_jobs: TrainedJobs) -> Path:
    """The run's shared job: exporting reads the model directory and writes only the archive."""
    return trained_jobs(request.param).model_dir


def served(model_dir: Path) -> tuple[np.ndarray, np.ndarray, float]:
    predictor = Predictor(model_dir, device="cpu")
    predictions = predictor.predict([{"text": t} for t in INPUTS])
    names = [str(label) for label in predictor.labels]
    probabilities = np.array([[p.probabilities[n] for n in names] for p in predictions])
    logits = np.array([p.logits for p in predictions])
    assert abs(predictor.temperature - 1.0) > 1e-3  # T matters, so folding it is tested
    return probabilities, logits, predictor.temperature


def test_the_hf_export_gives_calibrated_probabilities_with_transformers_alone(
    model_dir: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = unpack(export_model(model_dir, tmp_path / "hf.tar.gz", "hf"), tmp_path / "hf")
    model = AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    batch = tokenizer(INPUTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        probabilities = torch.softmax(model.eval()(**batch).logits, dim=-1).numpy()
    expected, _, _ = served(model_dir)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    card = (directory / "README.md").read_text()
    assert "trust_remote_code" in card and "Temperature T" in card


@pytest.mark.slow  # torch.onnx.export (dynamo) takes 2.5 to 5 s even for the tiny model
def test_the_onnx_export_gives_calibrated_probabilities_with_onnxruntime_alone(
    model_dir: Path, tmp_path: Path
) -> None:
    import onnxruntime
    from transformers import AutoTokenizer

    directory = unpack(export_model(model_dir, tmp_path / "m.tar.gz", "onnx"), tmp_path / "onnx")
    session = onnxruntime.InferenceSession(str(directory / "model.onnx"))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    batch = tokenizer(INPUTS, padding=True, return_tensors="np")
    feeds = {i.name: batch[i.name].astype(np.int64) for i in session.get_inputs()}
    assert set(feeds) == {"input_ids", "attention_mask", "token_type_ids"}
    probabilities, logits = session.run(["probabilities", "logits"], feeds)
    expected, expected_logits, _ = served(model_dir)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    np.testing.assert_allclose(logits, expected_logits, atol=1e-3)
