"""Writing a job's run to the deployment's MLflow tracking server, within a time budget.

Every call is retried with exponential backoff while the budget lasts, except the answers
that a retry cannot change (a bad value, a missing permission). MLflow's own HTTP retries
(seven by default, minutes in all) are turned off, and each request's timeout is cut to what
is left of the budget, so a server that is down or hangs costs at most the budget.

The run is found by its ``lpft.job_id`` tag before one is created, so a job logged again (a
run resumed on another worker, a create whose answer was lost) keeps one run.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from lpft_worker.tracking.content import RunContent

T = TypeVar("T")
#: First pause between tries; it doubles each time, with jitter, up to ``MAX_PAUSE_S``.
FIRST_PAUSE_S = 0.5
MAX_PAUSE_S = 8.0
#: The longest one HTTP request may wait for an answer.
REQUEST_TIMEOUT_S = 15.0
#: MLflow's errors that a retry cannot change.
FINAL_CODES = frozenset(
    {
        "INVALID_PARAMETER_VALUE",
        "BAD_REQUEST",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "RESOURCE_DOES_NOT_EXIST",
        "INVALID_STATE",
    }
)
#: MLflow's limits per log_batch call.
METRICS_PER_BATCH = 1000
PARAMS_PER_BATCH = 100


class TrackingFailed(Exception):
    """The run could not be written; the message says why, for the job's warning."""


@dataclass
class Budget:
    """The time left to the whole logging."""

    deadline: float

    @classmethod
    def of(cls, seconds: float) -> Budget:
        """A budget of ``seconds`` from now."""
        return cls(time.monotonic() + seconds)

    def left(self) -> float:
        """Seconds left (0 once spent)."""
        return max(0.0, self.deadline - time.monotonic())


class MlflowRun:
    """One job's run on the server at ``tracking_uri``, each call bounded by ``budget``."""

    def __init__(self, tracking_uri: str, budget: Budget) -> None:
        from mlflow.tracking import MlflowClient  # the [mlflow] extra, only where it is used

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.budget = budget

    def find_or_create(self, experiment: str, keys: dict[str, str], run_name: str) -> str:
        """The id of the run in ``experiment`` tagged with ``keys`` (both made if missing):
        ``{"lpft.job_id": id}`` for a job's run, a child's own tags for a child."""
        experiment_id = self._call(lambda: self._experiment_id(experiment), "find the experiment")
        query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in keys.items())
        found = self._call(
            lambda: self.client.search_runs([experiment_id], filter_string=query, max_results=1),
            "search for the job's run",
        )
        if found:
            return found[0].info.run_id
        run = self._call(
            lambda: self.client.create_run(experiment_id, run_name=run_name, tags=keys),
            "create the run",
        )
        return run.info.run_id

    def write(self, run_id: str, content: RunContent) -> None:
        """Log ``content`` into the run, params and tags first, then metrics, then files."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        tags = [RunTag(k, v) for k, v in content.tags.items()]
        params = [Param(k, v) for k, v in content.params.items()]
        for chunk in _chunks([*tags, *params], PARAMS_PER_BATCH):
            batch_tags = [e for e in chunk if isinstance(e, RunTag)]
            batch_params = [e for e in chunk if isinstance(e, Param)]
            self._call(
                lambda t=batch_tags, p=batch_params: self.client.log_batch(
                    run_id, params=p, tags=t
                ),
                "log params and tags",
            )
        metrics = [Metric(p.key, p.value, now, p.step) for p in content.metrics]
        for chunk in _chunks(metrics, METRICS_PER_BATCH):
            self._call(lambda c=chunk: self.client.log_batch(run_id, metrics=c), "log metrics")
        for path, folder in content.artifacts.items():
            self._call(
                lambda p=path, f=folder: self.client.log_artifact(run_id, str(p), f or None),
                f"upload {path.name}",
            )

    def register(
        self,
        run_id: str,
        build: Callable[[], Path],
        folder: str,
        name: str,
        keys: dict[str, str],
    ) -> str:
        """The version of the registered model ``name`` tagged with ``keys``; when there is
        none, the model ``build()`` writes is uploaded into the run's ``folder`` and made a
        new version (the model too, the first time). Found before it is made, like runs, so
        that a job logged again adds no second version."""
        query = " and ".join(
            [f"name = '{name}'", *(f"tags.`{k}` = '{v}'" for k, v in keys.items())]
        )
        found = self._call(
            lambda: self.client.search_model_versions(query, max_results=1),
            "search for the model version",
        )
        if found:
            return str(found[0].version)
        self.upload(run_id, build(), folder)
        self._call(lambda: self._registered_model(name), "create the registered model")
        version = self._call(
            lambda: self.client.create_model_version(
                name, f"runs:/{run_id}/{folder}", run_id=run_id, tags=keys
            ),
            "register the model version",
        )
        return str(version.version)

    def upload(self, run_id: str, local: Path, folder: str) -> None:
        """Upload the directory ``local`` into the run's ``folder`` (a model: its files)."""
        self._call(
            lambda: self.client.log_artifacts(run_id, str(local), folder), "upload the model"
        )

    def next_step(self, run_id: str, key: str) -> int:
        """The step after the metric's last one (0 for a new metric)."""
        history = self._call(lambda: self.client.get_metric_history(run_id, key), "read " + key)
        return max((m.step for m in history), default=-1) + 1

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """End the run with MLflow's ``status`` (``FINISHED``, ``FAILED`` or ``KILLED``)."""
        self._call(lambda: self.client.set_terminated(run_id, status), "end the run")

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException as exc:  # made meanwhile by another job
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    def _registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:  # the tenant's earlier jobs made it
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _call(self, call: Callable[[], T], what: str) -> T:
        """``call``, retried with backoff while the budget lasts."""
        from mlflow.exceptions import MlflowException

        pause = FIRST_PAUSE_S
        while True:
            with _request_timeout(min(REQUEST_TIMEOUT_S, max(1.0, self.budget.left()))):
                try:
                    return call()
                except MlflowException as exc:
                    if exc.error_code in FINAL_CODES:
                        raise TrackingFailed(f"could not {what}: {_first_line(exc)}") from exc
                    error: Exception = exc
                except OSError as exc:  # a refused or reset connection under the client
                    error = exc
            wait = min(pause, MAX_PAUSE_S) * random.uniform(0.8, 1.2)
            if self.budget.left() <= wait:
                raise TrackingFailed(
                    f"could not {what} within the time allowed "
                    f"(LPFT_MLFLOW_TIMEOUT_SECONDS): {_first_line(error)}"
                ) from error
            time.sleep(wait)
            pause *= 2


@contextlib.contextmanager
def _request_timeout(seconds: float) -> Iterator[None]:
    """MLflow reads its HTTP settings from the environment at each request: no retries of
    its own (``_call`` retries within the budget), and at most ``seconds`` a request."""
    names = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(seconds))),
    }
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
