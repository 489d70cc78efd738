"""House rules that code review alone would let slip."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lpft_core

ROOT = Path(__file__).resolve().parents[1]
SERVICE_FRAMEWORKS = {"fastapi", "starlette", "celery", "redis", "uvicorn", "pydantic_settings"}


def python_files(scanned: Path) -> list[Path]:
    """The Python files a structural rule reads at ``scanned`` (a module or a package). Every
    rule goes through here, because ``rglob`` over a path that moved away yields nothing and
    the rule would pass whatever the code does: a missing path, or one holding no Python,
    raises instead."""
    if not scanned.exists():
        raise FileNotFoundError(f"{scanned} does not exist: the rule scanning it checks nothing")
    files = [scanned] if scanned.is_file() else sorted(scanned.rglob("*.py"))
    if not files:
        raise FileNotFoundError(f"{scanned} holds no Python: the rule scanning it checks nothing")
    return files


def imported_roots(package: Path) -> set[str]:
    """The top-level names that the module or package at ``package`` imports."""
    roots = set()
    for path in python_files(package):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
    return roots


def test_lpft_core_imports_no_service_framework() -> None:
    assert not imported_roots(ROOT / "lpft_core") & SERVICE_FRAMEWORKS


def test_model_code_copied_into_artifacts_is_self_contained() -> None:
    # transformers copies modeling_lpft.py into every artifact; it must not need lpft_core.
    assert imported_roots(ROOT / "lpft_core" / "model" / "modeling_lpft.py") <= {
        "__future__",
        "torch",
        "transformers",
    }


def test_public_api_names_resolve() -> None:
    # Ordering is ruff's RUF022; here: no duplicates and every name exists.
    assert len(set(lpft_core.__all__)) == len(lpft_core.__all__)
    for name in lpft_core.__all__:
        assert getattr(lpft_core, name) is not None


def test_api_never_imports_the_worker() -> None:
    # The API enqueues tasks by name; its image must not need the worker's code.
    assert "lpft_worker" not in imported_roots(ROOT / "services" / "api")
    assert not imported_roots(ROOT / "services" / "contract") & {"lpft_api", "lpft_worker"}


def test_a_scanned_path_that_moved_away_fails_the_rule(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        imported_roots(ROOT / "services" / "jobstore")
    with pytest.raises(FileNotFoundError, match="holds no Python"):
        imported_roots(tmp_path)
