"""What the client raises.

LpftClientError
├── LpftApiError          the API answered with an error status (its problem+json body)
└── LpftConnectionError   no answer: the API could not be reached, or stopped answering,
                          after every retry the request allowed
"""

from __future__ import annotations

from typing import Any


class LpftClientError(Exception):
    """Base of every error the client raises."""


class LpftApiError(LpftClientError):
    """The API answered with an error; ``problem`` is its RFC 9457 body (``code``,
    ``detail`` and, for bad input, ``errors`` naming each field)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('code', '')}: {problem.get('detail', problem)}")
        self.status = status
        self.problem = problem

    @property
    def code(self) -> str | None:
        """The problem's stable machine code (``not_found``, ``rate_limited``...)."""
        return self.problem.get("code")


class LpftConnectionError(LpftClientError):
    """The API could not be reached (refused, reset, timed out), retries included."""
