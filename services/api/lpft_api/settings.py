"""The API's settings: the shared ones and those only the API reads."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from lpft_contract.settings import SharedSettings
from pydantic import Field, model_validator


class ApiSettings(SharedSettings):
    """The API's settings, read from ``LPFT_<NAME>`` like the shared ones."""

    api_port: int = 8000
    """Port of the HTTP API."""
    api_host: str = "0.0.0.0"
    """Interface of the HTTP API (not in open mode)."""
    api_keys: str = ""
    """Comma-separated tenant:key pairs; with none (and no file) the API starts only in open
    mode."""
    api_keys_file: Path | None = None
    """A file of tenant:key lines."""
    open_mode: bool = False
    """Serve without API keys (tenant 'default'); binds to 127.0.0.1."""
    metrics_public: bool = True
    """Serve GET /metrics without an API key, as Prometheus expects on the internal network; set
    false where the API port is reachable from outside (the scraper then sends a tenant's key as a
    bearer token)."""
    auto_queue: str = "cpu"
    """Queue for jobs with device 'auto'."""
    lost_message_seconds: float = 30.0
    """A job queued this long with no message in the broker gets one again."""
    models_dir: Path | None = None
    """Server-side directory whose models a job may name by path."""
    allowed_models: str = ""
    """Comma-separated globs of the hub ids jobs may name (sentence-transformers/*); empty: any."""
    max_model_bytes: int = 2 * 1024**3
    """Largest model a job may start from, as the files a job loads (its weights, config and
    tokenizer) measure on the hub or on disk."""
    max_upload_bytes: int = 50 * 1024 * 1024
    """Largest dataset upload."""
    max_request_bytes: int = 1024 * 1024
    """Largest body of any request but a dataset upload (413 above)."""
    max_text_chars: int = 20_000
    """Longest accepted text in a dataset."""
    max_dataset_rows: int = 1_000_000
    """Rows per uploaded dataset."""
    max_eval_sets: int = 8
    """Extra evaluation sets per job."""
    max_active_jobs_per_tenant: int = 8
    """Queued and running jobs one tenant may have (429 above)."""
    max_trials: int = Field(50, ge=1, le=1000)
    """Trials one sweep job may run (``n_trials``); its running trials count among the
    tenant's unfinished jobs, so ``parallelism`` stays below ``max_active_jobs_per_tenant``."""
    max_datasets_per_tenant: int = 200
    """Datasets one tenant may store."""
    max_stored_bytes_per_tenant: int = 2 * 1024**3
    """Bytes one tenant may store: its datasets and its finished jobs' files."""
    max_event_streams_per_tenant: int = 8
    """Live event streams (SSE) one tenant may hold open at once (429 above)."""
    event_stream_keepalive_seconds: float = Field(15.0, ge=1, le=30)
    """An idle event stream sends a comment this often (keep it under clients' and proxies' idle
    timeouts); a disconnect is noticed within a second, a client whose host resets the connection at
    the next comment."""
    model_cache_size: int = 3
    """Trained models kept loaded for /predict."""
    predict_max_batch: int = 16
    """Inputs per forward pass; a small request waits about two passes under load (16: 0.24 s p50 on
    2 CPU cores, at the throughput of 64)."""
    predict_device: str = "auto"
    """Device of /predict models (torch backend): auto, cpu, cuda."""
    predict_backend: Literal["auto", "torch", "onnx"] = "auto"
    """What runs /predict models: auto (onnxruntime on the CPU where it imports, else torch, and
    torch on a CUDA GPU; the choice and any fallback are said in /readyz and the log), torch, or
    onnx (each model's graph is built into its directory on first use)."""
    predict_threads: int | None = Field(None, ge=1)
    """Intra-op threads of torch and onnxruntime for /predict; unset: the CPUs this process may
    use (its affinity and its cgroup's CPU quota), not the host's cores."""
    predict_precision: Literal["fp32", "int8"] = "fp32"
    """With the onnx backend only: int8 quantises the graph's weights (faster; its accuracy, ECE and
    probability shift against fp32 are measured on the job's held-out rows and returned with every
    prediction)."""
    max_predict_inputs: int = 1024
    """Inputs per /predict request."""
    predict_max_in_flight_per_tenant: int = Field(256, ge=1)
    """/predict requests one tenant may have in flight per API process (429 above), against
    abuse only: passes are shared fairly by tenant whatever this is, and 256 lets 8x the 32
    clients of a busy application in while bounding the bodies one tenant holds to 256 MiB."""

    @model_validator(mode="after")
    def _serving_options_agree(self) -> ApiSettings:
        """Refuse at start-up a serving set-up that would fail at the first /predict."""
        if self.predict_precision == "int8" and self.predict_backend == "torch":
            raise ValueError("LPFT_PREDICT_PRECISION=int8 needs LPFT_PREDICT_BACKEND=onnx or auto")
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


@functools.cache
def get_api_settings() -> ApiSettings:
    """The API process's settings, read once, when the app is first created."""
    return ApiSettings()
