"""A process that loads models writes transformers' records as JSON lines too, and no
progress bars: each line of its log must parse."""

from __future__ import annotations

import io
import json
import logging

from lpft_contract.logs import configure_logging, route_transformers_logs
from transformers.utils import logging as transformers_logging


def test_transformers_records_become_json_lines_and_bars_are_off() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging("INFO", stream=stream)
        route_transformers_logs()
        # error: the test session may have lowered transformers to errors only
        transformers_logging.get_logger("transformers.modeling_utils").error("a model note")
    finally:
        configure_logging(level)  # back to stderr for the rest of the session
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["logger"], r["message"]) for r in records] == [
        ("transformers.modeling_utils", "a model note")
    ]
    assert not transformers_logging.is_progress_bar_enabled()
