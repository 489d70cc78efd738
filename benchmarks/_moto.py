"""The tests' moto server (tests/objects/moto_server.py) for the object-store benchmarks, which
run from benchmarks/ where the repository root is not on the import path."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.objects.moto_server import aws_environment, running_moto  # noqa: E402

__all__ = ["aws_environment", "running_moto"]
