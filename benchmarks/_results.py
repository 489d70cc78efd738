"""Appending a benchmark's table to benchmarks/RESULTS.md with date, machine and commit."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    """CPU model and core count (and the GPU, when torch sees one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}"


def commit() -> str:
    """The checked-out commit, with -dirty when files other than RESULTS.md changed (the
    first benchmark of a series appends to it, which must not mark the next ones dirty)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=RESULTS.parent, check=True
        ).stdout.strip()

    try:
        changed = git(
            "status", "--porcelain", "--untracked-files=no", "--", ":/", ":/!benchmarks/RESULTS.md"
        )
        return git("rev-parse", "--short", "HEAD") + ("-dirty" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


#: The code a benchmark runs is the code checked out when it started (this module is imported
#: then): a commit made during a long run must not be credited with its figures.
STARTED_AT = commit()


def append(title: str, table: str, notes: str = "") -> None:
    """Add a dated section to RESULTS.md."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"\n## {title}\n\n{stamp} · {machine()} · commit {STARTED_AT}\n\n{table}\n"
    if notes:
        section += f"\n{notes}\n"
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write(section)
