"""What each part loads: the client and every ``lpft jobs`` verb run without the ML stack or
Celery (the ``client`` extra alone), and the API never loads matplotlib. Each check runs in a
fresh interpreter, since this process has long imported everything."""

from __future__ import annotations

import json
import subprocess
import sys

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
