"""``/predict``'s series: request latency, forward-pass sizes and loaded models."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.datastructures import State

PREDICT_LATENCY = Histogram(
    "lpft_predict_latency_seconds",
    "served /predict requests, from their checks to their predictions",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=None,
)
PREDICT_BATCH_SIZE = Histogram(
    "lpft_predict_batch_size",
    "inputs per /predict forward pass (rows of all the requests that shared it)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    registry=None,
)


class ModelCacheCollector(Collector):
    """``lpft_model_cache_models``: the models this process holds loaded for ``/predict``."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        models = getattr(self.state, "models", None)
        loaded = len(models.models) if models is not None else 0
        yield GaugeMetricFamily(
            "lpft_model_cache_models", "trained models loaded in this API process", value=loaded
        )
