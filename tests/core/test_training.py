"""The FT step loop: length-grouped batches, step metrics, divergence, the bool flag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lpft_client.local import build_parser

from lpft_core.config import Hyperparameters
from lpft_core.data.batching import GROUP_BATCHES, encode, length_grouped_batches, shuffled_batches
from lpft_core.data.datasets import read_examples
from lpft_core.errors import ConfigError, TrainingDivergedError
from lpft_core.events import ProgressEvent
from lpft_core.model.classifier import build_classifier, load_tokenizer
from lpft_core.stages.training import TrainingOptions, _StepLog, train


def padded_tokens(lengths: np.ndarray, batches: list[np.ndarray]) -> int:
    return sum(int(lengths[b].max()) * len(b) for b in batches)


def test_grouped_batches_cover_every_row_once_and_cut_padding() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=2000)
    batches = length_grouped_batches(lengths, 16, np.random.default_rng(1))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(2000))
    assert all(1 <= len(b) <= 16 for b in batches)
    random = shuffled_batches(2000, 16, np.random.default_rng(1))
    assert padded_tokens(lengths, batches) < 0.6 * padded_tokens(lengths, random)
    # the same seed gives the same epoch; another seed another one
    again = length_grouped_batches(lengths, 16, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other = length_grouped_batches(lengths, 16, np.random.default_rng(2))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other, strict=True))


def test_grouped_batches_mix_rows_within_each_group_only() -> None:
    lengths = np.arange(4 * GROUP_BATCHES * 8)
    order = np.random.default_rng(3)
    expected_groups = order.permutation(len(lengths)).reshape(4, -1)
    batches = length_grouped_batches(lengths, 8, np.random.default_rng(3))
    group_of = {int(row): g for g, rows in enumerate(expected_groups) for row in rows}
    for batch in batches:
        assert len({group_of[int(r)] for r in batch}) == 1
        assert list(lengths[batch]) == sorted(lengths[batch], reverse=True)


def test_step_log_reads_pending_steps_in_order_and_publishes_the_last() -> None:
    events: list[ProgressEvent] = []
    log = _StepLog("ft", 10, events.append)
    for step in (1, 2, 3):
        log.add(step, 1, torch.tensor([0.5 / step, 2.0, 0.1]), 1e-5 * step)
    assert log.records == [] and events == []
    log.flush()
    assert [r.step for r in log.records] == [1, 2, 3]
    assert log.records[1].loss == pytest.approx(0.25) and log.records[
        2
    ].learning_rate == pytest.approx(3e-5)
    assert [(e.stage, e.step, e.total) for e in events] == [("ft", 3, 10)]
    log.flush()
    assert len(events) == 1


def test_step_log_stops_at_the_first_non_finite_loss() -> None:
    log = _StepLog("lora", 10, lambda event: None)
    log.add(1, 1, torch.tensor([0.7, 1.0, 0.0]), 1e-4)
    log.add(2, 1, torch.tensor([float("nan"), 1.0, 0.0]), 1e-4)
    with pytest.raises(TrainingDivergedError, match="lora loss became nan at step 2"):
        log.flush()


def test_group_by_length_is_a_true_boolean_flag() -> None:
    parser, _ = build_parser()
    base = ["train", "--train", "t.jsonl", "--method", "ft", "--out", "o"]
    assert parser.parse_args(base).group_by_length is None
    assert parser.parse_args([*base, "--no-group-by-length"]).group_by_length is False
    assert parser.parse_args([*base, "--group-by-length"]).group_by_length is True
    with pytest.raises(ConfigError, match="group_by_length"):
        Hyperparameters(group_by_length="no")  # type: ignore[arg-type]


@pytest.mark.slow  # torch.compile: 9 s alone, 38 s beside a busy stack
def test_compiled_training_follows_the_eager_run(
    toy_files: dict[str, Path], tiny_model_dir: Path
) -> None:
    """torch.compile (inductor, CPU here) must change speed only: the same losses. Dropout is
    off, since compiled kernels draw their dropout masks from another random stream."""
    losses = {}
    for compiled in (False, True):
        model = build_classifier(str(tiny_model_dir), ["neg", "neu", "pos"], "mean", seed=0)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        tokenizer = load_tokenizer(str(tiny_model_dir))
        examples = read_examples(toy_files["train"])
        encoded = encode(tokenizer, examples, 32)
        y = np.array([["neg", "neu", "pos"].index(e.label) for e in examples])
        options = TrainingOptions(epochs=1, batch_size=16, learning_rate=1e-3, compile=compiled)
        result = train(model, encoded, y, encoded, y, options, device=torch.device("cpu"))
        losses[compiled] = [s.loss for s in result.steps]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4, abs=1e-5)
