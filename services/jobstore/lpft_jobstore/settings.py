"""Service settings, read from ``LPFT_*`` environment variables (and an optional ``.env``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by the API and the workers.

    Every field is read from ``LPFT_<NAME>``, e.g. ``LPFT_REDIS_URL``.
    """

    model_config = SettingsConfigDict(env_prefix="LPFT_", env_file=".env", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="job store and broker")
    artifacts_dir: Path = Field(Path("runs/service"), description="models, datasets, records")
    api_port: int = Field(8000, description="port of the HTTP API")
    api_host: str = Field("0.0.0.0", description="interface of the HTTP API (not in open mode)")
    api_keys: str = Field(
        "", description="comma-separated tenant:key pairs; empty (and no file) = open mode"
    )
    api_keys_file: Path | None = Field(None, description="a file of tenant:key lines")
    max_upload_bytes: int = Field(50 * 1024 * 1024, description="largest dataset upload")
    max_text_chars: int = Field(20_000, description="longest accepted text in a dataset")
    auto_queue: str = Field("cpu", description="queue for jobs with device 'auto'")
    lease_seconds: float = Field(
        30.0, description="a running job without heartbeat this long is lost"
    )
    heartbeat_seconds: float = Field(5.0, description="how often a worker renews its job lease")
    worker_beat_seconds: float = Field(
        5.0, description="how often each worker writes its heartbeat record (also while training)"
    )
    worker_stale_seconds: float = Field(
        30.0,
        description="a worker whose last heartbeat is older is stale in /metrics and fails its "
        "container's health check (python -m lpft_worker.health)",
    )
    worker_queue: str = Field(
        "", description="the queue a worker container consumes; its health check looks for it"
    )
    metrics_public: bool = Field(
        True,
        description="serve GET /metrics without an API key, as Prometheus expects on the "
        "internal network; set false where the API port is reachable from outside (the scraper "
        "then sends a tenant's key as a bearer token)",
    )
    cancel_grace_seconds: float = Field(
        10.0, description="after a cancel, how long training may take to stop before it is killed"
    )
    visibility_timeout_seconds: int = Field(
        7 * 24 * 3600, description="Redis broker redelivery timeout; must exceed the longest job"
    )
    model_cache_size: int = Field(3, description="trained models kept loaded for /predict")
    predict_max_batch: int = Field(
        16,
        description="inputs per forward pass; a small request waits about two passes under "
        "load (16: 0.24 s p50 on 2 CPU cores, at the throughput of 64)",
    )
    predict_device: str = Field(
        "auto", description="device of /predict models (torch backend): auto, cpu, cuda"
    )
    predict_backend: Literal["torch", "onnx"] = Field(
        "torch",
        description="what runs /predict models: torch, or onnx (onnxruntime on the CPU; each "
        "model's graph is built into its directory on first use)",
    )
    predict_precision: Literal["fp32", "int8"] = Field(
        "fp32",
        description="onnx backend only: int8 quantises the graph's weights (faster; its "
        "accuracy, ECE and probability shift against fp32 are measured on the job's held-out "
        "rows and returned with every prediction)",
    )
    max_predict_inputs: int = Field(1024, description="inputs per /predict request")
    predict_concurrency_per_tenant: int = Field(
        4, description="/predict requests one tenant may have in flight (429 above)"
    )
    max_request_bytes: int = Field(
        1024 * 1024, description="largest body of any request but a dataset upload (413 above)"
    )
    max_dataset_rows: int = Field(1_000_000, description="rows per uploaded dataset")
    max_eval_sets: int = Field(8, description="extra evaluation sets per job")
    max_active_jobs_per_tenant: int = Field(
        8, description="queued and running jobs one tenant may have (429 above)"
    )
    max_datasets_per_tenant: int = Field(200, description="datasets one tenant may store")
    max_stored_bytes_per_tenant: int = Field(
        2 * 1024**3,
        description="bytes one tenant may store: its datasets and its finished jobs' files",
    )
    max_model_bytes: int = Field(
        2 * 1024**3,
        description="largest model a job may start from, as the files a job loads (its "
        "weights, config and tokenizer) measure on the hub or on disk",
    )
    allowed_models: str = Field(
        "",
        description="comma-separated globs of the hub ids jobs may name (sentence-transformers/*); "
        "empty: any",
    )
    max_event_streams_per_tenant: int = Field(
        8, description="live event streams (SSE) one tenant may hold open at once (429 above)"
    )
    event_stream_keepalive_seconds: float = Field(
        15.0,
        description="an idle event stream sends a comment this often (keep it under clients' "
        "and proxies' idle timeouts); a disconnect is noticed within a second, a client whose "
        "host resets the connection at the next comment",
        ge=1,
        le=30,
    )
    event_retention_seconds: int = Field(
        7 * 24 * 3600, description="how long a finished job's event stream stays in Redis"
    )
    lost_message_seconds: float = Field(
        30.0, description="a job queued this long with no message in the broker gets one again"
    )
    max_job_attempts: int = Field(
        3, description="runs of a job before a lost worker fails it (resumed from checkpoint)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="least level logged (JSON lines on stderr)"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    open_mode: bool = Field(
        False, description="serve without API keys (tenant 'default'); binds to 127.0.0.1"
    )
    models_dir: Path | None = Field(
        None, description="server-side directory whose models a job may name by path"
    )

    @model_validator(mode="after")
    def _serving_options_agree(self) -> Settings:
        """Refuse at start-up a serving set-up that would fail at the first /predict."""
        if self.predict_precision == "int8" and self.predict_backend != "onnx":
            raise ValueError("LPFT_PREDICT_PRECISION=int8 needs LPFT_PREDICT_BACKEND=onnx")
        if self.predict_backend == "onnx" and self.predict_device == "cuda":
            raise ValueError(
                "the onnx backend serves on the CPU; use LPFT_PREDICT_BACKEND=torch for cuda"
            )
        return self

    def tenant_keys(self) -> dict[str, str]:
        """API key → tenant, from ``api_keys`` and ``api_keys_file``."""
        lines = [part for part in self.api_keys.split(",") if part.strip()]
        if self.api_keys_file is not None:
            lines += [
                line
                for line in self.api_keys_file.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
        keys = {}
        for line in lines:
            tenant, sep, key = line.strip().partition(":")
            if not sep or not tenant or not key:
                raise ValueError(f"API key entry {line.strip()!r} is not of the form tenant:key")
            keys[key] = tenant
        return keys


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
