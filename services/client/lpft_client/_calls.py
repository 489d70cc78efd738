"""Every API operation as data: the request to send and how to read its answer. The sync
and async clients send the same ``Call``s, and their public methods are these functions
(``_resources.operation``), so the two differ only in how they wait. Each function's
signature and docstring are its method's."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from lpft_client._errors import LpftApiError
from lpft_client._retry import IDEMPOTENT_METHODS
from lpft_client.types import (
    METRICS,
    CursorPage,
    Dataset,
    Event,
    Job,
    JobLog,
    Metrics,
    Predictions,
    TrialPage,
)

Result = TypeVar("Result")
Model = TypeVar("Model", bound=BaseModel)

#: What ``jobs.download`` fetches: the model directory, the report, or the runtime export.
Download = Literal["model", "report", "export"]
_DOWNLOAD_PATHS: dict[str, str] = {"model": "artifacts", "report": "report", "export": "export"}
#: Longest silence on an open event stream before it counts as dead; the server sends a
#: keep-alive comment every LPFT_EVENT_STREAM_KEEPALIVE_SECONDS (15 by default) while
#: nothing happens.
STREAM_READ_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


def raise_for_problem(response: httpx.Response) -> None:
    """Raise ``LpftApiError`` with the problem+json body for an error status (the body must
    have been read)."""
    if response.status_code < 400:
        return
    try:
        problem = response.json()
    except ValueError:
        problem = {"detail": response.text}
    raise LpftApiError(response.status_code, problem if isinstance(problem, dict) else {})


def _model(kind: type[Model]) -> Callable[[httpx.Response], Model]:
    def parse(response: httpx.Response) -> Model:
        raise_for_problem(response)
        return kind.model_validate_json(response.content)

    return parse


def _adapted(adapter: TypeAdapter[Result]) -> Callable[[httpx.Response], Result]:
    def parse(response: httpx.Response) -> Result:
        raise_for_problem(response)
        return adapter.validate_json(response.content)

    return parse


def _text(response: httpx.Response) -> str:
    raise_for_problem(response)
    return response.text


def _nothing(response: httpx.Response) -> None:
    raise_for_problem(response)


@dataclass(frozen=True)
class Call(Generic[Result]):
    """One request and the parser of its answer. ``upload`` is a file sent as the multipart
    part ``file``; it is opened anew for every try."""

    method: str
    path: str
    parse: Callable[[httpx.Response], Result] = _nothing  # type: ignore[assignment]
    params: Mapping[str, Any] | None = None
    json: Any = None
    data: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    upload: Path | None = None
    timeout: httpx.Timeout | None = None
    #: A POST that changes nothing twice (cancel, predict), so it may be sent again.
    safe_to_repeat: bool = False
    #: A download of an archive the server builds first: a 202 is asked again after its
    #: ``Retry-After``, for up to ``_retry.BUILD_WAIT_S``.
    waits_for_build: bool = False

    @property
    def repeatable(self) -> bool:
        """Whether sending the request twice has the effect of sending it once: an
        idempotent method, a POST safe by nature, or one carrying an ``Idempotency-Key``
        (the server answers a repeat with the first result)."""
        return (
            self.safe_to_repeat
            or self.method in IDEMPOTENT_METHODS
            or "Idempotency-Key" in self.headers
        )

    @contextlib.contextmanager
    def request(
        self, http: httpx.Client | httpx.AsyncClient, headers: Mapping[str, str]
    ) -> Iterator[httpx.Request]:
        """The request on ``http``, with ``headers`` (authentication) added; an upload's
        file stays open until the block ends."""
        options: dict[str, Any] = {
            "params": self.params,
            "json": self.json,
            "data": self.data,
            "headers": {**headers, **self.headers},
        }
        if self.timeout is not None:
            options["timeout"] = self.timeout
        if self.upload is None:
            yield http.build_request(self.method, self.path, **options)
            return
        with self.upload.open("rb") as handle:
            files = {"file": (self.upload.name, handle)}
            yield http.build_request(self.method, self.path, files=files, **options)


@dataclass(frozen=True)
class Listing(Generic[Result]):
    """A paginated list: the call of the page after a cursor, and where the first starts."""

    page: Callable[[str | None], Call[CursorPage[Result]]]
    after: str | None


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _listing(path: str, item: Any, limit: int, after: str | None, **filters: Any) -> Listing[Any]:
    """The cursor-paged list at ``path`` of ``item`` (a model, or a union such as ``Event``):
    a GET of ``limit`` items after each page's cursor, with ``filters`` (those not None) as
    query parameters."""

    def page(cursor: str | None) -> Call[CursorPage[Any]]:
        params = _without_none({**filters, "after": cursor, "limit": limit})
        return Call("GET", path, _model(CursorPage[item]), params=params)

    return Listing(page, after)


# ---- datasets -----------------------------------------------------------------------------


def upload_dataset(path: str | Path, *, name: str | None = None) -> Call[Dataset]:
    """Upload a .jsonl or .csv file (streamed from disk); returns it with its summary."""
    data = {"name": name} if name else None
    return Call("POST", "/datasets", _model(Dataset), data=data, upload=Path(path))


def create_dataset(
    records: Sequence[Mapping[str, Any]], *, name: str | None = None
) -> Call[Dataset]:
    """Upload rows (``{"text", "text_pair"?, "label"}``) as JSON."""
    body = _without_none({"records": list(records), "name": name})
    return Call("POST", "/datasets", _model(Dataset), json=body)


def list_datasets(*, limit: int = 20, after: str | None = None) -> Listing[Dataset]:
    """Every dataset, newest first, fetched ``limit`` a page."""
    return _listing("/datasets", Dataset, limit, after)


def get_dataset(dataset_id: str) -> Call[Dataset]:
    """One dataset."""
    return Call("GET", f"/datasets/{dataset_id}", _model(Dataset))


def delete_dataset(dataset_id: str) -> Call[None]:
    """Delete a dataset (refused while an unfinished job will read it)."""
    return Call("DELETE", f"/datasets/{dataset_id}")


# ---- jobs ---------------------------------------------------------------------------------


def create_job(
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
) -> Call[Job]:
    """Create and queue a job from dataset ids. ``method`` is for finetune jobs;
    ``options`` are the other kinds' fields (``methods``, ``ntk_samples``, ``analyses``,
    ``source_job``), ``seeds`` and ``integrations`` (``[{"type": "mlflow", "mlflow":
    {"experiment": ..., "register_as": ...}}]``; ``Job.integrations`` shows each). Retried
    safely: every call carries an ``Idempotency-Key`` (``idempotency_key``, else a new one),
    so that a retry after a lost answer returns the job the first try made instead of a
    second job."""
    body = _without_none(
        {
            "kind": kind,
            "method": method,
            "dataset": _without_none({"train": train, "validation": validation, "test": test}),
            "model": model,
            "hyperparameters": dict(hyperparameters) if hyperparameters else None,
            "seed": seed,
            "eval_sets": dict(eval_sets) if eval_sets else None,
            **options,
        }
    )
    key = idempotency_key or f"lpft-client-{uuid.uuid4()}"
    return Call("POST", "/jobs", _model(Job), json=body, headers={"Idempotency-Key": key})


def list_jobs(
    *,
    status: str | None = None,
    sweep: str | None = None,
    limit: int = 20,
    after: str | None = None,
) -> Listing[Job]:
    """Every job (of ``status``), newest first, fetched ``limit`` a page: a sweep's trials
    are left out, or with ``sweep`` (a sweep's id) listed alone."""
    return _listing("/jobs", Job, limit, after, status=status, sweep=sweep)


def sweep_trials(job_id: str, *, after: int | None = None, limit: int = 100) -> Call[TrialPage]:
    """A page of a sweep's trials in number order, after trial number ``after``."""
    params = _without_none({"after": after, "limit": limit})
    return Call("GET", f"/jobs/{job_id}/trials", _model(TrialPage), params=params)


def get_job(job_id: str) -> Call[Job]:
    """One job."""
    return Call("GET", f"/jobs/{job_id}", _model(Job))


def cancel_job(job_id: str) -> Call[Job]:
    """Ask a job to stop (a queued one at once, a running one within a step)."""
    return Call("POST", f"/jobs/{job_id}/cancel", _model(Job), safe_to_repeat=True)


def delete_job(job_id: str) -> Call[None]:
    """Delete a finished job and everything it made."""
    return Call("DELETE", f"/jobs/{job_id}")


def job_metrics(job_id: str) -> Call[Metrics]:
    """The job's metrics: by kind once it succeeded, ``LiveMetrics`` until then."""
    return Call("GET", f"/jobs/{job_id}/metrics", _adapted(METRICS))


def job_events(job_id: str, *, limit: int = 100, after: str | None = None) -> Listing[Event]:
    """The job's event log so far, in order, fetched ``limit`` a page (JSON pages, not the
    live stream)."""
    return _listing(f"/jobs/{job_id}/events", Event, limit, after)


def job_logs(job_id: str, *, limit: int = 100) -> Call[JobLog]:
    """The last ``limit`` (at most 1,000) records of the job's own log."""
    return Call("GET", f"/jobs/{job_id}/logs", _model(JobLog), params={"limit": limit})


def job_report(job_id: str, format: Literal["html", "md"] = "html") -> Call[str]:
    """The job's report: HTML with its pictures embedded, or markdown."""
    return Call("GET", f"/jobs/{job_id}/report", _text, params={"format": format})


def recalibrate(job_id: str, dataset: str) -> Call[Job]:
    """Queue a ``recalibrate`` job: a new temperature for a finished job's model, fitted
    on an uploaded dataset; its metrics hold the result. Not retried after it may have been
    received, since the API has no idempotency key for it."""
    return Call("POST", f"/jobs/{job_id}/recalibrate", _model(Job), json={"dataset": dataset})


def download(job_id: str, what: Download, format: str | None) -> Call[None]:
    """``GET`` of an artifact; the client streams the body to disk. An archive the server
    is still building (202) is asked for again until it is there."""
    if what not in _DOWNLOAD_PATHS:
        raise ValueError(f"what must be one of {sorted(_DOWNLOAD_PATHS)}, not {what!r}")
    params = {"format": format} if format else None
    path = f"/jobs/{job_id}/{_DOWNLOAD_PATHS[what]}"
    return Call("GET", path, params=params, waits_for_build=what != "report")


def events_stream(job_id: str) -> Call[None]:
    """``GET /jobs/{id}/events`` as Server-Sent Events (the client adds ``Last-Event-ID``)."""
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
    return Call("GET", f"/jobs/{job_id}/events", headers=headers, timeout=STREAM_READ_TIMEOUT)


# ---- predictions --------------------------------------------------------------------------


def predict(
    job_id: str,
    inputs: Sequence[str | Mapping[str, str]],
    *,
    calibrated: bool = True,
    conformal: Mapping[str, Any] | None = None,
    min_confidence: float | None = None,
) -> Call[Predictions]:
    """Labels and (calibrated) probabilities for ``inputs``: texts, or
    ``{"text", "text_pair"?}`` objects. It changes nothing, so a retry is harmless."""
    body = _without_none(
        {
            "job_id": job_id,
            "inputs": [{"text": i} if isinstance(i, str) else dict(i) for i in inputs],
            "calibrated": calibrated,
            "conformal": dict(conformal) if conformal else None,
            "min_confidence": min_confidence,
        }
    )
    return Call("POST", "/predict", _model(Predictions), json=body, safe_to_repeat=True)
