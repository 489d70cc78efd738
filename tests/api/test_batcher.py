"""The /predict micro-batcher's scheduling: passes shared by tenant in turn, then fairly among
a tenant's requests, input order, cancelled and failed requests. A fake predictor records
each pass's rows; no model is involved. Waits are counted in passes, never in seconds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from lpft_api.batcher import BatchedModel, TorchThread, fair_shares

HANG_GUARD_S = 30  # only ever reached when the batcher hangs


class RecordingPredictor:
    """Logits ``[request letter, index]`` per row; records the rows of each pass. Passes wait
    for ``release``, so a test can queue requests while the first pass is running."""

    manifest = SimpleNamespace(max_length=8)

    def __init__(self) -> None:
        self.passes: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def tokenizer(self, texts: list[str], pairs: None, **options: Any) -> dict[str, list]:
        """One token per text: every pass is one length bucket."""
        return {"input_ids": [[0] for _ in texts]}

    def logits(self, rows: list[dict[str, Any]]) -> np.ndarray:
        self.passes.append([f"{row['text']}{row['index']}" for row in rows])
        self.started.set()
        assert self.release.wait(HANG_GUARD_S)
        if any(row.get("poison") for row in rows):
            raise ValueError("poisoned pass")
        return np.array([[ord(row["text"]), row["index"]] for row in rows], dtype=np.float32)


def served_model(predictor: RecordingPredictor, max_batch: int = 4) -> BatchedModel:
    """A model on a torch thread of its own."""
    return BatchedModel(predictor, max_batch, TorchThread())


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
    waiting = model.torch_thread.passes.waiting
    assert sum(len(queue) for queue in waiting.values()) >= len(tasks)
    return tasks


def test_fair_shares_is_round_robin_by_row() -> None:
    assert fair_shares([100], 64) == [64]
    assert fair_shares([6, 10, 1], 4) == [2, 1, 1]
    assert fair_shares([3, 100, 100], 64) == [3, 31, 30]
    assert fair_shares([1] * 70, 64) == [1] * 64 + [0] * 6
    assert fair_shares([2, 3], 64) == [2, 3]


def test_small_request_waits_one_pass_behind_its_own_tenants_big_ones() -> None:
    async def scenario() -> None:
        predictor = RecordingPredictor()
        model = served_model(predictor)
        done: list[str] = []
        tasks = await first_pass_running(predictor, model, {"a": model.logits(rows("a", 10), "t")})
        tasks |= await queued(
            model, {"c": model.logits(rows("c", 10), "t"), "b": model.logits(rows("b", 1), "t")}
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
        model = served_model(predictor)
        tasks = await first_pass_running(predictor, model, {"a": model.logits(rows("a", 100), "t")})
        tasks |= await queued(model, {"b": model.logits(rows("b", 2), "t")})
        tasks["a"].cancel()  # what the route does when a's client disconnects
        predictor.release.set()
        np.testing.assert_array_equal(await tasks["b"], expected("b", 2))
        worker = model.torch_thread.passes.worker
        assert worker is not None
        await worker
        assert predictor.passes == [["a0", "a1", "a2", "a3"], ["b0", "b1"]]
        with pytest.raises(asyncio.CancelledError):
            await tasks["a"]
        model.torch_thread.close()

    asyncio.run(scenario())


def test_failed_pass_fails_only_its_requests() -> None:
    async def scenario() -> None:
        predictor = RecordingPredictor()
        model = served_model(predictor)
        poisoned = [{"text": "a", "index": 0}, {"text": "a", "index": 1, "poison": True}]
        tasks = await first_pass_running(
            predictor,
            model,
            {"a": model.logits(poisoned, "t"), "d": model.logits(rows("d", 6), "t")},
        )
        tasks |= await queued(model, {"b": model.logits(rows("b", 1), "t")})
        predictor.release.set()
        for name in ("a", "d"):  # both had rows in the failed pass; d's later rows are dropped
            with pytest.raises(ValueError, match="poisoned pass"):
                await tasks[name]
        np.testing.assert_array_equal(await tasks["b"], expected("b", 1))
        assert predictor.passes == [["a0", "a1", "d0", "d1"], ["b0"]]
        model.torch_thread.close()

    asyncio.run(scenario())


def test_one_tenant_alone_fills_every_pass() -> None:
    """32 concurrent one-input requests of one tenant: two full passes, in arrival order."""

    async def scenario() -> None:
        predictor = RecordingPredictor()
        predictor.release.set()
        model = served_model(predictor, max_batch=16)
        requests = [model.logits(rows(chr(ord("A") + i), 1), "alice") for i in range(32)]
        results = await asyncio.gather(*requests)
        assert predictor.passes == [
            [f"{chr(ord('A') + i)}0" for i in range(start, start + 16)] for start in (0, 16)
        ]
        for i, result in enumerate(results):
            np.testing.assert_array_equal(result, expected(chr(ord("A") + i), 1))
        assert model.torch_thread.passes.passes_run == 2
        model.torch_thread.close()

    asyncio.run(scenario())


def test_another_tenants_small_request_waits_two_passes_beside_a_flood() -> None:
    """Alice floods two of her models (100,000 inputs on one, 32 one-input requests on the
    other); bob's one input goes into the pass right after the one running when it came."""

    async def scenario() -> None:
        predictor = RecordingPredictor()
        model = served_model(predictor)
        other = BatchedModel(predictor, 4, model.torch_thread)  # alice's second job
        bobs = BatchedModel(predictor, 4, model.torch_thread)
        flood = {"a": model.logits(rows("a", 100_000), "alice")}
        tasks = await first_pass_running(predictor, model, flood)
        singles = {f"s{i}": other.logits(rows(chr(ord("A") + i), 1), "alice") for i in range(32)}
        tasks |= await queued(model, singles)
        waited: list[int] = []
        bob = asyncio.create_task(bobs.logits(rows("b", 1), "bob"))
        bob.add_done_callback(lambda _: waited.append(model.torch_thread.passes.passes_run))
        await asyncio.sleep(0)
        predictor.release.set()
        np.testing.assert_array_equal(await bob, expected("b", 1))

        assert waited == [2], "bob's request was answered by the second pass"
        assert predictor.passes[:2] == [["a0", "a1", "a2", "a3"], ["b0"]]
        singles_done = [await tasks[f"s{i}"] for i in range(32)]  # alice's turns alternate
        for i, result in enumerate(singles_done):
            np.testing.assert_array_equal(result, expected(chr(ord("A") + i), 1))
        tasks["a"].cancel()
        worker = model.torch_thread.passes.worker
        assert worker is not None
        await worker
        single_passes = [p for p in predictor.passes if p[0][0] != "a" and p != ["b0"]]
        assert len(single_passes) == 8 and all(len(p) == 4 for p in single_passes)
        model.torch_thread.close()

    asyncio.run(scenario())


def test_busy_tenants_take_one_pass_each_in_turn() -> None:
    """Three tenants with large requests get the passes in rotation, whatever their sizes;
    a tenant that starts waiting while another's pass runs is served next."""

    async def scenario() -> None:
        predictor = RecordingPredictor()
        model = served_model(predictor)
        tasks = await first_pass_running(predictor, model, {"a": model.logits(rows("a", 40), "x")})
        tasks |= await queued(
            model,
            {
                "b": model.logits(rows("b", 12), "y"),
                "c": model.logits(rows("c", 12), "z"),
                "d": model.logits(rows("d", 8), "x"),  # x's second request shares x's turns
            },
        )
        predictor.release.set()
        await asyncio.gather(*tasks.values())
        tenants = [{"a": "x", "d": "x", "b": "y", "c": "z"}[p[0][0]] for p in predictor.passes]
        assert tenants[:10] == ["x", "y", "z"] * 3 + ["x"]
        assert predictor.passes[3] == ["a4", "a5", "d0", "d1"]  # fair shares within x's turn
        model.torch_thread.close()

    asyncio.run(scenario())
