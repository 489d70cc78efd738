"""The exact NTK against an independent full-Jacobian NTK of a tiny float64 model."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import functional_call, jacrev
from transformers import GPT2Config

from lpft_core.data.batching import EncodedTexts, encode
from lpft_core.data.datasets import parse_records
from lpft_core.diagnostics import ntk
from lpft_core.diagnostics.ntk import NtkKernels, exact_ntk
from lpft_core.errors import JobCancelled, ModelError
from lpft_core.model.classifier import build_classifier, classifier_head, load_tokenizer
from lpft_core.model.lora import apply_lora
from lpft_core.model.modeling_lpft import LpftConfig, LpftForSequenceClassification
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


def assert_matches_full(model, encoded, train: list[int], test: list[int], **options) -> None:
    kernels = exact_ntk(model, encoded, train, test, device=CPU, batch_size=4, **options)
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


def test_one_sample_blocks_match_the_full_jacobian_ntk(tiny_model_dir: Path) -> None:
    model, encoded = tiny_setup(tiny_model_dir, pair=True, classes=2)
    assert_matches_full(model, encoded, train=[5, 0, 3, 1], test=[8, 2, 7], block_tokens=1)


def test_conv1d_weights_of_a_gpt2_encoder_match_the_full_jacobian_ntk() -> None:
    torch.manual_seed(0)
    encoder = GPT2Config(vocab_size=60, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    config = LpftConfig(encoder=encoder.to_dict(), pooling="mean", num_labels=3)
    model = LpftForSequenceClassification(config).double()
    rng = np.random.default_rng(0)
    ids = [rng.integers(0, 60, size=int(n)).tolist() for n in (5, 9, 5, 7, 9, 3)]
    encoded = EncodedTexts(
        columns={"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]},
        lengths=np.array([len(row) for row in ids]),
        pad_token_id=0,
    )
    assert_matches_full(model, encoded, train=[0, 1, 2, 3], test=[4, 5], block_tokens=12)


def assert_same_kernels(ours: NtkKernels, theirs: NtkKernels) -> None:
    for name in ("ft_effective", "pretrain_effective", "features"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-10 * np.abs(b).max(), name


def test_blocks_of_any_size_give_the_one_block_kernel(tiny_model_dir: Path) -> None:
    model, encoded = tiny_setup(tiny_model_dir)
    train, test = [0, 2, 4, 6, 8, 7], [1, 3, 5]
    longest = int(encoded.lengths.max())
    kernels = {
        bound: exact_ntk(model, encoded, train, test, device=CPU, batch_size=2, block_tokens=bound)
        for bound in (1, 2 * longest, 4 * longest, int(encoded.lengths.sum()))
    }
    one_block = kernels.pop(int(encoded.lengths.sum()))
    for blocked in kernels.values():
        assert_same_kernels(blocked, one_block)


def test_blocks_respect_the_bound_and_at_most_two_are_held(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, encoded = tiny_setup(tiny_model_dir)
    bound = 2 * int(encoded.lengths.max())
    alive: weakref.WeakSet = weakref.WeakSet()
    seen: list[tuple[int, int]] = []  # (captures alive before this one, its tokens)
    capture = ntk._Job.capture

    def spy(job, block):
        seen.append((len(alive), int(encoded.lengths[job.rows[block]].sum())))
        captured = capture(job, block)
        alive.add(captured)
        return captured

    monkeypatch.setattr(ntk._Job, "capture", spy)
    exact_ntk(model, encoded, [0, 1, 2, 3, 4], [5, 6, 7, 8], device=CPU, block_tokens=bound)
    assert len(seen) > 4  # several blocks, column blocks captured again
    assert max(held for held, _ in seen) == 1
    assert max(tokens for _, tokens in seen) <= bound


def test_stop_request_between_blocks_cancels_and_restores_train_mode(
    tiny_model_dir: Path,
) -> None:
    model, encoded = tiny_setup(tiny_model_dir)
    model.train()
    calls = []

    def stop_at_the_third_batch() -> bool:
        calls.append(None)
        return len(calls) == 3

    with pytest.raises(JobCancelled):
        exact_ntk(
            model,
            encoded,
            [0, 1, 2, 3],
            [4, 5],
            device=CPU,
            block_tokens=1,
            should_stop=stop_at_the_third_batch,
        )
    assert len(calls) == 3 and model.training


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
