"""``LpftClient``: the lpft HTTP API from Python."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


class LpftApiError(Exception):
    """The API answered with an error; ``problem`` is its RFC 9457 body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('code', '')}: {problem.get('detail', problem)}")
        self.status = status
        self.problem = problem


class LpftClient:
    """A client for one lpft API.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``Authorization: Bearer <key>``; ``None`` for an open server.
        timeout: seconds per request (streams wait indefinitely between events).
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> LpftClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upload_dataset(self, path: str | Path) -> dict[str, Any]:
        """Upload a .jsonl or .csv file; returns the dataset with its summary."""
        path = Path(path)
        with path.open("rb") as handle:
            return self._send("POST", "/datasets", files={"file": (path.name, handle)})

    def create_job(
        self,
        method: str | None,
        train: str,
        validation: str | None = None,
        test: str | None = None,
        model: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        seed: int = 0,
        idempotency_key: str | None = None,
        *,
        kind: str = "finetune",
        eval_sets: dict[str, str] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Create a job from dataset ids; returns the queued job. ``method`` is for finetune
        jobs; ``options`` are the other kinds' fields (``methods``, ``ntk_samples``,
        ``analyses``, ``source_job``)."""
        body = {
            "kind": kind,
            "dataset": {"train": train, "validation": validation, "test": test},
            "model": model,
            "hyperparameters": hyperparameters or {},
            "seed": seed,
            "eval_sets": eval_sets or {},
            **({"method": method} if method else {}),
            **options,
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._send("POST", "/jobs", json=body, headers=headers)

    def get_job(self, job_id: str) -> dict[str, Any]:
        """One job."""
        return self._send("GET", f"/jobs/{job_id}")

    def list_jobs(
        self, status: str | None = None, limit: int = 20, after: str | None = None
    ) -> dict[str, Any]:
        """A page of jobs, newest first."""
        params = {k: v for k, v in {"status": status, "limit": limit, "after": after}.items() if v}
        return self._send("GET", "/jobs", params=params)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Ask a job to stop."""
        return self._send("POST", f"/jobs/{job_id}/cancel")

    def metrics(self, job_id: str) -> dict[str, Any]:
        """The job's metrics (partial while it runs)."""
        return self._send("GET", f"/jobs/{job_id}/metrics")

    def events(self, job_id: str, after: str | None = None, limit: int = 100) -> dict[str, Any]:
        """A page of the job's events."""
        params = {"limit": limit, **({"after": after} if after else {})}
        return self._send("GET", f"/jobs/{job_id}/events", params=params)

    def stream_events(self, job_id: str, after: str | None = None) -> Iterator[dict[str, Any]]:
        """The job's events live (Server-Sent Events) until it finishes."""
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": after} if after else {})}
        with self.http.stream(
            "GET", f"/jobs/{job_id}/events", headers=headers, timeout=httpx.Timeout(None)
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise LpftApiError(response.status_code, response.json())
            for line in response.iter_lines():
                if line.startswith("data: "):
                    yield json.loads(line[len("data: ") :])

    def wait(self, job_id: str, poll_s: float = 1.0, timeout_s: float = 3600) -> dict[str, Any]:
        """Poll until the job is succeeded, failed or cancelled; returns the job."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get_job(job_id)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s} s")
            time.sleep(poll_s)

    def predict(
        self, job_id: str, inputs: list[dict[str, str]], calibrated: bool = True
    ) -> dict[str, Any]:
        """Labels and (calibrated) probabilities for ``inputs`` of ``{text, text_pair?}``."""
        body = {"job_id": job_id, "inputs": inputs, "calibrated": calibrated}
        return self._send("POST", "/predict", json=body)

    def report(self, job_id: str, format: str = "html") -> str:
        """The job's report: HTML with embedded pictures, or markdown (``format="md"``)."""
        response = self.http.get(f"/jobs/{job_id}/report", params={"format": format})
        if response.status_code >= 400:
            raise LpftApiError(response.status_code, response.json())
        return response.text

    def recalibrate(self, job_id: str, dataset: str) -> dict[str, Any]:
        """Queue a ``recalibrate`` job: a new temperature for a finished job's model, fitted
        on an uploaded dataset. Returns that job; its metrics hold the result."""
        return self._send("POST", f"/jobs/{job_id}/recalibrate", json={"dataset": dataset})

    def download_artifacts(self, job_id: str, path: str | Path) -> Path:
        """Save the model directory archive (``.tar.gz``) to ``path``."""
        response = self.http.get(f"/jobs/{job_id}/artifacts")
        if response.status_code >= 400:
            raise LpftApiError(response.status_code, response.json())
        Path(path).write_bytes(response.content)
        return Path(path)

    def _send(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, url, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text}
            raise LpftApiError(response.status_code, problem)
        return response.json()
