"""The API container's health check: ``python -m lpft_api.health``.

Asks ``/readyz`` where ``python -m lpft_api`` listens (``bind_address``): a health check that
asked 127.0.0.1 would fail an API told to bind one address of its host (``LPFT_API_HOST``).
Exits 0 when the API is ready, 1 otherwise; one line says why either way.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from lpft_api.settings import ApiSettings, get_api_settings

#: The container's health check gives up after 5 s; answer before it does.
TIMEOUT_S = 4.0


def bind_address(settings: ApiSettings) -> tuple[str, int]:
    """Where ``python -m lpft_api`` listens. Open mode answers anyone as tenant 'default',
    so it binds loopback whatever ``LPFT_API_HOST`` says."""
    host = "127.0.0.1" if settings.open_mode else settings.api_host
    return host, settings.api_port


def probe_url(settings: ApiSettings) -> str:
    """The ``/readyz`` URL a client on this host reaches the API at: a wildcard bind is
    reached on loopback."""
    host, port = bind_address(settings)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/readyz"


def main() -> int:
    """Print one line and return the exit status."""
    url = probe_url(get_api_settings())
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            sys.stdout.write(f"ok: {url} answered {response.status}\n")
            return 0
    except urllib.error.HTTPError as exc:
        sys.stdout.write(f"unhealthy: {url} answered {exc.code}\n")
    except OSError as exc:
        sys.stdout.write(f"unhealthy: no answer from {url}: {exc}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
