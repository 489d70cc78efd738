"""``AsyncLpftClient``: ``LpftClient`` for asyncio, with the same surface awaited. Requests
and answers are the same ``Call``s (``_calls``) and the retry, pagination and resume logic
the same objects; only the waiting differs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
from httpx_sse import EventSource

from lpft_client import _calls
from lpft_client._base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, ClientOptions
from lpft_client._calls import Call, Download, raise_for_problem
from lpft_client._errors import LpftConnectionError
from lpft_client._files import partial_file
from lpft_client._pagination import AsyncPager
from lpft_client._retry import unreachable
from lpft_client._streaming import ResumableStream, StreamFailure
from lpft_client.types import Dataset, Event, Job, JobLog, Metrics, Predictions

Result = TypeVar("Result")


class AsyncLpftClient:
    """An asyncio client for one lpft API; arguments as ``LpftClient``'s (``http_client``
    an ``httpx.AsyncClient``)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        reconnect_for: float | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.options = ClientOptions.resolve(base_url, api_key, max_retries, reconnect_for)
        self.http = http_client or httpx.AsyncClient(
            base_url=self.options.base_url, timeout=timeout
        )
        self.jobs = AsyncJobs(self)
        self.datasets = AsyncDatasets(self)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def __aenter__(self) -> AsyncLpftClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def predict(
        self,
        job_id: str,
        inputs: Sequence[str | Mapping[str, str]],
        *,
        calibrated: bool = True,
        conformal: Mapping[str, Any] | None = None,
        min_confidence: float | None = None,
    ) -> Predictions:
        """Labels and (calibrated) probabilities for ``inputs``."""
        call = _calls.predict(job_id, inputs, calibrated, conformal, min_confidence)
        return await self.request(call)

    async def request(self, call: Call[Result]) -> Result:
        """Send ``call`` (with retries) and parse its answer."""
        return call.parse(await self.send(call))

    async def send(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        """As ``LpftClient.send``."""
        attempt = 0
        while True:
            try:
                with call.request(self.http, self.options.headers) as request:
                    response = await self.http.send(request, stream=stream)
            except httpx.TransportError as error:
                delay = self.options.retry.delay(call.repeatable, attempt, error=error)
                if delay is None:
                    url = self.http.base_url.join(call.path)
                    message = unreachable(url, call.method, error, attempt)
                    raise LpftConnectionError(message) from error
            else:
                delay = self.options.retry.delay(call.repeatable, attempt, response=response)
                if delay is None:
                    if stream and response.is_error:
                        await response.aread()
                    return response
                await response.aclose()
            await asyncio.sleep(delay)
            attempt += 1


class AsyncDatasets:
    """``client.datasets``, awaited."""

    def __init__(self, client: AsyncLpftClient) -> None:
        self._client = client

    async def upload(self, path: str | Path, *, name: str | None = None) -> Dataset:
        """Upload a .jsonl or .csv file; returns it with its summary."""
        return await self._client.request(_calls.upload_dataset(path, name))

    async def create(
        self, records: Sequence[Mapping[str, Any]], *, name: str | None = None
    ) -> Dataset:
        """Upload rows as JSON."""
        return await self._client.request(_calls.create_dataset(records, name))

    async def retrieve(self, dataset_id: str) -> Dataset:
        """One dataset."""
        return await self._client.request(_calls.get_dataset(dataset_id))

    async def delete(self, dataset_id: str) -> None:
        """Delete a dataset."""
        await self._client.request(_calls.delete_dataset(dataset_id))

    def list(self, *, limit: int = 20, after: str | None = None) -> AsyncPager[Dataset]:
        """Every dataset, newest first: ``async for dataset in client.datasets.list()``."""
        return AsyncPager(
            lambda cursor: self._client.request(_calls.list_datasets(cursor, limit)), after
        )


class AsyncJobs:
    """``client.jobs``, awaited."""

    def __init__(self, client: AsyncLpftClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        train: str,
        method: str | None = None,
        validation: str | None = None,
        test: str | None = None,
        kind: str = "finetune",
        model: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        seed: int | None = None,
        eval_sets: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        """As ``Jobs.create``."""
        call = _calls.create_job(
            train,
            method=method,
            validation=validation,
            test=test,
            kind=kind,
            model=model,
            hyperparameters=hyperparameters,
            seed=seed,
            eval_sets=eval_sets,
            idempotency_key=idempotency_key,
            options=options,
        )
        return await self._client.request(call)

    async def retrieve(self, job_id: str) -> Job:
        """One job."""
        return await self._client.request(_calls.get_job(job_id))

    async def cancel(self, job_id: str) -> Job:
        """Ask a job to stop."""
        return await self._client.request(_calls.cancel_job(job_id))

    async def delete(self, job_id: str) -> None:
        """Delete a finished job."""
        await self._client.request(_calls.delete_job(job_id))

    async def logs(self, job_id: str, *, limit: int = 100) -> JobLog:
        """The last ``limit`` (at most 1,000) records of the job's own log."""
        return await self._client.request(_calls.job_logs(job_id, limit))

    async def metrics(self, job_id: str) -> Metrics:
        """The job's metrics (``LiveMetrics`` until it succeeded)."""
        return await self._client.request(_calls.job_metrics(job_id))

    async def report(self, job_id: str, format: Literal["html", "md"] = "html") -> str:
        """The job's report."""
        return await self._client.request(_calls.job_report(job_id, format))

    async def recalibrate(self, job_id: str, dataset: str) -> Job:
        """Queue a ``recalibrate`` job."""
        return await self._client.request(_calls.recalibrate(job_id, dataset))

    async def wait(self, job_id: str, *, poll_s: float = 1.0, timeout_s: float = 3600) -> Job:
        """As ``Jobs.wait``."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not (job := await self.retrieve(job_id)).is_terminal:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s} s")
            await asyncio.sleep(poll_s)
        return job

    async def download(
        self, job_id: str, what: Download, path: str | Path, *, format: str | None = None
    ) -> Path:
        """As ``Jobs.download``: streamed to disk."""
        path = Path(path)
        response = await self._client.send(_calls.download(job_id, what, format), stream=True)
        try:
            raise_for_problem(response)
            with partial_file(path) as handle:
                async for chunk in response.aiter_bytes():
                    handle.write(chunk)
        finally:
            await response.aclose()
        return path

    async def stream_events(
        self, job_id: str, *, after: str | None = None, reconnect_for: float | None = None
    ) -> AsyncIterator[Event]:
        """As ``Jobs.stream_events``: resumes after drops until the job has finished."""
        budget = self._client.options.reconnect_for if reconnect_for is None else reconnect_for
        state = ResumableStream(job_id, after, budget)
        while True:
            try:
                async for event in self._stream_once(state):
                    yield event
                if state.finished or (await self.retrieve(job_id)).is_terminal:
                    return
                raise StreamFailure("the stream ended before the job did")
            except (StreamFailure, LpftConnectionError, httpx.TransportError) as failure:
                await asyncio.sleep(state.retry_delay(failure))

    async def _stream_once(self, state: ResumableStream) -> AsyncIterator[Event]:
        call = _calls.events_stream(state.job_id)
        http, headers = self._client.http, {**self._client.options.headers, **state.headers()}
        with call.request(http, headers) as request:
            response = await http.send(request, stream=True)
        try:
            if response.is_error:
                await response.aread()
                state.check(response)
                raise_for_problem(response)
            async for sse in EventSource(response).aiter_sse():
                if (event := state.accept(sse)) is not None:
                    yield event
        finally:
            await response.aclose()

    def list(
        self, *, status: str | None = None, limit: int = 20, after: str | None = None
    ) -> AsyncPager[Job]:
        """Every job (of ``status``), newest first: ``async for job in client.jobs.list()``."""
        return AsyncPager(
            lambda cursor: self._client.request(_calls.list_jobs(status, cursor, limit)), after
        )

    def list_events(
        self, job_id: str, *, limit: int = 100, after: str | None = None
    ) -> AsyncPager[Event]:
        """The job's event log so far, in order."""
        return AsyncPager(
            lambda cursor: self._client.request(_calls.job_events(job_id, cursor, limit)), after
        )
