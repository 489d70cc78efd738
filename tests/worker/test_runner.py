"""The training child's adapters, against the real Redis event log."""

from __future__ import annotations

import warnings
from pathlib import Path

from lpft_contract.records import new_id
from lpft_contract.stores import Stores
from lpft_worker.runner import BufferedEvents, EventPublisher, warnings_as_events

from lpft_core import ProgressEvent
from tests.redis_fixtures import RedisDatabase


def test_progress_becomes_stage_step_and_epoch_events(
    tmp_path: Path, redis_db: RedisDatabase
) -> None:
    log, job_id = Stores.over(redis_db.client(), tmp_path).events, new_id("job")
    publish = EventPublisher(BufferedEvents(log, job_id))
    publish(ProgressEvent("ft", 0, 4))
    publish(ProgressEvent("ft", 1, 4, {"loss": 0.5, "head_weight_norm": 1.0}))
    publish(ProgressEvent("ft", 4, 4, {"epoch": 1.0, "validation_accuracy": 0.9}))
    publish(ProgressEvent("calibrate", 1, 1, {"temperature": 1.3}))
    events = log.read(job_id, after=None, limit=10).items
    assert [e["type"] for e in events] == ["stage", "step", "epoch", "stage", "metrics"]
    assert events[1]["data"] == {
        "stage": "ft",
        "step": 1,
        "total": 4,
        "loss": 0.5,
        "head_weight_norm": 1.0,
    }


def test_warnings_during_training_are_published(tmp_path: Path, redis_db: RedisDatabase) -> None:
    log, job_id = Stores.over(redis_db.client(), tmp_path).events, new_id("job")
    with warnings_as_events(BufferedEvents(log, job_id)):
        warnings.warn("lbfgs failed to converge", RuntimeWarning, stacklevel=1)
    events = log.read(job_id, after=None, limit=10).items
    assert events[0]["type"] == "warning"
    assert events[0]["data"] == {
        "category": "RuntimeWarning",
        "message": "lbfgs failed to converge",
    }
