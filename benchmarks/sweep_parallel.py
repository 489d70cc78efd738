"""Issue 28's fan-out: one sweep of six trials at parallelism 2 on two workers. Goal: the
sweep's wall time is at most 0.6x the sum of its trials' own times.

    flock /tmp/lpft-heavy.lock python benchmarks/sweep_parallel.py
    python benchmarks/sweep_parallel.py --rows 64 --trials 2 --no-serial --no-record  # smoke

Per setting of the workers' torch threads, one stack (a private Redis, an API and two solo
Celery workers on the ``cpu`` queue, benchmarks/_stack.py) gets a stratified SST-2 train
sample and the dev file (as validation), then one sweep: ``lp_ft`` on the offline default
model (or ``--model``), device cpu, ``learning_rate`` and ``head_norm_scale`` searched (the
issue's ranges), epochs fixed so that every trial does the same work, pruner none so that
every trial runs in full. The settings: the workers as they start by default (each training
process takes the CPUs it may use), and each with LPFT_TRAINING_THREADS set to its share of
the cores (cores / workers). A reference sweep at parallelism 1 on the default stack gives the
trials' times alone.

Read from the sweep's record (started_at to finished_at, and the client's wall from POST
/jobs to the first terminal state) and GET /jobs/{id}/trials (each trial's started_at,
finished_at, worker): the sum of the trials' own times, wall / sum, the most trials at once,
trials per worker, the gaps between one trial's end and the next one's start on the same
worker (ask and tell), and the sweep's first and last steps (its start to its first trial's,
its last trial's end to its own). Training CPU is the CPU time of the children each worker
reaped during the sweep (/proc cutime + cstime): per trial-second, the cores a trial used.

On 2 cores, a trial beside another runs slower than alone, which makes "the sum of the
trials' own times" grow with the overlap itself: the parallelism-1 row says what they take
alone, and the speedup over it is the figure that contention cannot flatter.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from _models import DATA, stratified_sample
from _results import append
from _stack import Stack, private_redis, running_stack
from object_store_job import run_job, upload

TARGET_RATIO = 0.6
SEARCH_SPACE = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 2e-4, "log": True},
    "head_norm_scale": {"type": "categorical", "choices": [0.1, 1.0, 10.0]},
}
#: Each setting of the workers' threads: a name, and the variables each worker starts with.
SHARE = str(max(1, (os.cpu_count() or 1) // 2))
THREADS = {"default": {}, f"LPFT_TRAINING_THREADS={SHARE}": {"LPFT_TRAINING_THREADS": SHARE}}
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Trial:
    number: int
    worker: str
    started_at: float
    finished_at: float
    state: str
    params: dict

    @property
    def own_s(self) -> float:
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class SweepRun:
    threads: str
    torch_threads: int
    parallelism: int
    client_wall_s: float
    started_at: float
    finished_at: float
    trials: list[Trial]
    training_cpu_s: float
    load: str
    """/proc/loadavg's 1, 5 and 15 minute figures at the sweep's end: other work on the cores."""

    @property
    def wall_s(self) -> float:
        return self.finished_at - self.started_at

    @property
    def trials_s(self) -> float:
        return sum(t.own_s for t in self.trials)

    @property
    def ratio(self) -> float:
        return self.wall_s / self.trials_s

    def most_at_once(self) -> int:
        """The most trials running at one moment (an end before a start at the same time)."""
        edges = [(t.started_at, 1) for t in self.trials] + [
            (t.finished_at, -1) for t in self.trials
        ]
        running = most = 0
        for _, step in sorted(edges):
            running += step
            most = max(most, running)
        return most

    def per_worker(self) -> Counter[str]:
        return Counter(t.worker for t in self.trials)

    def gaps(self) -> list[float]:
        """Each worker's idle seconds between the end of one trial and the start of its next."""
        gaps = []
        for worker in self.per_worker():
            mine = sorted(
                (t for t in self.trials if t.worker == worker), key=lambda t: t.started_at
            )
            gaps += [b.started_at - a.finished_at for a, b in zip(mine, mine[1:], strict=False)]
        return gaps

    def first_step_s(self) -> float:
        return min(t.started_at for t in self.trials) - self.started_at

    def last_step_s(self) -> float:
        return self.finished_at - max(t.finished_at for t in self.trials)


def torch_threads(own: dict[str, str]) -> int:
    """The intra-op threads a worker's training child sets (the same interpreter, variables
    and rule as lpft_worker.runner)."""
    code = (
        "from lpft_core import usable_cpus\n"
        "from lpft_worker.settings import WorkerSettings\n"
        "print(WorkerSettings().training_threads or usable_cpus())"
    )
    probe = [sys.executable, "-c", code]
    env = {**os.environ, **own}
    return int(subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout)


def children_cpu_s(pids: tuple[int, ...]) -> float:
    """CPU seconds of the children these processes have reaped (their training runs)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[13]) + int(fields[14])  # cutime, cstime: fields 16 and 17
    return total / TICKS


def read_trials(client: httpx.Client, sweep_id: str) -> list[Trial]:
    """Every trial, page after page; each must have run to its end."""
    trials, after = [], None
    while True:
        params = {} if after is None else {"after": after}
        page = client.get(f"/jobs/{sweep_id}/trials", params=params).json()
        for t in page["data"]:
            if t["state"] != "complete":
                raise RuntimeError(f"trial {t['number']} ended {t['state']}: {t['error']}")
            trials.append(
                Trial(
                    t["number"],
                    t["worker"],
                    t["started_at"],
                    t["finished_at"],
                    t["state"],
                    t["params"],
                )
            )
        if not page["has_more"]:
            return trials
        after = trials[-1].number


def run_sweep(stack: Stack, body: dict, threads: str, torch: int, timeout_s: float) -> SweepRun:
    with stack.client() as client:
        cpu_before = children_cpu_s(stack.worker_pids)
        wall, sweep = run_job(client, body, timeout_s)  # any end but succeeded stops here
        print(f"sweep {sweep['id']} succeeded after {wall:.1f} s", flush=True)
        trials = read_trials(client, sweep["id"])
    return SweepRun(
        threads,
        torch,
        body["parallelism"],
        wall,
        sweep["started_at"],
        sweep["finished_at"],
        trials,
        children_cpu_s(stack.worker_pids) - cpu_before,
        " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=600, help="SST-2 train rows")
    parser.add_argument("--epochs", type=int, default=1, help="every trial's epochs")
    parser.add_argument("--trials", type=int, default=6, help="n_trials")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--model", default=None, help="the jobs' model (default: the server's)")
    parser.add_argument("--no-serial", action="store_true", help="skip the parallelism-1 sweep")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per sweep")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    hyper = {"epochs": args.epochs, "batch_size": 16, "max_length": 64, "device": "cpu"}
    validation = DATA / "sst2" / "validation.jsonl"

    runs: list[SweepRun] = []
    with tempfile.TemporaryDirectory(prefix="lpft-sweep-parallel-") as tmp:
        root = Path(tmp)
        train = root / "train.jsonl"
        train.write_text("\n".join(stratified_sample(DATA / "sst2" / "train.jsonl", args.rows, 0)))
        for threads, own in THREADS.items():
            torch = torch_threads(own)
            with ExitStack() as exits:
                home = root / threads.replace("=", "-")
                (home / "redis").mkdir(parents=True)
                redis_url = exits.enter_context(private_redis(home / "redis"))
                env = {
                    "LPFT_REDIS_URL": f"{redis_url}/0",
                    "LPFT_ARTIFACTS_DIR": str(home / "artifacts"),
                }
                stack = exits.enter_context(running_stack(home / "stack", env, [own, own]))
                print(
                    f"stack up at {stack.url}, workers {threads}: {torch} torch threads", flush=True
                )
                with stack.client() as client:
                    dataset = {
                        "train": upload(client, train),
                        "validation": upload(client, validation),
                    }
                body = {
                    "kind": "sweep",
                    "method": "lp_ft",
                    "dataset": dataset,
                    "hyperparameters": hyper,
                    "seed": 0,
                    "search_space": SEARCH_SPACE,
                    "n_trials": args.trials,
                    "parallelism": args.parallelism,
                    "objective": {"metric": "validation.nll", "direction": "minimize"},
                    "sampler": "tpe",
                    "pruner": "none",
                    **({"model": args.model} if args.model else {}),
                }
                runs.append(run_sweep(stack, body, threads, torch, args.timeout))
                print(render([runs[-1]]), flush=True)
                if threads == "default" and not args.no_serial:
                    serial = {**body, "parallelism": 1}
                    runs.append(run_sweep(stack, serial, threads, torch, args.timeout))
                    print(render([runs[-1]]), flush=True)

    table, details = render(runs), "\n\n".join(trial_table(r) for r in runs)
    print(table)
    print(details)
    if args.no_record:
        return
    append(
        f"Issue 28: a sweep of {args.trials} trials at parallelism {args.parallelism} on two "
        f"workers, {args.rows} SST-2 rows (sweep_parallel.py)",
        table,
        f"The {'offline default model (all-MiniLM-L6-v2)' if not args.model else args.model}, "
        f"`method: lp_ft`, {args.epochs} epoch(s), batch 16, max_length 64, device cpu; "
        f"train: {args.rows} stratified SST-2 train rows, validation: the SST-2 dev file. "
        "Searched: learning_rate (1e-5 to 2e-4, log) and head_norm_scale (0.1, 1, 10), tpe, "
        "pruner none, objective validation.nll. Per threads setting one private Redis, an API "
        "and two solo Celery workers on the cpu queue with a local artifact directory; the "
        "parallelism-1 row ran on the default stack after its parallel sweep. Wall: the "
        "sweep record's started_at to finished_at (client: POST /jobs to the terminal state, "
        "polled every 0.2 s); trials: the sum of each trial's started_at to finished_at; gaps: "
        "on each worker, one trial's end to its next trial's start; first / last step: the "
        f"sweep's start to its first trial's start, its last trial's end to its own end. Goal "
        f"wall / trials <= {TARGET_RATIO}. Training CPU: the workers' reaped children's CPU "
        "seconds per trial-second.\n\nEach trial (times in s from the sweep's start):\n\n"
        + details,
    )


def render(runs: list[SweepRun]) -> str:
    rows = [
        "| workers' threads (torch each) | parallelism | wall s (record / client) | trials s "
        "(sum; each) | wall / trials | most at once | trials per worker | same-worker gaps s "
        "| first / last step s | training CPU per trial-s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        each = ", ".join(f"{t.own_s:.1f}" for t in sorted(r.trials, key=lambda t: t.number))
        gaps = ", ".join(f"{g:.2f}" for g in r.gaps()) or "–"
        workers = ", ".join(f"{n}" for _, n in sorted(r.per_worker().items()))
        verdict = "" if r.parallelism == 1 else (" ✓" if r.ratio <= TARGET_RATIO else " ✗")
        rows.append(
            f"| {r.threads} ({r.torch_threads}) | {r.parallelism} | {r.wall_s:.1f} / "
            f"{r.client_wall_s:.1f} | {r.trials_s:.1f}; {each} | {r.ratio:.2f}{verdict} | "
            f"{r.most_at_once()} | {workers} | {gaps} | {r.first_step_s():.2f} / "
            f"{r.last_step_s():.2f} | {r.training_cpu_s / r.trials_s:.2f} |"
        )
    return "\n".join(rows)


def trial_table(run: SweepRun) -> str:
    rows = [
        f"{run.threads}, parallelism {run.parallelism} (load average at its end {run.load}):\n",
        "| trial | worker | start | end | own s | learning_rate | head_norm_scale |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in sorted(run.trials, key=lambda t: t.number):
        rows.append(
            f"| {t.number} | {t.worker} | {t.started_at - run.started_at:.1f} | "
            f"{t.finished_at - run.started_at:.1f} | {t.own_s:.1f} | "
            f"{t.params.get('learning_rate', 0):.2e} | {t.params.get('head_norm_scale')} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
