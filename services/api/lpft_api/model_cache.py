"""Serving trained models: each loaded once per process and kept in an LRU cache, with the
calibration re-read when another process re-fitted it; ``batcher`` feeds each one."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path

from lpft_contract.logs import route_transformers_logs

from lpft_api.batcher import BatchedModel, TorchThread
from lpft_core import Backend, Precision, Predictor


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
    ) -> None:
        route_transformers_logs()  # loading a model must not print text into the JSON log
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
                )
                self.models[job_id] = BatchedModel(predictor, self.max_batch, self.torch_thread)
                while len(self.models) > self.capacity:
                    self.models.popitem(last=False)
        self.loading.pop(job_id, None)
        return self.models[job_id]
