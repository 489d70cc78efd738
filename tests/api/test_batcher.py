"""The /predict micro-batcher's scheduling: fair shares of each pass, input order, cancelled
and failed requests. A fake predictor records each pass's rows; no model is involved."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

import numpy as np
import pytest
from lpft_api.batcher import BatchedModel, TorchThread, fair_shares

HANG_GUARD_S = 30  # only ever reached when the batcher hangs


class RecordingPredictor:
    """Logits ``[request letter, index]`` per row; records the rows of each pass. Passes wait
    for ``release``, so a test can queue requests while the first pass is running."""

    def __init__(self) -> None:
        self.passes: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def logits(self, rows: list[dict[str, Any]]) -> np.ndarray:
        self.passes.append([f"{row['text']}{row['index']}" for row in rows])
        self.started.set()
        assert self.release.wait(HANG_GUARD_S)
        if any(row.get("poison") for row in rows):
            raise ValueError("poisoned pass")
        return np.array([[ord(row["text"]), row["index"]] for row in rows], dtype=np.float32)


def rows(letter: str, count: int) -> list[dict[str, Any]]:
    return [{"text": letter, "index": i} for i in range(count)]


def expected(letter: str, count: int) -> np.ndarray:
    return np.array([[ord(letter), i] for i in range(count)], dtype=np.float32)


async def first_pass_running(
    predictor: RecordingPredictor, model: BatchedModel, requests: dict[str, Coroutine]
) -> dict[str, asyncio.Task]:
    """Start ``requests`` in order and wait until the first pass has started on the torch
    thread (where it waits for ``release``)."""
    tasks = {name: asyncio.create_task(request) for name, request in requests.items()}
    assert await asyncio.to_thread(predictor.started.wait, HANG_GUARD_S)
    return tasks


async def queued(model: BatchedModel, requests: dict[str, Coroutine]) -> dict[str, asyncio.Task]:
    """Start ``requests``; one turn of the loop lets each append itself to the queue."""
    tasks = {name: asyncio.create_task(request) for name, request in requests.items()}
    await asyncio.sleep(0)
    assert len(model.waiting) >= len(tasks)
    return tasks


def test_fair_shares_is_round_robin_by_row() -> None:
    assert fair_shares([100], 64) == [64]
    assert fair_shares([6, 10, 1], 4) == [2, 1, 1]
    assert fair_shares([3, 100, 100], 64) == [3, 31, 30]
    assert fair_shares([1] * 70, 64) == [1] * 64 + [0] * 6
    assert fair_shares([2, 3], 64) == [2, 3]


def test_small_request_waits_one_pass_behind_big_ones() -> None:
    async def scenario() -> None:
        predictor = RecordingPredictor()
        model = BatchedModel(predictor, 4, TorchThread())
        done: list[str] = []
        tasks = await first_pass_running(predictor, model, {"a": model.logits(rows("a", 10))})
        tasks |= await queued(
            model, {"c": model.logits(rows("c", 10)), "b": model.logits(rows("b", 1))}
        )
        for name, task in tasks.items():
            task.add_done_callback(lambda _, name=name: done.append(name))
        predictor.release.set()
        results = {name: await task for name, task in tasks.items()}

        # pass 1 was all a's; pass 2 is shared a, c, b round-robin, so b is done after it
        assert predictor.passes[:2] == [["a0", "a1", "a2", "a3"], ["a4", "a5", "c0", "b0"]]
        assert done[0] == "b"
        assert all(len(rows_) <= 4 for rows_ in predictor.passes)
        sent = sorted(row for rows_ in predictor.passes for row in rows_)
        assert sent == sorted([f"a{i}" for i in range(10)] + [f"c{i}" for i in range(10)] + ["b0"])
        for name, count in (("a", 10), ("b", 1), ("c", 10)):
            np.testing.assert_array_equal(results[name], expected(name, count))
        model.torch_thread.close()

    asyncio.run(scenario())


def test_cancelled_request_stops_consuming_passes() -> None:
    async def scenario() -> None:
        predictor = RecordingPredictor()
        model = BatchedModel(predictor, 4, TorchThread())
        tasks = await first_pass_running(predictor, model, {"a": model.logits(rows("a", 100))})
        tasks |= await queued(model, {"b": model.logits(rows("b", 2))})
        tasks["a"].cancel()  # what the route does when a's client disconnects
        predictor.release.set()
        np.testing.assert_array_equal(await tasks["b"], expected("b", 2))
        assert model.worker is not None
        await model.worker
        assert predictor.passes == [["a0", "a1", "a2", "a3"], ["b0", "b1"]]
        with pytest.raises(asyncio.CancelledError):
            await tasks["a"]
        model.torch_thread.close()

    asyncio.run(scenario())


def test_failed_pass_fails_only_its_requests() -> None:
    async def scenario() -> None:
        predictor = RecordingPredictor()
        model = BatchedModel(predictor, 4, TorchThread())
        poisoned = [{"text": "a", "index": 0}, {"text": "a", "index": 1, "poison": True}]
        tasks = await first_pass_running(
            predictor, model, {"a": model.logits(poisoned), "d": model.logits(rows("d", 6))}
        )
        tasks |= await queued(model, {"b": model.logits(rows("b", 1))})
        predictor.release.set()
        for name in ("a", "d"):  # both had rows in the failed pass; d's later rows are dropped
            with pytest.raises(ValueError, match="poisoned pass"):
                await tasks[name]
        np.testing.assert_array_equal(await tasks["b"], expected("b", 1))
        assert predictor.passes == [["a0", "a1", "d0", "d1"], ["b0"]]
        model.torch_thread.close()

    asyncio.run(scenario())
