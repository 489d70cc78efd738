"""The intra-op thread count comes from the CPUs the process may really use: its affinity and
the CPU quota of its cgroup (v2 and v1) and of the cgroups above it, not the host's cores."""

from __future__ import annotations

from pathlib import Path

from lpft_core.serving.cpu_quota import cgroup_cpu_quota, usable_cpus

HOST = set(range(64))


def v2(root: Path, cpu_max: dict[str, str], membership: str = "/") -> Path:
    """A cgroup v2 tree with ``cpu.max`` per cgroup path; returns the /proc/self/cgroup file."""
    for path, value in cpu_max.items():
        folder = root / path.strip("/")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cpu.max").write_text(value + "\n")
    proc = root / "proc-cgroup"
    proc.write_text(f"0::{membership}\n")
    return proc


def test_a_v2_quota_caps_the_host_cores(tmp_path: Path) -> None:
    proc = v2(tmp_path, {"/": "200000 100000"})
    assert cgroup_cpu_quota(tmp_path, proc) == 2.0
    assert usable_cpus(tmp_path, proc, affinity=HOST) == 2


def test_a_fractional_quota_rounds_up(tmp_path: Path) -> None:
    proc = v2(tmp_path, {"/": "150000 100000"})
    assert usable_cpus(tmp_path, proc, affinity=HOST) == 2
    proc = v2(tmp_path, {"/": "20000 100000"})
    assert usable_cpus(tmp_path, proc, affinity=HOST) == 1


def test_no_quota_leaves_the_affinity(tmp_path: Path) -> None:
    proc = v2(tmp_path, {"/": "max 100000"})
    assert cgroup_cpu_quota(tmp_path, proc) is None
    assert usable_cpus(tmp_path, proc, affinity={0, 1, 2}) == 3


def test_affinity_below_the_quota_wins(tmp_path: Path) -> None:
    proc = v2(tmp_path, {"/": "800000 100000"})
    assert usable_cpus(tmp_path, proc, affinity={5}) == 1


def test_the_tightest_ancestor_counts(tmp_path: Path) -> None:
    proc = v2(
        tmp_path,
        {"/": "max 100000", "/kubepods": "300000 100000", "/kubepods/pod/app": "max 100000"},
        membership="/kubepods/pod/app",
    )
    assert cgroup_cpu_quota(tmp_path, proc) == 3.0
    assert usable_cpus(tmp_path, proc, affinity=HOST) == 3


def test_a_v1_cfs_quota(tmp_path: Path) -> None:
    mount = tmp_path / "cpu,cpuacct"
    (mount / "docker" / "abc").mkdir(parents=True)
    (mount / "cpu.cfs_quota_us").write_text("-1\n")
    (mount / "cpu.cfs_period_us").write_text("100000\n")
    (mount / "docker" / "abc" / "cpu.cfs_quota_us").write_text("400000\n")
    (mount / "docker" / "abc" / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    assert cgroup_cpu_quota(tmp_path, proc) == 4.0
    assert usable_cpus(tmp_path, proc, affinity=HOST) == 4


def test_no_cgroup_file_system_leaves_the_affinity(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path, tmp_path / "missing") is None
    assert usable_cpus(tmp_path, tmp_path / "missing", affinity={0, 1}) == 2


def test_this_process_gets_at_least_one_and_at_most_its_affinity() -> None:
    import os

    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
