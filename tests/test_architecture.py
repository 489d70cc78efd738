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


#: lpft_core's layers, lowest first: a module imports from its own layer or those below it.
#: serving and reporting share a rank, so neither imports the other; the top-level modules
#: (config, errors, events, results) are the vocabulary every layer shares.
LAYERS = {
    "data": 0,
    "model": 1,
    "diagnostics": 2,
    "stages": 3,
    "serving": 4,
    "reporting": 4,
    "jobs": 5,
}


def lpft_core_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """Every import of lpft_core in the module at ``path``, wherever it sits (functions and
    ``TYPE_CHECKING`` blocks too): line, module and the names taken from it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name, []) for a in node.names if a.name.startswith("lpft_core")
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "lpft_core":
                found.append((node.lineno, node.module, [a.name for a in node.names]))
    return found


def test_lpft_core_layers_import_only_downwards() -> None:
    upward = []
    for layer, rank in LAYERS.items():
        for path in python_files(ROOT / "lpft_core" / layer):
            for line, module, _ in lpft_core_imports(path):
                parts = module.split(".")
                target = parts[1] if len(parts) > 1 else None
                if target in LAYERS and target != layer and LAYERS[target] >= rank:
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert upward == []


def test_services_use_only_lpft_cores_public_surface() -> None:
    # `import lpft_core` or `from lpft_core import X` with X in __all__; nothing deeper, so
    # the library can move its modules without breaking the services.
    public = set(lpft_core.__all__)
    internal = []
    for service in ("api", "worker"):
        for path in python_files(ROOT / "services" / service):
            for line, module, names in lpft_core_imports(path):
                if module != "lpft_core" or not set(names) <= public:
                    where = f"{path.relative_to(ROOT)}:{line}"
                    internal.append(f"{where} imports {module} {sorted(set(names) - public)}")
    assert internal == []
