"""The tests' MLflow tracking server (tests/integration/mlflow_server.py) for the tracking
benchmark, which runs from benchmarks/ where the repository root is not on the import path."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.mlflow_server import TrackingServer  # noqa: E402

__all__ = ["TrackingServer"]
