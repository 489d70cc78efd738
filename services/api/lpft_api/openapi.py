"""``python -m lpft_api.openapi [PATH]``: write the OpenAPI document (default
``openapi/openapi.json``); a test fails when the committed file is stale."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lpft_api.main import create_app
from lpft_api.settings import ApiSettings


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document (independent of the environment's settings)."""
    return create_app(ApiSettings(api_keys="", open_mode=True)).openapi()


def render() -> str:
    """The document as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "openapi/openapi.json")
    target.write_text(render())
