"""Serving trained models: each loaded once per process and kept in an LRU cache, with the
calibration re-read when another process re-fitted it; ``batcher`` feeds each one."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from lpft_contract.logs import route_transformers_logs

from lpft_api.batcher import BatchedModel, TorchThread
from lpft_api.settings import ApiSettings
from lpft_core import Backend, Precision, Predictor, choose_backend, usable_cpus

logger = logging.getLogger("lpft.api")


@dataclass(frozen=True)
class Serving:
    """What runs this process's /predict passes, chosen once at start-up (``serving_choice``)."""

    backend: Backend
    device: str
    threads: int
    #: why this backend: asked for, a CUDA GPU, or the fallback's cause
    reason: str

    def describe(self) -> str:
        """One line for /readyz and the log."""
        return f"{self.backend} on {self.device}, {self.threads} intra-op threads ({self.reason})"


def serving_choice(settings: ApiSettings) -> Serving:
    """The backend ``LPFT_PREDICT_BACKEND`` resolves to here and the intra-op threads
    (``LPFT_PREDICT_THREADS``, else the CPUs the process may use), logged; a fallback from
    ONNX Runtime to torch is a warning.

    Raises:
        RuntimeError: int8 was asked for and the backend is not onnx.
    """
    choice = choose_backend(settings.predict_backend, settings.predict_device)
    if settings.predict_precision == "int8" and choice.backend != "onnx":
        raise RuntimeError(
            f"LPFT_PREDICT_PRECISION=int8 needs the onnx backend; this process serves with "
            f"{choice.backend} ({choice.reason})"
        )
    threads = settings.predict_threads or usable_cpus()
    serving = Serving(choice.backend, choice.device, threads, choice.reason)
    (logger.warning if choice.fallback else logger.info)(
        "/predict is served by %s", serving.describe()
    )
    return serving


class ModelCache:
    """Up to ``capacity`` loaded models, least recently used evicted first."""

    def __init__(
        self,
        capacity: int,
        max_batch: int,
        device: str,
        backend: Backend = "torch",
        precision: Precision = "fp32",
        data_root: Path | None = None,
        threads: int | None = None,
    ) -> None:
        route_transformers_logs()  # loading a model must not print text into the JSON log
        #: intra-op threads of every model's passes (torch's are the process's), ``None``:
        #: each runtime's own default
        self.threads = threads
        if threads is not None:
            torch.set_num_threads(threads)
        self.torch_thread = TorchThread()
        #: loads models beside the torch thread, so that a load (with the onnx backend, a
        #: graph export of tens of seconds on first use) never holds up the passes of models
        #: already loaded; the two share the cores meanwhile
        self.loader = TorchThread()
        self.capacity = capacity
        self.max_batch = max_batch
        self.device = device
        self.backend = backend
        self.precision = precision
        #: this process's copy of the artifact store, where a model's spec paths are found
        self.data_root = data_root
        self.models: OrderedDict[str, BatchedModel] = OrderedDict()
        self.loading: dict[str, asyncio.Lock] = {}

    def close(self) -> None:
        """Stop the threads (work not yet started is dropped)."""
        self.torch_thread.close()
        self.loader.close()

    async def get(self, job_id: str, directory: Path) -> BatchedModel:
        """The model of ``job_id``, loaded from ``directory`` on first use."""
        if job_id in self.models:
            self.models.move_to_end(job_id)
            model = self.models[job_id]
            if not model.predictor.calibration_is_current():  # another process re-fitted T
                await self.torch_thread.run(model.predictor.refresh_calibration)
            return model
        lock = self.loading.setdefault(job_id, asyncio.Lock())
        async with lock:
            if job_id not in self.models:
                predictor = await self.loader.run(
                    Predictor,
                    directory,
                    self.device,
                    self.max_batch,
                    backend=self.backend,
                    precision=self.precision,
                    data_root=self.data_root,
                    threads=self.threads,
                )
                self.models[job_id] = BatchedModel(predictor, self.max_batch, self.torch_thread)
                while len(self.models) > self.capacity:
                    self.models.popitem(last=False)
        self.loading.pop(job_id, None)
        return self.models[job_id]
