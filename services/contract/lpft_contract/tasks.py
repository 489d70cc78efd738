"""Task names and queues: the contract between the API (which enqueues by name) and workers."""

from __future__ import annotations

from enum import StrEnum


class TaskName(StrEnum):
    """Celery task names, namespaced as Celery recommends."""

    RUN_JOB = "lpft.run_job"


class Queue(StrEnum):
    """Worker queues: GPU workers consume ``gpu``, CPU workers ``cpu``."""

    GPU = "gpu"
    CPU = "cpu"


def queue_for_device(device: str, auto_queue: str) -> Queue:
    """The queue a job goes to: ``cuda`` → gpu, ``cpu`` → cpu, ``auto`` → ``auto_queue``."""
    if device == "cuda":
        return Queue.GPU
    if device == "cpu":
        return Queue.CPU
    return Queue(auto_queue)


def broker_lists(queue: str) -> list[str]:
    """The Redis lists that hold ``queue``'s waiting messages: Kombu's Redis transport keeps
    one per priority step beside the queue's own."""
    return [queue, *(f"{queue}\x06\x16{priority}" for priority in (3, 6, 9))]
