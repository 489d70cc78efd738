"""Structured logs: one JSON object per line, carrying the ids of what it is about.

The ids live in context variables, so every record logged meanwhile carries them, ours and
the libraries' alike: the API's request gate sets ``request_id`` and ``tenant``, the worker's
task and the training process set ``job_id`` and ``tenant``, and a failure sets ``error_id``
(the id its problem document or job error quotes). One grep then follows a request through
the API, or a job through its worker and training process.

A job's own records also go to ``<job dir>/log.jsonl`` (``GET /jobs/{id}/logs``): appended
across resumes by the worker and the training process, and capped at ``JOB_LOG_MAX_BYTES``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TextIO

#: The job log's file name in the job's directory.
JOB_LOG = "log.jsonl"
#: Where a job log stops growing: a job logs tens of records, so only a runaway loop reaches
#: it; its later records are then dropped, after one record that says so.
JOB_LOG_MAX_BYTES = 5 * 1024 * 1024

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
tenant: ContextVar[str | None] = ContextVar("tenant", default=None)
job_id: ContextVar[str | None] = ContextVar("job_id", default=None)
error_id: ContextVar[str | None] = ContextVar("error_id", default=None)
_CONTEXT = {"request_id": request_id, "tenant": tenant, "job_id": job_id, "error_id": error_id}

#: A client's ``X-Request-ID`` is used as it is only when it is short and harmless in a header.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: What every ``LogRecord`` has; anything else on a record came from ``extra=`` and is kept.
#: ``color_message`` is uvicorn's coloured copy of the message.
_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "color_message"}


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-ID`` when it is sane (1 to 128 of ``A-Za-z0-9._:-``), else a
    new one: a header that goes into every log line and back out must not carry anything."""
    if header is not None and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def new_error_id() -> str:
    """A new error id, also set on the context, so that every later record of this failure
    (a traceback a server logs after the handler) carries it."""
    value = f"err-{uuid.uuid4().hex[:16]}"
    error_id.set(value)
    return value


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time, level, logger, message, the context's ids, the
    record's ``extra`` fields and, for an exception, its ``traceback`` unless
    ``tracebacks=False`` (a job's own log, which its tenant reads: a traceback shows the
    server's code and paths; the ``error_id`` leads the operator to it in the process log)."""

    def __init__(self, tracebacks: bool = True) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({name: var.get() for name, var in _CONTEXT.items() if var.get()})
        entry.update({k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES})
        if record.exc_info and self.tracebacks:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _JsonLines(logging.StreamHandler[TextIO]):
    """JSON lines to ``stream``, or to ``sys.stderr`` as it is at each record (test runners
    swap it; a handler holding an old one would write to a closed file)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream)
        self.follow_stderr = stream is None
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        if self.follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """Log every record of this process as a JSON line to ``stream`` (default stderr).

    The root logger gets one handler of ours, replacing the one an earlier call installed and
    keeping any other (a test runner's). Python's warnings and uvicorn's loggers hand their
    records up to it instead of printing text; uvicorn's access line is left out, since the
    request gate logs each request with its status and duration.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _JsonLines)]:
        root.removeHandler(handler)
    root.addHandler(_JsonLines(stream))
    root.setLevel(level)
    logging.captureWarnings(True)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def route_transformers_logs() -> None:
    """transformers prints its records as text on a handler of its own, and progress bars
    when it loads weights: hand its records to ours (JSON lines) and draw no bars. For the
    processes that load models (the API, the training process); imports transformers."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()
    transformers_logging.disable_progress_bar()


class JobLogFile(logging.Handler):
    """Appends the records logged while ``job_id`` is ``job`` to the job's log file.

    Each line is one ``write`` on an append-only descriptor, so the worker and its training
    process can share the file. Past ``max_bytes`` records are dropped, after one that says so.
    """

    def __init__(self, path: Path, job: str, max_bytes: int = JOB_LOG_MAX_BYTES) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.job, self.max_bytes, self.full = job, max_bytes, False
        self.setFormatter(JsonFormatter(tracebacks=False))

    def emit(self, record: logging.LogRecord) -> None:
        # lpft's own records only: the libraries' (warnings with their file paths, download
        # and cache notes) describe the server, not the job, and stay in the process log
        if job_id.get() != self.job or self.full or not record.name.startswith("lpft"):
            return
        try:
            line = (self.format(record) + "\n").encode()
            if os.fstat(self.fd).st_size + len(line) > self.max_bytes:
                self.full = True
                note = (
                    f"the job log reached its cap of {self.max_bytes} bytes; later records dropped"
                )
                cap = {"name": record.name, "levelname": "WARNING", "levelno": 30, "msg": note}
                line = (self.format(logging.makeLogRecord(cap)) + "\n").encode()
            os.write(self.fd, line)
        except Exception:  # noqa: BLE001 - logging must never stop a job
            self.handleError(record)

    def close(self) -> None:
        os.close(self.fd)
        super().close()


@contextlib.contextmanager
def job_logging(job_dir: Path, job: str, owner: str) -> Iterator[None]:
    """Within: every record carries ``job_id`` and ``tenant``, and goes to the job's log.
    An ``error_id`` set within ends with it (a worker runs many jobs)."""
    tokens = [
        (job_id, job_id.set(job)),
        (tenant, tenant.set(owner)),
        (error_id, error_id.set(None)),
    ]
    handler = JobLogFile(job_dir / JOB_LOG, job)
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        for var, token in reversed(tokens):
            var.reset(token)


def read_job_log(path: Path, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The last ``limit`` records of a job log, oldest first, and whether older ones exist.
    A line that is not a JSON object (a write cut short by a kill) is skipped."""
    if not path.is_file():
        return [], False
    records = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records[-limit:], len(records) > limit
