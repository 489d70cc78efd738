"""The fair micro-batcher that feeds the served models (``model_cache`` keeps the models).

All forward passes of the process go through one queue, ``FairQueue``, that runs one pass of
at most ``max_batch`` inputs at a time and shares the passes out by tenant, not by request.
Each tenant's waiting requests form its own queue, and the passes go to the tenants with
requests waiting in turn (round-robin, one pass per turn). A pass holds one tenant's rows for
one model (a job, and so its model, belongs to one tenant). Within a tenant's pass the rows
are shared among that tenant's requests for the model like a round-robin taking one row from
each request in turn (``fair_shares``; one-input requests are therefore taken in arrival
order), each request giving a contiguous chunk of its rows in input order; the pass is then
computed in sub-batches of similar token length (``length_buckets``). A request larger
than one pass is served over several passes, and its logits are reassembled in input order
when its last chunk comes back.

So one application alone can use the whole server: its 32 concurrent clients fill every pass,
and no per-tenant cap on requests in flight is needed for fairness (``services.predict`` keeps
one only against abuse, in the hundreds). What another tenant's small request waits for: the
pass already running when it arrives, then its own pass. Beside one busy tenant (a 100,000-input
flood, or 32 clients each with one input) a one-input request therefore waits about two
passes, however many requests or models that tenant keeps busy; with k other tenants busy, at
most k + 1 passes, since each of them gets one pass per turn. Within a tenant, a small request
beside that tenant's own huge ones waits about two of that tenant's turns; only with more than
``max_batch`` of its requests waiting does it wait ``ceil(waiting / max_batch)`` turns. A lone
request waits for no timer, and a burst of small requests costs few passes.

A request whose future is cancelled (its client left, so ``services.predict`` cancelled the
wait) gives up its unsent rows before the next pass. A pass that raises fails only the
requests that had rows in it; ``services.predict`` validates inputs first, so one bad input
cannot fail others' passes.

All forward passes of the API run on one dedicated thread. Each thread that calls torch gets
its own OpenMP team, and teams on different threads contend for the cores: with asyncio's
shared pool a one-input forward pass took 9.6 ms here instead of 6.4 ms. Models are loaded on
a second thread, so a load (seconds; with the onnx backend's first use, a graph export of tens
of seconds) costs the passes a share of the cores, not a wait for the whole load.
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

from lpft_api.length_buckets import bucketed_logits
from lpft_api.prometheus.serving import PREDICT_BATCH_SIZE
from lpft_core import Predictor

T = TypeVar("T")


class TorchThread:
    """One dedicated thread for the API's model work (``ModelCache`` keeps one for forward
    passes and one for loading models): the calls queue behind each other on it. ``passes``
    is the fair queue of the forward passes run on it."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpft-torch")
        self.passes = FairQueue(self)

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
    """One request's rows for one model, its tenant, how many rows have gone into passes, and
    the logits back so far (compared by identity: two requests with equal rows are still two
    requests)."""

    model: BatchedModel
    tenant: str
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


@dataclass(frozen=True)
class Pass:
    """One forward pass: a tenant's chunks for one model."""

    tenant: str
    model: BatchedModel
    chunks: list[Chunk]


class FairQueue:
    """The waiting requests of every model served on ``torch_thread``, one queue per tenant,
    and the loop that runs their passes, tenants in turn.

    ``turns`` holds the tenants with requests waiting, next first; the tenant whose pass is
    running is not in it, and goes to its end when the pass is over, so a tenant that starts
    waiting meanwhile is served next.
    """

    def __init__(self, torch_thread: TorchThread) -> None:
        self.torch_thread = torch_thread
        self.waiting: dict[str, deque[PendingRequest]] = {}
        self.turns: deque[str] = deque()
        self.running: str | None = None
        self.worker: asyncio.Task[None] | None = None
        #: passes run so far (what a test counts a request's wait in)
        self.passes_run = 0

    def submit(self, request: PendingRequest) -> None:
        """Queue ``request`` behind its tenant's others; the loop starts if it is idle."""
        tenant = request.tenant
        self.waiting.setdefault(tenant, deque()).append(request)
        if tenant != self.running and tenant not in self.turns:
            self.turns.append(tenant)
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        """Run passes until no request waits; a pass's error goes to its requests only."""
        while work := self._next_pass():
            self.running = work.tenant
            rows = [
                row for part in work.chunks for row in part.request.rows[part.start : part.stop]
            ]
            PREDICT_BATCH_SIZE.observe(len(rows))
            try:
                logits = await self.torch_thread.run(bucketed_logits, work.model.predictor, rows)
            except Exception as exc:  # noqa: BLE001 - the requests in this pass get the error
                self._fail(work, exc)
            else:
                _deliver(work.chunks, logits)
            finally:
                self.passes_run += 1
                self.running = None
                if self.waiting.get(work.tenant):
                    self.turns.append(work.tenant)
                else:
                    self.waiting.pop(work.tenant, None)  # tenants come and go

    def _next_pass(self) -> Pass | None:
        """The next tenant's pass, for the model of its oldest waiting request: fair shares of
        the model's ``max_batch`` rows among the tenant's requests for it. Cancelled requests
        leave the queue; the tenant's requests that got no rows keep their place, and those
        with rows left go to the back, so a tenant's models take its turns in turn."""
        while self.turns:
            tenant = self.turns.popleft()
            queue = deque(request for request in self.waiting[tenant] if not request.future.done())
            if not queue:
                del self.waiting[tenant]
                continue
            model = queue[0].model
            same = [request for request in queue if request.model is model]
            shares = fair_shares([request.unsent for request in same], model.max_batch)
            chunks = []
            for request, share in zip(same, shares, strict=True):
                if share:
                    chunks.append(Chunk(request, request.sent, request.sent + share))
                    request.sent += share
            served = {part.request for part in chunks}
            rest = [request for request in queue if request not in served]
            self.waiting[tenant] = deque(
                rest + [part.request for part in chunks if part.request.unsent]
            )
            return Pass(tenant, model, chunks)
        return None

    def _fail(self, work: Pass, exc: Exception) -> None:
        """Fail the requests of a failed pass and withdraw their remaining rows."""
        failed = {part.request for part in work.chunks}
        queue = self.waiting.get(work.tenant, deque())
        self.waiting[work.tenant] = deque(r for r in queue if r not in failed)
        for part in work.chunks:
            if not part.request.future.done():
                part.request.future.set_exception(exc)


def _deliver(chunks: list[Chunk], logits: np.ndarray) -> None:
    """Hand each chunk its logits; a request whose last chunk this was gets its result."""
    offset = 0
    for part in chunks:
        request = part.request
        request.parts.append(logits[offset : offset + part.stop - part.start])
        offset += part.stop - part.start
        if part.stop == len(request.rows) and not request.future.done():
            request.future.set_result(np.concatenate(request.parts))


class BatchedModel:
    """One loaded ``Predictor``, whose passes ``torch_thread``'s fair queue runs."""

    def __init__(self, predictor: Predictor, max_batch: int, torch_thread: TorchThread) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.torch_thread = torch_thread

    async def logits(self, rows: list[dict[str, Any]], tenant: str) -> np.ndarray:
        """Logits of shape (len(rows), C), computed in passes shared fairly with the other
        tenants' requests and ``tenant``'s own. Cancelling the caller withdraws the rows not
        yet computed."""
        if not rows:
            return await self.torch_thread.run(self.predictor.logits, rows)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.torch_thread.passes.submit(PendingRequest(self, tenant, rows, future))
        return await future
