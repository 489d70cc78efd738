"""Every test in exactly one tier, a pytest marker named for what it costs and needs:

- ``unit``: in process, no Redis, no server (``make test-fast`` runs this tier alone);
- ``redis``: the private Redis (``redis_db``), perhaps a short-lived child process;
- ``integration``: a stack of real processes (API, Celery workers, Redis);
- ``slow``: seconds or more each: the real offline model on real data, ``torch.compile``, an
  ``lpft`` command or a fresh interpreter that imports the ML stack;
- ``browser``: drives a real browser.

The tier comes from the test's directory, raised by the fixtures it uses (a test in a unit
directory that takes ``redis_db`` is a ``redis`` test), or from a tier marker the test carries
itself, which may not claim less than its directory and fixtures. A test in a directory with
no tier fails the collection, so a new test file cannot escape tiering.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
#: Cheapest first; a test's tier is the dearest that applies to it.
TIERS = ("unit", "redis", "integration", "slow", "browser")
#: The tier of each directory under tests/; a test file directly in tests/ is a unit test.
DIRECTORY_TIERS = {
    ".": "unit",
    "api": "unit",
    "core": "unit",
    "jobstore": "redis",
    "worker": "redis",
    "integration": "integration",
    "client": "integration",
    "fuzz": "integration",
    "objects": "integration",
    "real": "slow",
    "browser": "browser",
}
#: Fixtures that lift a test to at least this tier.
FIXTURE_TIERS = {
    "redis_server": "redis",
    "redis_db": "redis",
    "service_env": "integration",
}


class UntieredTest(Exception):
    """A test whose tier cannot be told, or that claims two."""


def tier_of(path: Path, fixtures: Iterable[str], marked: Iterable[str]) -> str:
    """The one tier of the test in file ``path`` that uses ``fixtures`` and carries the tier
    markers ``marked``."""
    relative = path.resolve().parent.relative_to(TESTS)
    directory = relative.parts[0] if relative.parts else "."
    if directory not in DIRECTORY_TIERS:
        raise UntieredTest(f"tests/{directory} has no tier: add it to DIRECTORY_TIERS")
    implied = max(
        [DIRECTORY_TIERS[directory], *(FIXTURE_TIERS[f] for f in fixtures if f in FIXTURE_TIERS)],
        key=TIERS.index,
    )
    claimed = sorted(set(marked), key=TIERS.index)
    if len(claimed) > 1:
        raise UntieredTest(f"marked with several tiers: {', '.join(claimed)}")
    if claimed and TIERS.index(claimed[0]) < TIERS.index(implied):
        raise UntieredTest(f"marked {claimed[0]}, but its directory or fixtures make it {implied}")
    return claimed[0] if claimed else implied


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = []
    for item in items:
        marked = [mark.name for mark in item.iter_markers() if mark.name in TIERS]
        try:
            tier = tier_of(item.path, item.fixturenames, marked)
        except UntieredTest as problem:
            problems.append(f"{item.nodeid}: {problem}")
            continue
        if not marked:
            item.add_marker(tier)
    if problems:
        raise pytest.UsageError("tests without exactly one tier:\n" + "\n".join(problems))
