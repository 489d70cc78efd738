"""``python -m lpft_api``: serve the API on ``LPFT_API_PORT`` (default 8000)."""

from __future__ import annotations

import uvicorn
from lpft_contract.settings import get_settings

if __name__ == "__main__":
    settings = get_settings()
    # Open mode answers anyone as tenant 'default': never on an interface others can reach.
    host = "127.0.0.1" if settings.open_mode else settings.api_host
    # No log_config: create_app sets up the JSON lines, uvicorn's loggers included.
    uvicorn.run(
        "lpft_api.main:create_app",
        factory=True,
        host=host,
        port=settings.api_port,
        log_config=None,
    )
