"""How many CPUs this process may really use: the intra-op thread count for torch and ONNX
Runtime.

Both runtimes size their thread pools from the host's cores. In a container limited to 2 CPUs
on a 64-core host that is 64 threads sharing 2 CPUs' worth of time: the kernel throttles the
cgroup once its quota is spent, and every forward pass waits for the slowest thread. The
usable count is the smallest of the CPUs the scheduler lets the process run on
(``os.sched_getaffinity``) and the CPU bandwidth quota of its cgroup and of every cgroup above
it (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up: a
quota of 1.5 CPUs keeps two threads busy part of the time rather than one all of it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(
    cgroup_root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC_CGROUP,
    affinity: set[int] | None = None,
) -> int:
    """The CPUs this process may use, at least 1 (the arguments are for tests)."""
    allowed = len(affinity if affinity is not None else os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        allowed = min(allowed, math.ceil(quota))
    return max(1, allowed)


def cgroup_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP
) -> float | None:
    """The tightest CPU bandwidth quota (in CPUs) on the process's cgroup or any above it, or
    ``None`` when there is none (or no cgroup file system to read)."""
    try:
        memberships = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: "0::/path"
            quotas += _along(cgroup_root, path, _v2_quota)
        elif "cpu" in controllers.split(","):  # cgroup v1: "4:cpu,cpuacct:/path"
            mount = next(
                (
                    cgroup_root / name
                    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu")
                    if (cgroup_root / name).is_dir()
                ),
                None,
            )
            if mount is not None:
                quotas += _along(mount, path, _v1_quota)
    return min(quotas, default=None)


def _along(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """``read(folder)`` for the cgroup at ``path`` under ``mount`` and each of its ancestors
    (inside a container's cgroup namespace the path is ``/`` and only the mount itself is
    read)."""
    folder = mount / path.strip("/")
    found = []
    while True:
        value = read(folder)
        if value is not None:
            found.append(value)
        if folder == mount or mount not in folder.parents:
            return found
        folder = folder.parent


def _v2_quota(folder: Path) -> float | None:
    """``cpu.max`` is ``"<quota> <period>"`` or ``"max <period>"``."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    """``cpu.cfs_quota_us`` is -1 without a limit."""
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period
