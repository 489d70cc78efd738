"""Length buckets of a forward pass: the cut is the cheapest under its cost model (checked
against every partition of small passes), and the logits come back in the rows' order, the
same as without buckets. A fake predictor with a word tokenizer; the real model's equality is
checked against the served model in tests/integration/test_predict_fairness.py."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
from lpft_api.length_buckets import bucketed_logits, length_buckets


def cost_of(groups: list[list[int]], lengths: list[int], cost: int) -> int:
    return sum(cost + len(g) * max(lengths[i] for i in g) for g in groups)


def partitions(items: list[int]) -> Iterator[list[list[int]]]:
    """Every partition of ``items`` into non-empty groups."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in partitions(rest):
        yield [[first], *partition]
        for k in range(len(partition)):
            yield [*partition[:k], [first, *partition[k]], *partition[k + 1 :]]


def test_one_long_text_gets_a_sub_batch_of_its_own() -> None:
    lengths = [5] * 7 + [60] + [5] * 8
    assert length_buckets(lengths, 64) == [[i for i in range(16) if i != 7], [7]]


def test_no_cut_when_cutting_saves_nothing() -> None:
    assert length_buckets([12, 12, 12, 12], 64) == [[0, 1, 2, 3]]
    assert length_buckets([3, 50, 7], 10_000) == [[0, 2, 1]]
    assert length_buckets([], 64) == []


def test_the_cut_is_the_cheapest_partition() -> None:
    rng = random.Random(0)
    for _ in range(60):
        lengths = [rng.choice([2, 5, 9, 20, 40, 60]) for _ in range(rng.randint(1, 7))]
        cost = rng.choice([0, 8, 64, 200])
        groups = length_buckets(lengths, cost)
        assert sorted(itertools.chain(*groups)) == list(range(len(lengths)))
        cheapest = min(cost_of(p, lengths, cost) for p in partitions(list(range(len(lengths)))))
        assert cost_of(groups, lengths, cost) == cheapest, (lengths, cost, groups)


class WordPredictor:
    """Logits ``[row index, words]`` per row; records each call's rows."""

    manifest = SimpleNamespace(max_length=64)

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def tokenizer(self, texts: list[str], pairs: None, **options: Any) -> dict[str, list]:
        limit = options["max_length"]
        return {"input_ids": [text.split()[:limit] for text in texts]}

    def logits(self, rows: list[dict[str, Any]]) -> np.ndarray:
        self.calls.append([row["index"] for row in rows])
        return np.array([[row["index"], len(row["text"].split())] for row in rows], np.float32)


def test_bucketed_logits_are_in_input_order_and_equal_to_one_pass() -> None:
    rng = random.Random(1)
    rows = [
        {"text": " ".join(["w"] * rng.choice([3, 4, 5, 50, 60])), "index": i} for i in range(32)
    ]
    predictor = WordPredictor()
    bucketed = bucketed_logits(predictor, rows)
    assert len(predictor.calls) > 1, "mixed lengths are cut"
    np.testing.assert_array_equal(bucketed, predictor.logits(rows))
    for call in predictor.calls[:-1]:  # each sub-batch holds only short or only long rows
        words = {len(rows[i]["text"].split()) >= 50 for i in call}
        assert len(words) == 1, call


def test_rows_of_one_length_are_one_call() -> None:
    predictor = WordPredictor()
    rows = [{"text": "a b c", "index": i} for i in range(16)]
    bucketed_logits(predictor, rows)
    assert predictor.calls == [list(range(16))]
