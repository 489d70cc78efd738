"""The worker's tests share the library tests' trained toy jobs (trained once per run)."""

from tests.core.conftest import trained_jobs

__all__ = ["trained_jobs"]
