"""The fair micro-batcher that feeds each served model (``model_cache`` keeps the models).

Each model has one serving loop that runs one forward pass of at most ``max_batch`` inputs at a
time. A pass is shared out among the waiting requests like a round-robin that takes one row
from each request in turn until the pass is full (``fair_shares``), each request giving a
contiguous chunk of its rows in input order. A request larger than one pass is therefore served
over several passes, in turn with the others, and its logits are reassembled in input order when
its last chunk comes back.

What a small request waits for: the pass already running when it arrives, then its own pass,
which it shares with every other waiting request. A one-input request that arrives while
huge requests are served waits about two passes, not for them to finish; only with more than
``max_batch`` requests waiting does it wait ``ceil(waiting / max_batch)`` passes. A lone
request waits for no timer, and a burst of small requests costs few passes.

A request whose future is cancelled (its client left, so ``services.predict`` cancelled the
wait) gives up its unsent rows before the next pass. A pass that raises fails only the
requests that had rows in it; ``services.predict`` validates inputs first, so one bad input
cannot fail others' passes.

All forward passes of the API run on one dedicated thread. Each thread that calls torch gets
its own OpenMP team, and teams on different threads contend for the cores: with asyncio's
shared pool a one-input forward pass took 9.6 ms here instead of 6.4 ms. Every model submits
one pass at a time, so the thread's queue holds at most one pass per busy model: a small
request also waits for at most one pass of each other model being served. Models are loaded on
a second thread, so a load (seconds; with the onnx backend's first use, a graph export of tens
of seconds) costs the others' passes a share of the cores, not a wait for the whole load.
Re-calibration runs in a worker, as a job, never here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from lpft_api.prometheus.serving import PREDICT_BATCH_SIZE
from lpft_core import Predictor

T = TypeVar("T")


class TorchThread:
    """One dedicated thread for the API's model work (``ModelCache`` keeps one for forward
    passes and one for loading models): the calls queue behind each other on it."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpft-torch")

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on the torch thread, awaited."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: function(*args, **kwargs))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def fair_shares(unsent: list[int], space: int) -> list[int]:
    """Rows each request gets in a pass of ``space`` rows, given its ``unsent`` rows: what a
    round-robin taking one row per request in turn would give (max-min fair), computed a
    round of equal quanta at a time instead of row by row. With more requests than space, the
    first ones in the list get the rows."""
    shares = [0] * len(unsent)
    while space:
        open_requests = [i for i, n in enumerate(unsent) if shares[i] < n]
        if not open_requests:
            break
        quantum = max(1, space // len(open_requests))
        for i in open_requests:
            take = min(quantum, unsent[i] - shares[i], space)
            shares[i] += take
            space -= take
            if not space:
                break
    return shares


@dataclass(eq=False)
class PendingRequest:
    """One request's rows, how many have gone into passes, and the logits back so far
    (compared by identity: two requests with equal rows are still two requests)."""

    rows: list[dict[str, Any]]
    future: asyncio.Future[np.ndarray]
    sent: int = 0
    parts: list[np.ndarray] = field(default_factory=list)

    @property
    def unsent(self) -> int:
        return len(self.rows) - self.sent


@dataclass(frozen=True)
class Chunk:
    """Rows ``start:stop`` of a request, in one pass."""

    request: PendingRequest
    start: int
    stop: int


class BatchedModel:
    """One loaded ``Predictor`` and the requests waiting for its passes."""

    def __init__(self, predictor: Predictor, max_batch: int, torch_thread: TorchThread) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.torch_thread = torch_thread
        self.waiting: deque[PendingRequest] = deque()
        self.worker: asyncio.Task[None] | None = None

    async def logits(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Logits of shape (len(rows), C), computed in passes shared fairly with concurrent
        requests. Cancelling the caller withdraws the rows not yet computed."""
        if not rows:
            return await self.torch_thread.run(self.predictor.logits, rows)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.waiting.append(PendingRequest(rows, future))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._serve())
        return await future

    async def _serve(self) -> None:
        """Run passes until no request waits; a pass's error goes to its requests only."""
        while plan := self._next_pass():
            rows = [row for part in plan for row in part.request.rows[part.start : part.stop]]
            PREDICT_BATCH_SIZE.observe(len(rows))
            try:
                logits = await self.torch_thread.run(self.predictor.logits, rows)
            except Exception as exc:  # noqa: BLE001 - the requests in this pass get the error
                self._fail(plan, exc)
            else:
                self._deliver(plan, logits)

    def _next_pass(self) -> list[Chunk]:
        """The chunks of the next pass, fair shares of ``max_batch`` rows. Cancelled requests
        leave the queue; requests that got no rows (more requests than rows) go first next
        time."""
        live = [request for request in self.waiting if not request.future.done()]
        shares = fair_shares([request.unsent for request in live], self.max_batch)
        plan = []
        for request, share in zip(live, shares, strict=True):
            if share:
                plan.append(Chunk(request, request.sent, request.sent + share))
                request.sent += share
        skipped = [request for request, share in zip(live, shares, strict=True) if not share]
        served = [part.request for part in plan if part.request.unsent]
        self.waiting = deque(skipped + served)
        return plan

    def _deliver(self, plan: list[Chunk], logits: np.ndarray) -> None:
        """Hand each chunk its logits; a request whose last chunk this was gets its result."""
        offset = 0
        for part in plan:
            request = part.request
            request.parts.append(logits[offset : offset + part.stop - part.start])
            offset += part.stop - part.start
            if part.stop == len(request.rows) and not request.future.done():
                request.future.set_result(np.concatenate(request.parts))

    def _fail(self, plan: list[Chunk], exc: Exception) -> None:
        """Fail the requests of a failed pass and withdraw their remaining rows."""
        failed = {part.request for part in plan}
        self.waiting = deque(request for request in self.waiting if request not in failed)
        for part in plan:
            if not part.request.future.done():
                part.request.future.set_exception(exc)
