"""A Python client for the lpft HTTP API (sync and asyncio, typed results) and the ``lpft``
command line."""

from lpft_client._errors import LpftApiError, LpftClientError, LpftConnectionError
from lpft_client.async_client import AsyncLpftClient
from lpft_client.client import LpftClient

__all__ = [
    "AsyncLpftClient",
    "LpftApiError",
    "LpftClient",
    "LpftClientError",
    "LpftConnectionError",
]
