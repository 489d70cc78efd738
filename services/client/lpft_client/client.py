"""``LpftClient``: the lpft HTTP API from Python, with typed results, retries, paginated
lists, resumable event streams and downloads streamed to disk.

    with LpftClient("http://127.0.0.1:8000", api_key="...") as client:
        train = client.datasets.upload("train.jsonl")
        job = client.jobs.create(train=train.id, method="lp_ft")
        for event in client.jobs.stream_events(job.id):
            print(event.type, event.data)
        client.jobs.download(job.id, "model", "model.tar.gz")
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource

from lpft_client import _calls
from lpft_client._calls import Call, Download, raise_for_problem
from lpft_client._errors import LpftConnectionError
from lpft_client._files import partial_file
from lpft_client._resources import ClientOperations, DatasetOperations, JobOperations, SyncResource
from lpft_client._streaming import ResumableStream, StreamFailure
from lpft_client.types import Event, Job

Result = TypeVar("Result")


class Datasets(DatasetOperations, SyncResource):
    """``client.datasets``: upload, list, show and delete datasets."""


class Jobs(JobOperations, SyncResource):
    """``client.jobs``: create, follow, cancel and fetch the results of jobs."""

    def wait(self, job_id: str, *, poll_s: float = 1.0, timeout_s: float = 3600) -> Job:
        """Poll until the job is succeeded, failed or cancelled; returns it.

        Raises:
            TimeoutError: still unfinished after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while not (job := self.retrieve(job_id)).is_terminal:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s} s")
            time.sleep(poll_s)
        return job

    def download(
        self, job_id: str, what: Download, path: str | Path, *, format: str | None = None
    ) -> Path:
        """Stream an artifact to ``path``: ``model`` (the job's files, ``.tar.gz``),
        ``report`` (``format`` html or md) or ``export`` (``format`` onnx or hf, ``.tar.gz``).
        An archive the server is still building is waited for; the body goes to disk as it
        arrives, never whole into memory."""
        path = Path(path)
        response = self._client.send(_calls.download(job_id, what, format), stream=True)
        try:
            raise_for_problem(response)
            with partial_file(path) as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
        finally:
            response.close()
        return path

    def stream_events(
        self, job_id: str, *, after: str | None = None, reconnect_for: float | None = None
    ) -> Iterator[Event]:
        """The job's events as they happen (Server-Sent Events), from the start or after the
        event id ``after``, until the job has finished and its last event arrived.

        A dropped connection, a refused one or a 5xx is followed by a reconnect that resumes
        after the last event received (``Last-Event-ID``): no event is lost or repeated.
        It keeps trying with back-off for ``reconnect_for`` seconds (default the client's,
        5 minutes) of silence from the API, then raises ``LpftConnectionError``.
        """
        state = self._client.options.stream_state(job_id, after, reconnect_for)
        while True:
            try:
                yield from self._stream_once(state)
                if state.finished or self.retrieve(job_id).is_terminal:
                    return
                raise StreamFailure("the stream ended before the job did")
            except (StreamFailure, LpftConnectionError, httpx.TransportError) as failure:
                time.sleep(state.retry_delay(failure))

    def _stream_once(self, state: ResumableStream) -> Iterator[Event]:
        http = self._client.http
        with state.request(http, self._client.options.headers) as request:
            response = http.send(request, stream=True)
        try:
            if response.is_error:
                response.read()
                state.refuse(response)
            for sse in EventSource(response).iter_sse():
                if (event := state.accept(sse)) is not None:
                    yield event
        finally:
            response.close()


class LpftClient(ClientOperations, SyncResource):
    """A client for one lpft API.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``; default ``LPFT_API_URL``, else that one.
        api_key: sent as ``Authorization: Bearer <key>``; default ``LPFT_API_KEY``; none for
            an open server.
        timeout: seconds per request.
        max_retries: retries of a request after a connection error, a 429 (after its
            ``Retry-After``) or a 502/503/504, for requests that are safe to repeat.
        reconnect_for: seconds an event stream keeps reconnecting while the API is away.
        http_client: an ``httpx.Client`` to send through (its base URL is used as is).
    """

    _http_class = httpx.Client
    http: httpx.Client
    jobs: Jobs
    datasets: Datasets
    _jobs_class, _datasets_class = Jobs, Datasets

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> LpftClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, call: Call[Result]) -> Result:
        """Send ``call`` (with retries) and parse its answer."""
        return call.parse(self.send(call))

    def send(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        """The answer to ``call``, after the retries the retry policy allows (and, for a
        download, once the server has built it). A streamed answer is returned open (the
        caller closes it), its body read only for an error.

        Raises:
            LpftConnectionError: no answer, retries included.
        """
        attempts = self.options.attempts(call, self.http.base_url)
        while True:
            try:
                with call.request(self.http, self.options.headers) as request:
                    response = self.http.send(request, stream=stream)
            except httpx.TransportError as error:
                delay = attempts.after_error(error)
            else:
                if (delay := attempts.after_response(response)) is None:
                    if stream and response.is_error:
                        response.read()
                    return response
                response.close()
            time.sleep(delay)
