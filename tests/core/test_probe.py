"""The LP head installed in the model reproduces scikit-learn's probabilities exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import softmax

from lpft_core.data.batching import encode
from lpft_core.data.datasets import parse_records
from lpft_core.model.classifier import build_classifier, classifier_head, load_tokenizer
from lpft_core.stages.probe import LinearProbe, install_head
from tests.conftest import toy_rows


@pytest.mark.parametrize(("classes", "pooling"), [(2, "mean"), (3, "cls"), (3, "mean")])
def test_installed_head_reproduces_predict_proba(
    tiny_model_dir: Path, classes: int, pooling: str
) -> None:
    rows = toy_rows(60, seed=0, classes=classes)
    examples = parse_records(list(enumerate(rows, 1)), source="toy")
    labels = sorted({e.label for e in examples})
    y = np.array([labels.index(e.label) for e in examples])
    # float64 end to end: the check is about the install, not float32 rounding (with C = 1e4
    # the head's norm reaches hundreds and float32 logits carry ~1e-5 absolute error).
    model = build_classifier(str(tiny_model_dir), labels, pooling, seed=0).double().eval()
    encoded = encode(load_tokenizer(str(tiny_model_dir)), examples, max_length=32)
    batch = encoded.batch(range(len(encoded)))

    with torch.no_grad():
        features = model.features(**batch).numpy()
    probe = LinearProbe(random_state=0).fit(features, y)
    weight, bias = probe.head_parameters()
    assert weight.shape == (classes, 32) and bias.shape == (classes,)
    install_head(classifier_head(model), weight, bias)

    with torch.no_grad():
        logits = model(**batch).logits.numpy()
    assert np.abs(softmax(logits, axis=1) - probe.predict_proba(features)).max() < 1e-5
    assert probe.C_ in np.logspace(-4, 4, 10)


def test_binary_head_rows_are_minus_and_plus_half_w() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] + 0.3 * rng.normal(size=80) > 0).astype(int)
    probe = LinearProbe(random_state=0).fit(X, y)
    weight, bias = probe.head_parameters()
    w, c = probe.model_.coef_[0], probe.model_.intercept_[0]
    np.testing.assert_allclose(weight, np.stack([-w / 2, w / 2]))
    np.testing.assert_allclose(bias, [-c / 2, c / 2])


def test_folds_shrink_to_the_rarest_class() -> None:
    X = np.arange(12, dtype=float).reshape(6, 2)
    y = np.array([0, 0, 0, 0, 1, 1])
    assert LinearProbe().fit(X, y).cv_folds_ == 2
