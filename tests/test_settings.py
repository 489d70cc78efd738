"""The settings of each process: the API's and the worker's classes extend the shared one and
overlap only through it, ``.env.example`` lists every field of the three with its default and
meaning, and importing the Celery app reads no settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from lpft_api.settings import ApiSettings
from lpft_contract.settings import SharedSettings
from lpft_worker.settings import WorkerSettings
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = ROOT / ".env.example"
#: The section of .env.example for each class's own fields, in the file's order.
SECTIONS = {"Shared": SharedSettings, "API": ApiSettings, "Workers": WorkerSettings}


@dataclass(frozen=True)
class Variable:
    """One variable of .env.example: its section, its value (None when commented out, that
    is unset) and the comment above it."""

    section: str
    value: str | None
    meaning: str


def variables() -> dict[str, Variable]:
    """.env.example's variables by name."""
    found: dict[str, Variable] = {}
    section, comment = "", []
    for line in ENV_EXAMPLE.read_text().splitlines():
        if heading := re.fullmatch(r"# === (\w+).*", line):
            section, comment = heading.group(1), []
        elif assignment := re.fullmatch(r"(# )?(LPFT_\w+)=(.*)", line):
            unset, name, value = assignment.groups()
            assert name not in found, f"{name} is listed twice"
            meaning = " ".join(" ".join(comment).split())
            found[name] = Variable(section, None if unset else value, meaning)
            comment = []
        elif line.startswith("# "):
            comment.append(line.removeprefix("# "))
        else:
            comment = []
    return found


def own_fields(cls: type[BaseSettings]) -> dict[str, object]:
    """The fields ``cls`` declares itself (the shared ones only on ``SharedSettings``)."""
    inherited = set() if cls is SharedSettings else set(SharedSettings.model_fields)
    return {name: f for name, f in cls.model_fields.items() if name not in inherited}


def test_the_api_and_the_worker_share_fields_only_through_the_shared_class() -> None:
    for cls in (ApiSettings, WorkerSettings):
        assert issubclass(cls, SharedSettings)
    shared = set(ApiSettings.model_fields) & set(WorkerSettings.model_fields)
    assert shared == set(SharedSettings.model_fields)


@pytest.mark.parametrize("section", SECTIONS)
def test_env_example_lists_every_field_with_its_meaning(section: str) -> None:
    """Each class's own fields, and only those, are in its section of .env.example, under a
    comment that is the field's docstring: a field added, renamed, moved or re-described
    without the file fails here."""
    listed = {name: v for name, v in variables().items() if v.section == section}
    fields = own_fields(SECTIONS[section])
    assert set(listed) == {f"LPFT_{name.upper()}" for name in fields}
    for name, field in fields.items():
        meaning = " ".join(field.description.split())
        assert listed[f"LPFT_{name.upper()}"].meaning == meaning, name


@pytest.mark.parametrize("cls", [SharedSettings, ApiSettings, WorkerSettings])
def test_env_example_values_are_the_defaults(
    cls: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read as a .env file, .env.example gives every setting its default, and no variable in
    it is unknown to the class that reads it."""
    for name in [name for name in os.environ if name.startswith("LPFT_")]:
        monkeypatch.delenv(name)
    from_file = cls(_env_file=ENV_EXAMPLE)
    assert from_file.model_dump() == cls(_env_file=None).model_dump()
    assert from_file.model_fields_set == {
        name for name, field in cls.model_fields.items() if field.default is not None
    }


def test_importing_the_celery_app_reads_no_settings() -> None:
    """``celery -A lpft_worker.celery_app`` imports the module first; the settings are read
    when Celery first needs its configuration, so a bad variable fails there, by name."""
    probe = (
        "import lpft_worker.celery_app as m\n"
        "try:\n"
        "    m.app.conf.broker_url\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    env = os.environ | {"LPFT_VISIBILITY_TIMEOUT_SECONDS": "a week"}
    run = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "visibility_timeout_seconds" in run.stdout
