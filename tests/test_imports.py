"""What each part loads: the client and every ``lpft jobs`` verb run without the ML stack or
Celery (the ``client`` extra alone), and the API never loads matplotlib. Each check runs in a
fresh interpreter, since this process has long imported everything."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Each check imports in a fresh interpreter: seconds apiece.
pytestmark = pytest.mark.slow

HEAVY = ("torch", "transformers", "peft", "celery", "matplotlib", "sklearn", "numpy", "tqdm")


def loaded_after(code: str) -> set[str]:
    """The top-level packages among ``HEAVY`` that ``code`` leaves in ``sys.modules``."""
    report = "import sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    probe = f"{code}\n{report}"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1])) & set(HEAVY)


def test_the_client_and_its_cli_verbs_load_no_ml_stack() -> None:
    # A real verb, run to the end: it reaches for an API that is not there and says so.
    code = (
        "import lpft_client, lpft_client.cli\n"
        "status = lpft_client.cli.main(['jobs', 'list', '--api-url', 'http://127.0.0.1:9'])\n"
        "assert status == 2, status"
    )
    assert loaded_after(code) == set()


def test_the_api_loads_no_plotting() -> None:
    assert "matplotlib" not in loaded_after("import lpft_api.main; lpft_api.main.create_app")


#: One spec of each registered kind, as plain data (a new kind adds its own).
SPEC_SAMPLES = {
    "finetune": {"method": "lp_ft", "data": {"train": "train.jsonl"}, "output_dir": "out"},
    "compare": {"data": {"train": "train.jsonl"}, "methods": ["lp", "ft"], "output_dir": "out"},
    "analysis": {"data": {"train": "train.jsonl"}, "model_dir": "model", "output_dir": "out"},
    "recalibrate": {"model_dir": "model", "data": "labelled.jsonl", "output_dir": "out"},
    "sweep": {
        "method": "lp_ft",
        "data": {"train": "train.jsonl"},
        "output_dir": "out",
        "search_space": {
            "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True}
        },
        "n_trials": 2,
    },
}


def test_every_kinds_spec_builds_without_the_ml_stack() -> None:
    # The API builds and checks a job's spec on every request; the registry imports a kind's
    # runner only when a job of it runs.
    code = (
        "from lpft_core import JOB_KINDS, job_kind\n"
        f"samples = {SPEC_SAMPLES!r}\n"
        "assert sorted(samples) == sorted(JOB_KINDS), 'give every registered kind a sample'\n"
        "for kind, raw in samples.items():\n"
        "    spec = job_kind(kind).spec.from_dict(raw)\n"
        "    assert type(spec).from_dict(spec.to_dict()) == spec, kind"
    )
    assert loaded_after(code) == set()
