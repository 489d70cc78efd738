"""Iterators that walk a cursor-paginated list page by page, fetching the next page only
when the previous one is used up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Generic

from lpft_client.types import CursorPage, Item


class SyncPager(Generic[Item]):
    """Every item of a list across its pages: ``for job in client.jobs.list(): ...``.

    Args:
        fetch: the page after a cursor (``None``: the first page).
        after: where the first page starts.
    """

    def __init__(
        self, fetch: Callable[[str | None], CursorPage[Item]], after: str | None = None
    ) -> None:
        self._fetch = fetch
        self._after = after

    def pages(self) -> Iterator[CursorPage[Item]]:
        """The pages themselves, each fetched when reached."""
        after = self._after
        while True:
            page = self._fetch(after)
            yield page
            after = page.next_cursor
            if after is None:
                return

    def __iter__(self) -> Iterator[Item]:
        for page in self.pages():
            yield from page.data


class AsyncPager(Generic[Item]):
    """The async twin of ``SyncPager``: ``async for job in client.jobs.list(): ...``."""

    def __init__(
        self, fetch: Callable[[str | None], Awaitable[CursorPage[Item]]], after: str | None = None
    ) -> None:
        self._fetch = fetch
        self._after = after

    async def pages(self) -> AsyncIterator[CursorPage[Item]]:
        """The pages themselves, each fetched when reached."""
        after = self._after
        while True:
            page = await self._fetch(after)
            yield page
            after = page.next_cursor
            if after is None:
                return

    async def __aiter__(self) -> AsyncIterator[Item]:
        async for page in self.pages():
            for item in page.data:
                yield item
