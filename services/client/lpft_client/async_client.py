"""``AsyncLpftClient``: ``LpftClient`` for asyncio, with the same surface awaited. Requests,
answers and most methods are defined once (``_calls``, ``_resources``), and so are the retry,
pagination and resume decisions; only the waiting is this module's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource

from lpft_client import _calls
from lpft_client._calls import Call, Download, raise_for_problem
from lpft_client._errors import LpftConnectionError
from lpft_client._files import partial_file
from lpft_client._resources import (
    AsyncResource,
    ClientOperations,
    DatasetOperations,
    JobOperations,
)
from lpft_client._streaming import ResumableStream, StreamFailure
from lpft_client.types import Event, Job

Result = TypeVar("Result")


class AsyncDatasets(DatasetOperations, AsyncResource):
    """``client.datasets``, awaited."""


class AsyncJobs(JobOperations, AsyncResource):
    """``client.jobs``, awaited."""

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
        """As ``Jobs.download``: waited for while it is built, streamed to disk."""
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
        state = self._client.options.stream_state(job_id, after, reconnect_for)
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
        http = self._client.http
        with state.request(http, self._client.options.headers) as request:
            response = await http.send(request, stream=True)
        try:
            if response.is_error:
                await response.aread()
                state.refuse(response)
            async for sse in EventSource(response).aiter_sse():
                if (event := state.accept(sse)) is not None:
                    yield event
        finally:
            await response.aclose()


class AsyncLpftClient(ClientOperations, AsyncResource):
    """An asyncio client for one lpft API; arguments as ``LpftClient``'s (``http_client``
    an ``httpx.AsyncClient``)."""

    _http_class = httpx.AsyncClient
    http: httpx.AsyncClient
    jobs: AsyncJobs
    datasets: AsyncDatasets
    _jobs_class, _datasets_class = AsyncJobs, AsyncDatasets

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def __aenter__(self) -> AsyncLpftClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, call: Call[Result]) -> Result:
        """Send ``call`` (with retries) and parse its answer."""
        return call.parse(await self.send(call))

    async def send(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        """As ``LpftClient.send``."""
        attempts = self.options.attempts(call, self.http.base_url)
        while True:
            try:
                with call.request(self.http, self.options.headers) as request:
                    response = await self.http.send(request, stream=stream)
            except httpx.TransportError as error:
                delay = attempts.after_error(error)
            else:
                if (delay := attempts.after_response(response)) is None:
                    if stream and response.is_error:
                        await response.aread()
                    return response
                await response.aclose()
            await asyncio.sleep(delay)
