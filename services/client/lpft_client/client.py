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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
from httpx_sse import EventSource

from lpft_client import _calls
from lpft_client._base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, ClientOptions
from lpft_client._calls import Call, Download, raise_for_problem
from lpft_client._errors import LpftConnectionError
from lpft_client._files import partial_file
from lpft_client._pagination import SyncPager
from lpft_client._retry import unreachable
from lpft_client._streaming import ResumableStream, StreamFailure
from lpft_client.types import Dataset, Event, Job, JobLog, Metrics, Predictions

Result = TypeVar("Result")


class LpftClient:
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

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        reconnect_for: float | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.options = ClientOptions.resolve(base_url, api_key, max_retries, reconnect_for)
        self.http = http_client or httpx.Client(base_url=self.options.base_url, timeout=timeout)
        self.jobs = Jobs(self)
        self.datasets = Datasets(self)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> LpftClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def predict(
        self,
        job_id: str,
        inputs: Sequence[str | Mapping[str, str]],
        *,
        calibrated: bool = True,
        conformal: Mapping[str, Any] | None = None,
        min_confidence: float | None = None,
    ) -> Predictions:
        """Labels and (calibrated) probabilities for ``inputs``: texts, or
        ``{"text", "text_pair"?}`` objects."""
        return self.request(_calls.predict(job_id, inputs, calibrated, conformal, min_confidence))

    def request(self, call: Call[Result]) -> Result:
        """Send ``call`` (with retries) and parse its answer."""
        return call.parse(self.send(call))

    def send(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        """The answer to ``call``, after the retries the retry policy allows. A streamed
        answer is returned open (the caller closes it), its body read only for an error.

        Raises:
            LpftConnectionError: no answer, retries included.
        """
        attempt = 0
        while True:
            try:
                with call.request(self.http, self.options.headers) as request:
                    response = self.http.send(request, stream=stream)
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
                        response.read()
                    return response
                response.close()
            time.sleep(delay)
            attempt += 1


class Datasets:
    """``client.datasets``: upload, list, show and delete datasets."""

    def __init__(self, client: LpftClient) -> None:
        self._client = client

    def upload(self, path: str | Path, *, name: str | None = None) -> Dataset:
        """Upload a .jsonl or .csv file (streamed from disk); returns it with its summary."""
        return self._client.request(_calls.upload_dataset(path, name))

    def create(self, records: Sequence[Mapping[str, Any]], *, name: str | None = None) -> Dataset:
        """Upload rows (``{"text", "text_pair"?, "label"}``) as JSON."""
        return self._client.request(_calls.create_dataset(records, name))

    def retrieve(self, dataset_id: str) -> Dataset:
        """One dataset."""
        return self._client.request(_calls.get_dataset(dataset_id))

    def delete(self, dataset_id: str) -> None:
        """Delete a dataset (refused while an unfinished job will read it)."""
        self._client.request(_calls.delete_dataset(dataset_id))

    def list(self, *, limit: int = 20, after: str | None = None) -> SyncPager[Dataset]:
        """Every dataset, newest first, fetched ``limit`` a page."""
        return SyncPager(
            lambda cursor: self._client.request(_calls.list_datasets(cursor, limit)), after
        )


class Jobs:
    """``client.jobs``: create, follow, cancel and fetch the results of jobs."""

    def __init__(self, client: LpftClient) -> None:
        self._client = client

    def create(
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
        """Create and queue a job from dataset ids. ``method`` is for finetune jobs;
        ``options`` are the other kinds' fields (``methods``, ``ntk_samples``, ``analyses``,
        ``source_job``) and ``seeds``. Retried safely: every call carries an
        ``Idempotency-Key`` (``idempotency_key``, else a new one)."""
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
        return self._client.request(call)

    def retrieve(self, job_id: str) -> Job:
        """One job."""
        return self._client.request(_calls.get_job(job_id))

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop (a queued one at once, a running one within a step)."""
        return self._client.request(_calls.cancel_job(job_id))

    def delete(self, job_id: str) -> None:
        """Delete a finished job and everything it made."""
        self._client.request(_calls.delete_job(job_id))

    def logs(self, job_id: str, *, limit: int = 100) -> JobLog:
        """The last ``limit`` (at most 1,000) records of the job's own log."""
        return self._client.request(_calls.job_logs(job_id, limit))

    def metrics(self, job_id: str) -> Metrics:
        """The job's metrics: by kind once it succeeded, ``LiveMetrics`` until then."""
        return self._client.request(_calls.job_metrics(job_id))

    def report(self, job_id: str, format: Literal["html", "md"] = "html") -> str:
        """The job's report: HTML with its pictures embedded, or markdown."""
        return self._client.request(_calls.job_report(job_id, format))

    def recalibrate(self, job_id: str, dataset: str) -> Job:
        """Queue a ``recalibrate`` job: a new temperature for a finished job's model, fitted
        on an uploaded dataset; its metrics hold the result."""
        return self._client.request(_calls.recalibrate(job_id, dataset))

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
        """Stream an artifact to ``path``: ``model`` (the model directory, ``.tar.gz``),
        ``report`` (``format`` html or md) or ``export`` (``format`` onnx or hf, ``.tar.gz``).
        The body goes to disk as it arrives, never whole into memory."""
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
        budget = self._client.options.reconnect_for if reconnect_for is None else reconnect_for
        state = ResumableStream(job_id, after, budget)
        while True:
            try:
                yield from self._stream_once(state)
                if state.finished or self.retrieve(job_id).is_terminal:
                    return
                raise StreamFailure("the stream ended before the job did")
            except (StreamFailure, LpftConnectionError, httpx.TransportError) as failure:
                time.sleep(state.retry_delay(failure))

    def _stream_once(self, state: ResumableStream) -> Iterator[Event]:
        call = _calls.events_stream(state.job_id)
        http, headers = self._client.http, {**self._client.options.headers, **state.headers()}
        with call.request(http, headers) as request:
            response = http.send(request, stream=True)
        try:
            if response.is_error:
                response.read()
                state.check(response)
                raise_for_problem(response)
            for sse in EventSource(response).iter_sse():
                if (event := state.accept(sse)) is not None:
                    yield event
        finally:
            response.close()

    def list(
        self, *, status: str | None = None, limit: int = 20, after: str | None = None
    ) -> SyncPager[Job]:
        """Every job (of ``status``), newest first, fetched ``limit`` a page."""
        return SyncPager(
            lambda cursor: self._client.request(_calls.list_jobs(status, cursor, limit)), after
        )

    def list_events(
        self, job_id: str, *, limit: int = 100, after: str | None = None
    ) -> SyncPager[Event]:
        """The job's event log so far, in order, fetched ``limit`` a page."""
        return SyncPager(
            lambda cursor: self._client.request(_calls.job_events(job_id, cursor, limit)), after
        )
