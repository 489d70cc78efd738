"""A small Python client (httpx) and the ``lpft`` command line over the lpft HTTP API."""

from lpft_client.client import LpftApiError, LpftClient

__all__ = ["LpftApiError", "LpftClient"]
