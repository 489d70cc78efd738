"""The exact NTK against an independent full-Jacobian NTK of a tiny float64 model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import functional_call, jacrev

from lpft_core.batching import encode
from lpft_core.data import parse_records
from lpft_core.errors import ModelError
from lpft_core.lora import apply_lora
from lpft_core.modeling import build_classifier, classifier_head, load_tokenizer
from lpft_core.ntk import exact_ntk
from tests.conftest import toy_rows

CPU = torch.device("cpu")
# jacrev has no batching rule for the CPU attention backward; the oracle is slow, not wrong.
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop")


def tiny_setup(model_dir: Path, *, pair: bool = False, classes: int = 3):
    rows = toy_rows(9, seed=3, classes=classes, pair=pair)
    rows[0]["text"] += " and a much longer tail of words"  # lengths differ: several buckets
    examples = parse_records(enumerate(rows, 1), source="toy")
    labels = sorted({e.label for e in examples})
    model = build_classifier(str(model_dir), labels, "mean", seed=0).double()
    encoded = encode(load_tokenizer(str(model_dir)), examples, max_length=32)
    return model, encoded


def full_jacobian_ntk(
    model: torch.nn.Module, encoded, rows: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """J Jᵀ over the head's parameters and over every other trainable parameter, from the
    full per-sample Jacobian of each unpadded sample (torch.func.jacrev)."""
    model.eval()
    head = {id(p) for p in classifier_head(model).parameters()}
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    in_head = {k: id(v) in head for k, v in model.named_parameters() if v.requires_grad}

    def logits(p, batch):
        return functional_call(model, p, args=(), kwargs=batch).logits[0]

    head_rows, encoder_rows = [], []
    for row in rows:
        jac = jacrev(logits)(params, encoded.batch([row]))
        flat = {k: j.reshape(j.shape[0], -1) for k, j in jac.items()}
        head_rows.append(torch.cat([j for k, j in flat.items() if in_head[k]], dim=1))
        encoder_rows.append(torch.cat([j for k, j in flat.items() if not in_head[k]], dim=1))
    kernels = []
    for parts in (head_rows, encoder_rows):
        J = torch.cat(parts)  # (n·C, P), class fastest
        kernels.append((J @ J.T).numpy())
    return kernels[0], kernels[1]


def assert_matches_full(model, encoded, train: list[int], test: list[int]) -> None:
    kernels = exact_ntk(model, encoded, train, test, device=CPU, batch_size=4)
    head, encoder = full_jacobian_ntk(model, encoded, train + test)
    rows = len(train) * kernels.num_classes
    for ours, theirs in ((kernels.pretrain_effective, head), (kernels.ft_effective, encoder)):
        expected = theirs[:rows]
        assert np.abs(ours - expected).max() <= 1e-8 * np.abs(expected).max()


def test_pretrain_plus_ft_effective_equals_the_full_jacobian_ntk(tiny_model_dir: Path) -> None:
    model, encoded = tiny_setup(tiny_model_dir)
    assert_matches_full(model, encoded, train=[0, 2, 4, 6, 8], test=[1, 3, 5])


def test_sentence_pairs_and_two_classes(tiny_model_dir: Path) -> None:
    model, encoded = tiny_setup(tiny_model_dir, pair=True, classes=2)
    assert_matches_full(model, encoded, train=[0, 1, 2, 3, 4, 5], test=[6, 7, 8])


def test_lora_kernel_runs_over_the_adapter_matrices_only(tiny_model_dir: Path) -> None:
    model, encoded = tiny_setup(tiny_model_dir)
    peft_model = apply_lora(model, r=4, alpha=4)
    torch.manual_seed(1)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # B = 0 at init would hide the A matrices' path
            torch.nn.init.normal_(p, std=0.1)
    kernels = exact_ntk(peft_model, encoded, [0, 1, 2, 3], [4, 5], device=CPU, batch_size=4)
    lora_params = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert kernels.parameter_count == lora_params
    assert_matches_full(peft_model, encoded, train=[0, 1, 2, 3], test=[4, 5])


def test_head_scale_multiplies_ft_effective_by_its_square(tiny_model_dir: Path) -> None:
    model, encoded = tiny_setup(tiny_model_dir)
    before = exact_ntk(model, encoded, [0, 1, 2], [3], device=CPU)
    with torch.no_grad():
        classifier_head(model).weight.mul_(3.0)
    after = exact_ntk(model, encoded, [0, 1, 2], [3], device=CPU)
    np.testing.assert_allclose(after.ft_effective, 9.0 * before.ft_effective, rtol=1e-9)
    np.testing.assert_array_equal(after.pretrain_effective, before.pretrain_effective)


def test_unsupported_trainable_parameter_is_an_error(tiny_model_dir: Path) -> None:
    model, encoded = tiny_setup(tiny_model_dir)
    model.encoder.register_parameter("scale", torch.nn.Parameter(torch.ones(1)))
    with pytest.raises(ModelError, match="encoder.scale"):
        exact_ntk(model, encoded, [0, 1], [], device=CPU)
