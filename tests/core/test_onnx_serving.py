"""The onnx backend serves what the torch backend serves: same logits to 1e-4 for single texts
and pairs, the graph built once into the model directory; int8 is measured before it serves.
The transformer fusions apply to BERT- and RoBERTa-shaped graphs without moving the outputs,
and whether the fused graph serves is decided once per model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import RobertaConfig, RobertaModel

from lpft_core import Predictor, finetune
from lpft_core.errors import ModelError
from lpft_core.model.classifier import build_classifier, load_tokenizer
from lpft_core.model.modeling_lpft import LpftConfig, LpftForSequenceClassification
from lpft_core.serving.export import export_classifier_graph
from lpft_core.serving.graph_fusion import DECISION, TOLERANCE, compare, fuse, read_decision
from lpft_core.serving.onnx_runtime import GRAPHS, serving_graph
from lpft_core.serving.predictor import ConformalRequest
from lpft_core.serving.quantization import REPORT
from tests.conftest import toy_rows, write_jsonl
from tests.core.conftest import TrainedJobs
from tests.core.test_pipeline import spec_for

#: Every test that builds a graph is slow: torch.onnx.export (dynamo) takes 2.5 to 5 s on 2
#: cores even for the tiny model.
slow = pytest.mark.slow


def trained(root: Path, tiny_model_dir: Path, method: str, pair: bool) -> Path:
    files = {
        "train": write_jsonl(root / "train.jsonl", toy_rows(90, seed=1, pair=pair)),
        "validation": write_jsonl(root / "validation.jsonl", toy_rows(30, seed=2, pair=pair)),
        "test": write_jsonl(root / "test.jsonl", toy_rows(45, seed=3, pair=pair)),
    }
    finetune(spec_for(files, tiny_model_dir, root / "model", method, device="cpu"))
    return root / "model"


@pytest.fixture(scope="module")
def single_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return trained(tmp_path_factory.mktemp("single"), tiny_model_dir, "lp_lora", pair=False)


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return trained(tmp_path_factory.mktemp("pair"), tiny_model_dir, "lp_ft", pair=True)


def rows_of(model_dir: Path, pair: bool) -> list[dict]:
    return [
        {"text": row["text"], **({"text_pair": row["text_pair"]} if pair else {})}
        for row in toy_rows(20, seed=7, pair=pair)
    ]


@slow
@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_onnx_backend_matches_torch(pair: bool, request: pytest.FixtureRequest) -> None:
    model_dir = request.getfixturevalue("pair_dir" if pair else "single_dir")
    rows = rows_of(model_dir, pair)
    torch_predictor = Predictor(model_dir, device="cpu")
    onnx_predictor = Predictor(model_dir, backend="onnx")
    assert (torch_predictor.serving, onnx_predictor.serving) == ("torch", "onnx")
    assert onnx_predictor.quantization is None
    np.testing.assert_allclose(
        onnx_predictor.logits(rows), torch_predictor.logits(rows), atol=1e-4, rtol=0
    )
    # the same answers, sets included, since only the logits' source differs
    asked = ConformalRequest(alpha=0.2, method="aps")
    by_torch = torch_predictor.predict(rows, conformal=asked, min_confidence=0.5)
    by_onnx = onnx_predictor.predict(rows, conformal=asked, min_confidence=0.5)
    for a, b in zip(by_torch, by_onnx, strict=True):
        assert (a.label, a.prediction_set, a.abstained) == (b.label, b.prediction_set, b.abstained)
        for name, p in a.probabilities.items():
            assert b.probabilities[name] == pytest.approx(p, abs=1e-4)


@slow
def test_graph_is_built_once_and_kept(single_dir: Path) -> None:
    graph = serving_graph(single_dir, "fp32")
    assert graph.parent in (single_dir / GRAPHS / "fp32", single_dir / GRAPHS / "fp32-fused")
    exported = single_dir / GRAPHS / "fp32" / "model.onnx"
    stamps = exported.stat().st_mtime_ns, graph.stat().st_mtime_ns
    Predictor(single_dir, backend="onnx")
    assert serving_graph(single_dir, "fp32") == graph
    assert (exported.stat().st_mtime_ns, graph.stat().st_mtime_ns) == stamps
    assert not list((single_dir / GRAPHS).glob(".build-*"))  # no scratch left behind


@slow
def test_int8_is_measured_on_the_held_out_rows_before_it_serves(pair_dir: Path) -> None:
    predictor = Predictor(pair_dir, backend="onnx", precision="int8")
    report = predictor.quantization
    assert predictor.serving == "onnx-int8"
    assert report is not None and report.unmeasured is None
    assert (report.split, report.rows) == ("test", 45)
    assert report.temperature == predictor.temperature
    for share in (report.accuracy_fp32, report.accuracy_int8, report.label_agreement):
        assert 0.0 <= share <= 1.0
    assert 0.0 <= report.probability_shift_mean <= report.probability_shift_max <= 1.0
    saved = json.loads((pair_dir / GRAPHS / REPORT).read_text())
    assert saved == report.to_dict()
    # int8 serves: its logits move, a little against their scale, and the labels mostly hold
    rows = rows_of(pair_dir, pair=True)
    fp32 = Predictor(pair_dir, backend="onnx").logits(rows)
    int8 = predictor.logits(rows)
    assert 0 < np.abs(int8 - fp32).max() < 0.15 * np.abs(fp32).max()
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.8


@slow
def test_int8_without_its_data_says_it_is_unmeasured(single_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(single_dir, tmp_path / "model")
    spec = json.loads((copy / "spec.json").read_text())
    spec["data"]["test"] = str(tmp_path / "deleted.jsonl")
    (copy / "spec.json").write_text(json.dumps(spec))
    (copy / GRAPHS / REPORT).unlink(missing_ok=True)
    report = Predictor(copy, backend="onnx", precision="int8").quantization
    assert report is not None and report.rows == 0 and report.accuracy_int8 is None
    assert "deleted.jsonl" in report.unmeasured


def test_bad_backend_options_are_refused(trained_jobs: TrainedJobs) -> None:
    model_dir = trained_jobs("lp_lora").model_dir  # refused before anything is read or built
    with pytest.raises(ModelError, match="backend must be one of"):
        Predictor(model_dir, backend="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="onnx backend option"):
        Predictor(model_dir, precision="int8")


def tiny_roberta() -> LpftForSequenceClassification:
    """A 2-layer, 32-wide RoBERTa with random weights and CLS pooling, built in code."""
    torch.manual_seed(0)
    encoder = RobertaModel(
        RobertaConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=130,
        ),
        add_pooling_layer=False,
    )
    model = LpftForSequenceClassification(
        LpftConfig(encoder=encoder.config.to_dict(), pooling="cls", num_labels=2)
    )
    model.encoder = encoder
    return model.eval()


@slow
@pytest.mark.parametrize("shape", ["bert", "roberta"])
def test_the_fusions_apply_to_bert_and_roberta_graphs(
    shape: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    if shape == "bert":
        model = build_classifier(str(tiny_model_dir), [0, 1], "mean", seed=0).eval()
    else:
        model = tiny_roberta()
    export_classifier_graph(model, load_tokenizer(str(tiny_model_dir)), 1.5, tmp_path / "a.onnx")
    applied = fuse(tmp_path / "a.onnx", tmp_path / "fused.onnx")
    assert {"attention", "skip_layer_normalization", "bias_gelu"} <= set(applied), applied
    plain_ms, fused_ms, difference = compare(tmp_path / "a.onnx", tmp_path / "fused.onnx", 1)
    assert difference <= TOLERANCE and plain_ms > 0 and fused_ms > 0


@slow
def test_the_fusion_decision_is_taken_once_and_decides_the_graph(single_dir: Path) -> None:
    served = serving_graph(single_dir, "fp32", threads=1)
    decision = read_decision(single_dir / GRAPHS)
    assert decision is not None and decision.fused_operators, decision
    fused = single_dir / GRAPHS / "fp32-fused" / "model.onnx"
    assert served == (fused if decision.kept else single_dir / GRAPHS / "fp32" / "model.onnx")
    assert fused.is_file() == decision.kept
    stamp = (single_dir / GRAPHS / DECISION).stat().st_mtime_ns
    assert serving_graph(single_dir, "fp32", threads=1) == served
    assert (single_dir / GRAPHS / DECISION).stat().st_mtime_ns == stamp  # read, not measured
