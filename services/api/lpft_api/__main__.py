"""``python -m lpft_api``: serve the API on ``LPFT_API_HOST``:``LPFT_API_PORT`` (default
0.0.0.0:8000); the API image runs this."""

from __future__ import annotations

import uvicorn

from lpft_api.health import bind_address
from lpft_api.settings import get_api_settings

#: On SIGTERM uvicorn stops accepting connections and lets in-flight requests finish, for at
#: most this long: a /predict takes about a second; an event stream still open then is closed,
#: and its client resumes with Last-Event-ID. docker-compose.yml's stop grace period covers it.
GRACEFUL_SHUTDOWN_S = 20

if __name__ == "__main__":
    host, port = bind_address(get_api_settings())
    # No log_config: create_app sets up the JSON lines, uvicorn's loggers included.
    uvicorn.run(
        "lpft_api.main:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
