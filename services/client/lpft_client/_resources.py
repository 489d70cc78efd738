"""The public methods both clients have, each defined once by the call it sends.

httpx shares its request and response models between ``Client`` and ``AsyncClient`` and
keeps only the sending apart; here the same goes one step further. A method that sends one
call and returns its parsed answer is an ``operation`` of the call's function in ``_calls``
(its signature and docstring are the method's), and a paginated list is a ``listing``. Read
on a resource of the sync client, an operation returns the answer; on one of the async
client, an awaitable of it, because the two clients' ``request`` differ only in that.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

import httpx

from lpft_client import _calls
from lpft_client._base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, ClientOptions
from lpft_client._calls import Call, Listing
from lpft_client._pagination import AsyncPager, SyncPager
from lpft_client.types import Item

if TYPE_CHECKING:
    from lpft_client.async_client import AsyncLpftClient
    from lpft_client.client import LpftClient

Params = ParamSpec("Params")
Result = TypeVar("Result")
Source = TypeVar("Source", bound=Callable[..., Any])


class SyncResource:
    """A part of ``LpftClient`` (``client.jobs``, ``client.datasets``, the client itself)."""

    def __init__(self, client: LpftClient) -> None:
        self._client = client


class AsyncResource:
    """A part of ``AsyncLpftClient``."""

    def __init__(self, client: AsyncLpftClient) -> None:
        self._client = client


class _Method(Generic[Source]):
    """A descriptor that makes a method of the function ``source`` on each resource."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def _method(self, resource: SyncResource | AsyncResource) -> Callable[..., Any]:
        raise NotImplementedError

    def _get(self, resource: SyncResource | AsyncResource | None) -> Any:
        if resource is None:  # read on the class (help(), inspect): the descriptor itself
            return self
        method = _described(self._method(resource), self.source, self.name)
        # Built once per resource: the instance's attribute is found before this descriptor
        # (it defines no __set__), so a loop calling the method builds nothing again.
        vars(resource)[self.name] = method
        return method


class operation(_Method[Callable[Params, Call[Result]]]):  # noqa: N801 - used as property is
    """A method that sends the call its function returns and answers with the parsed
    result (awaitable on the async client)."""

    @overload
    def __get__(
        self, resource: AsyncResource, owner: type
    ) -> Callable[Params, Coroutine[Any, Any, Result]]: ...

    @overload
    def __get__(self, resource: SyncResource, owner: type) -> Callable[Params, Result]: ...

    def __get__(self, resource: SyncResource | AsyncResource | None, owner: type) -> Any:
        return self._get(resource)

    def _method(self, resource: SyncResource | AsyncResource) -> Callable[..., Any]:
        client, make_call = resource._client, self.source
        return lambda *args, **kwargs: client.request(make_call(*args, **kwargs))


class listing(_Method[Callable[Params, Listing[Item]]]):  # noqa: N801 - as operation
    """A method that returns the pager of the list its function describes: each page is
    fetched when the caller's loop reaches it."""

    def __get__(
        self, resource: SyncResource | AsyncResource | None, owner: type
    ) -> Callable[Params, SyncPager[Item] | AsyncPager[Item]]:
        return self._get(resource)

    def _method(self, resource: SyncResource | AsyncResource) -> Callable[..., Any]:
        client, make_listing = resource._client, self.source
        pager = AsyncPager if isinstance(resource, AsyncResource) else SyncPager

        def method(*args: Any, **kwargs: Any) -> Any:
            found = make_listing(*args, **kwargs)
            return pager(lambda cursor: client.request(found.page(cursor)), found.after)

        return method


def _described(method: Callable[..., Any], source: Callable[..., Any], name: str) -> Any:
    """``method`` as ``help()`` and editors should show it: named as the attribute, with the
    parameters and docstring of the function it sends (its return is the method's own)."""
    method.__name__ = method.__qualname__ = name  # a lambda's would say <lambda>
    method.__doc__ = source.__doc__
    signature = inspect.signature(source)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=inspect.Signature.empty
    )
    return method


class ClientOperations:
    """What a client answers itself, and how it is made: the subclass names its httpx client
    class and the classes of its ``jobs`` and ``datasets``."""

    _http_class: type[httpx.Client] | type[httpx.AsyncClient]
    _jobs_class: type[SyncResource] | type[AsyncResource]
    _datasets_class: type[SyncResource] | type[AsyncResource]
    predict = operation(_calls.predict)

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        reconnect_for: float | None = None,
        http_client: httpx.Client | httpx.AsyncClient | None = None,
    ) -> None:
        self.options = ClientOptions.resolve(base_url, api_key, max_retries, reconnect_for)
        self.http = http_client or self._http_class(base_url=self.options.base_url, timeout=timeout)
        self._client = self
        self.jobs = self._jobs_class(self)  # type: ignore[arg-type]
        self.datasets = self._datasets_class(self)  # type: ignore[arg-type]


class DatasetOperations:
    """``client.datasets``: upload, list, show and delete datasets (each method is the
    ``_calls`` function of the request it sends)."""

    upload = operation(_calls.upload_dataset)
    create = operation(_calls.create_dataset)
    retrieve = operation(_calls.get_dataset)
    delete = operation(_calls.delete_dataset)
    list = listing(_calls.list_datasets)


class JobOperations:
    """``client.jobs``: create, follow, cancel and fetch the results of jobs."""

    create = operation(_calls.create_job)
    retrieve = operation(_calls.get_job)
    cancel = operation(_calls.cancel_job)
    delete = operation(_calls.delete_job)
    logs = operation(_calls.job_logs)
    metrics = operation(_calls.job_metrics)
    report = operation(_calls.job_report)
    recalibrate = operation(_calls.recalibrate)
    trials = operation(_calls.sweep_trials)
    list, list_events = listing(_calls.list_jobs), listing(_calls.job_events)
