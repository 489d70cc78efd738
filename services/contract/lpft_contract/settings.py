"""The settings the API and the workers both read, from ``LPFT_*`` environment variables (and
an optional ``.env``).

Each process extends ``SharedSettings`` with its own: ``lpft_api.settings.ApiSettings`` and
``lpft_worker.settings.WorkerSettings``, each built once by a cached getter when the process
first needs it, never at import. A field lives here only when both processes read it, so that
neither process validates (and fails on) a variable only the other one uses. ``.env.example``
lists every variable of the three classes with its default and meaning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SharedSettings(BaseSettings):
    """Settings of both the API and the workers.

    Every field is read from ``LPFT_<NAME>``, e.g. ``LPFT_REDIS_URL``.
    """

    model_config = SettingsConfigDict(
        env_prefix="LPFT_", env_file=".env", extra="ignore", use_attribute_docstrings=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Job store and broker."""
    artifacts_dir: Path = Path("runs/service")
    """Models, datasets, records: the artifact store as a local directory, when LPFT_ARTIFACTS_URL
    is unset."""
    artifacts_url: str = ""
    """The artifact store every process shares: s3://bucket/prefix (credentials and endpoint from
    the standard AWS_* variables), file:///dir or a path; unset: LPFT_ARTIFACTS_DIR."""
    cache_dir: Path | None = None
    """With a bucket as the store, this process's local copy of what it reads and writes, which
    it may lose at any time; unset: $XDG_CACHE_HOME/lpft, else ~/.cache/lpft."""
    store_retry_seconds: float = Field(60.0, gt=0)
    """How long a call to an unreachable artifact store (refused, 5xx, SlowDown) is retried,
    with backoff and jitter, before it fails."""
    lease_seconds: float = 30.0
    """A running job without heartbeat this long is lost."""
    heartbeat_seconds: float = 5.0
    """How often a worker renews its job lease (and the API runs its recovery pass)."""
    worker_stale_seconds: float = 30.0
    """A worker whose last heartbeat is older is stale in /metrics and fails its container's health
    check (python -m lpft_worker.health)."""
    visibility_timeout_seconds: int = 7 * 24 * 3600
    """Redis broker redelivery timeout; must exceed the longest job."""
    event_retention_seconds: int = 7 * 24 * 3600
    """How long a finished job's event stream stays in Redis."""
    max_job_attempts: int = 3
    """Runs of a job before a lost worker fails it (resumed from checkpoint)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Least level logged (JSON lines on stderr)."""
    sweep_storage_url: str = ""
    """The database sweeps keep their Optuna studies in, as an SQLAlchemy URL
    (postgresql+psycopg://user:password@host/db; both images need the postgres extra); unset:
    Optuna's journal storage on LPFT_REDIS_URL."""
    mlflow_tracking_uri: str = ""
    """The deployment's MLflow tracking server (http://host:5000); its credentials come from
    MLflow's own MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD. Unset: jobs asking
    for the mlflow integration are refused (422)."""

    @property
    def local_cache(self) -> Path:
        """``cache_dir``, or the user's cache directory."""
        if self.cache_dir is not None:
            return self.cache_dir
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "lpft"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
