"""What a sweep job keeps in Redis beside its Optuna study, for the workers that run its
trials and the API that lists them.

Each trial is a finetune job of its own (``JobRecord.sweep`` and ``trial`` name its sweep and
number), so it is claimed, leased, resumed after a lost worker, cancelled and deleted as any
job is. The sweep itself holds no worker: a trial that ends starts the next one (ask and
tell), and these atomic counts decide who starts it and who finishes the sweep, whatever
the workers' order:

* ``launched``: trials started so far (``INCR``; one past ``n_trials`` starts nothing);
* ``ended``: the trials whose end was seen (a set, so a redelivered message counts once);
* ``finishing``: held by the one worker that writes the sweep's result (it expires, so a
  finisher that died mid-way leaves the sweep to the next);
* ``trials``: trial number → its job's id; ``values:<n>``: its per-epoch validation values;
* ``best``: the id of the best trial's job once the sweep succeeded (what ``/predict`` on
  the sweep's id serves).

The study's journal lives under ``study_prefix`` (Optuna's ``JournalRedisBackend``).
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from lpft_contract.keys import key as redis_key
from lpft_contract.records import JobRecord, JobStatus

#: How long one worker holds the right to finish a sweep (writing its result and plots
#: takes seconds); past it, a finisher that died lets another finish.
FINISH_CLAIM_S = 600


def study_prefix(sweep_id: str) -> str:
    """The prefix of the Redis keys of the sweep's Optuna journal."""
    return redis_key("optuna", sweep_id)


class SweepStore:
    """The counts and indexes of every sweep, over one Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def _key(self, sweep_id: str, *parts: str) -> str:
        return redis_key("sweep", sweep_id, *parts)

    def next_launch(self, sweep_id: str, n_trials: int) -> bool:
        """Whether the caller may start one more trial (and it is counted as started)."""
        return int(self.redis.incr(self._key(sweep_id, "launched"))) <= n_trials

    def launched(self, sweep_id: str, n_trials: int) -> int:
        """Trials started so far."""
        return min(int(self.redis.get(self._key(sweep_id, "launched")) or 0), n_trials)

    def recount_launches(self, sweep_id: str, n_trials: int) -> int:
        """Count as started only the trials recorded (``add_trial``), forgetting starts whose
        worker died between counting and recording them; how many were forgotten. Only for
        a stalled sweep: a start under way is counted before it is recorded."""
        recorded = int(self.redis.hlen(self._key(sweep_id, "trials")))
        lost = self.launched(sweep_id, n_trials) - recorded
        if lost > 0:
            self.redis.set(self._key(sweep_id, "launched"), recorded)
        return max(lost, 0)

    def add_trial(self, sweep_id: str, number: int, job_id: str) -> None:
        """Record trial ``number``'s job."""
        self.redis.hset(self._key(sweep_id, "trials"), str(number), job_id)

    def trials(self, sweep_id: str) -> dict[int, str]:
        """Every started trial's job id, by number."""
        raw = self.redis.hgetall(self._key(sweep_id, "trials"))
        return {
            int(number): job_id for number, job_id in sorted(raw.items(), key=lambda i: int(i[0]))
        }

    def end(self, sweep_id: str, number: int) -> tuple[bool, int]:
        """Count trial ``number`` as ended; whether this call did (not a repeat), and how
        many have ended."""
        pipe = self.redis.pipeline()
        pipe.sadd(self._key(sweep_id, "ended"), str(number))
        pipe.scard(self._key(sweep_id, "ended"))
        added, count = pipe.execute()
        return bool(added), int(count)

    def ended(self, sweep_id: str) -> set[int]:
        """The trials whose end was seen."""
        return {int(number) for number in self.redis.smembers(self._key(sweep_id, "ended"))}

    def claim_finish(self, sweep_id: str) -> bool:
        """Whether the caller is the one to finish the sweep now: two workers that both see
        every trial ended (a trial's end and a reconcile, at once) write its result once."""
        return bool(
            self.redis.set(self._key(sweep_id, "finishing"), "1", nx=True, ex=FINISH_CLAIM_S)
        )

    def stalled(self, sweep_id: str, get_job: Callable[[str], JobRecord | None]) -> bool:
        """Whether no trial of the running sweep is queued or running. Only a trial's end
        moves a sweep on, so one in this state for long waits for nothing: the end of its
        last trial was lost (its worker died before telling the sweep, or recovery failed the
        trial), or its first trials were never started. Briefly, it is also every sweep
        between two of its own steps (claimed, finishing)."""
        for job_id in self.trials(sweep_id).values():
            trial = get_job(job_id)
            if trial is not None and not trial.status.is_terminal:
                return False
        return True

    def add_value(self, sweep_id: str, number: int, epoch: int, value: float) -> None:
        """Trial ``number``'s validation value after ``epoch`` (what the pruner read)."""
        self.redis.hsetnx(self._key(sweep_id, f"values:{number}"), str(epoch), repr(value))

    def values(self, sweep_id: str, number: int) -> dict[int, float]:
        """Trial ``number``'s per-epoch validation values."""
        raw = self.redis.hgetall(self._key(sweep_id, f"values:{number}"))
        return {
            int(epoch): float(value)
            for epoch, value in sorted(raw.items(), key=lambda i: int(i[0]))
        }

    def set_value(self, sweep_id: str, number: int, value: float) -> None:
        """Trial ``number``'s objective value, once it completed."""
        self.redis.hset(self._key(sweep_id, "value"), str(number), repr(value))

    def value(self, sweep_id: str) -> dict[int, float]:
        """The objective value of every completed trial, by number."""
        raw = self.redis.hgetall(self._key(sweep_id, "value"))
        return {int(number): float(value) for number, value in raw.items()}

    def set_best(self, sweep_id: str, job_id: str) -> None:
        """The best trial's job, which the sweep serves."""
        self.redis.set(self._key(sweep_id, "best"), job_id)

    def best(self, sweep_id: str) -> str | None:
        """The best trial's job id, once the sweep succeeded."""
        return self.redis.get(self._key(sweep_id, "best"))

    def delete(self, sweep_id: str) -> None:
        """Remove everything of the sweep here and its Optuna journal."""
        for pattern in (self._key(sweep_id, "*"), f"{study_prefix(sweep_id)}:*"):
            keys = list(self.redis.scan_iter(match=pattern, count=500))
            if keys:
                self.redis.delete(*keys)


def served_job(
    sweeps: SweepStore, get_job: Callable[[str], JobRecord | None], job: JobRecord
) -> JobRecord:
    """The job whose model serves for ``job``: a succeeded sweep's best trial, else ``job``."""
    if job.kind != "sweep" or job.status != JobStatus.SUCCEEDED:
        return job
    best_id = sweeps.best(job.id)
    best = get_job(best_id) if best_id else None
    return best if best is not None else job
