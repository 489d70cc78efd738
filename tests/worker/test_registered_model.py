"""A job's calibrated model as an MLflow pyfunc (``lpft_worker.tracking.registered_model``):
one copy of the encoder even for LoRA (merged, not the base model beside its adapters), a
signature and an input example, requirements without lpft, and ``predict`` equal to the
Predictor's calibrated probabilities. Loading it from a registry in a process without lpft is
tested against a real server: tests/integration/test_mlflow.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lpft_worker.tracking.mlflow_run import TrackingFailed
from lpft_worker.tracking.registered_model import save_pyfunc

from lpft_core import Predictor
from tests.core.conftest import TrainedJobs

TEXTS = ["the movie was good and great", "awful bad plot", "a river and a chair"]


@pytest.fixture(scope="module")
def lora_model(trained_jobs: TrainedJobs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = trained_jobs("lp_lora").model_dir
    return save_pyfunc(model_dir, tmp_path_factory.mktemp("pyfunc") / "model")


def test_a_lora_model_holds_one_merged_encoder_and_declares_what_it_needs(
    lora_model: Path, tiny_model_dir: Path
) -> None:
    files = [p.relative_to(lora_model) for p in lora_model.rglob("*") if p.is_file()]
    graphs = [f for f in files if f.suffix == ".onnx"]
    assert [g.name for g in graphs] == ["model.onnx"], files
    assert not [f for f in files if "adapter" in f.name or f.suffix == ".safetensors"], files
    # One copy of the encoder: the model is about the base model's size, not twice it.
    size = sum((lora_model / f).stat().st_size for f in files if f.name.startswith("model.onnx"))
    base = sum(p.stat().st_size for p in tiny_model_dir.rglob("*.safetensors"))
    assert 0.5 * base < size < 1.5 * base, (size, base)

    requirements = (lora_model / "requirements.txt").read_text().split()
    names = {line.split("==")[0] for line in requirements}
    assert {"onnxruntime", "transformers", "pandas"} <= names, requirements
    assert not any(name.startswith("lpft") for name in names), requirements
    mlmodel = (lora_model / "MLmodel").read_text()
    assert "signature:" in mlmodel and "saved_input_example_info" in mlmodel, mlmodel


def test_predict_gives_the_predictors_calibrated_probabilities(
    lora_model: Path,
    trained_jobs: TrainedJobs,
) -> None:
    import mlflow.pyfunc

    job = trained_jobs("lp_lora")
    predictor = Predictor(job.model_dir, device="cpu")
    expected = predictor.predict([{"text": t} for t in TEXTS])
    model = mlflow.pyfunc.load_model(str(lora_model))
    got = model.predict(pd.DataFrame({"text": TEXTS}))
    names = [str(label) for label in predictor.labels]
    assert list(got.columns) == [*names, "label"]
    want = np.array([[p.probabilities[n] for n in names] for p in expected])
    np.testing.assert_allclose(got[names].to_numpy(), want, atol=1e-4)
    assert got["label"].tolist() == [p.label for p in expected]
    assert model.metadata.get_input_schema().input_names() == ["text"]


def test_the_input_must_have_a_text_column(lora_model: Path) -> None:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(str(lora_model))
    with pytest.raises(MlflowException, match="text"):
        model.predict(pd.DataFrame({"review": ["good"]}))


def test_labels_that_cannot_be_column_names_are_refused(
    trained_jobs: TrainedJobs,
    tmp_path: Path,
) -> None:
    import json
    import shutil

    model_dir = tmp_path / "copy"
    shutil.copytree(trained_jobs("lp_lora").model_dir, model_dir)
    labels = json.loads((model_dir / "labels.json").read_text())
    (model_dir / "labels.json").write_text(json.dumps(["label", *labels[1:]]))
    with pytest.raises(TrackingFailed, match="'label'"):
        save_pyfunc(model_dir, tmp_path / "model")
