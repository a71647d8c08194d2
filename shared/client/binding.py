"""``operation``: an operation generator (see ``shared.client.core``) as a public method of every client.

On a client whose ``_drive`` runs an operation to its end (``SelectorClient``) the method returns the
operation's value; on one whose ``_drive`` is a coroutine function (``AsyncSelectorClient``) the method is
a coroutine function too. Either keeps the operation's name, docstring and parameters, and its return
annotation is the operation's value, so ``help(SelectorClient.soft_labels)`` reads as for a plain method.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from shared.client.core import Op

P = ParamSpec("P")
T = TypeVar("T")
Method = Callable[..., Any]


class BlockingDriver(Protocol):
    def _drive(self, op: Op[T]) -> T: ...


class AsyncDriver(Protocol):
    def _drive(self, op: Op[T]) -> Coroutine[Any, Any, T]: ...


def _blocking(fn: Method) -> Method:
    def method(client: BlockingDriver, *args: Any, **kwargs: Any) -> Any:
        return client._drive(fn(client, *args, **kwargs))

    return method


def _asyncio(fn: Method) -> Method:
    async def method(client: AsyncDriver, *args: Any, **kwargs: Any) -> Any:
        return await client._drive(fn(client, *args, **kwargs))

    return method


class operation(Generic[P, T]):  # lower case: a decorator, like property
    """Decorator of an operation generator ``fn(client, ...) -> Op[T]`` in a class both clients inherit."""

    def __init__(self, fn: Callable[Concatenate[Any, P], Op[T]]) -> None:
        self.fn = fn
        self._methods: dict[bool, Method] = {}  # by "is the client's _drive a coroutine function"
        self.__doc__ = fn.__doc__

    @overload
    def __get__(self, client: None, owner: type) -> Method: ...

    @overload
    def __get__(self, client: AsyncDriver, owner: type | None = None) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __get__(self, client: BlockingDriver, owner: type | None = None) -> Callable[P, T]: ...

    def __get__(self, client: Any, owner: type | None = None) -> Any:
        driver = type(client) if client is not None else owner
        if driver is None or not hasattr(driver, "_drive"):
            return self.fn  # on the class that only defines the operations: the generator function itself
        is_async = inspect.iscoroutinefunction(driver._drive)
        if is_async not in self._methods:
            self._methods[is_async] = self._method(_asyncio if is_async else _blocking)
        method = self._methods[is_async]
        return method if client is None else types.MethodType(method, client)

    def _method(self, wrap: Callable[[Method], Method]) -> Method:
        method = functools.update_wrapper(wrap(self.fn), self.fn)
        signature = inspect.signature(self.fn, eval_str=True)
        value = typing.get_args(signature.return_annotation)[2]  # Op[T] is Generator[Step, Any, T]
        method.__signature__ = signature.replace(return_annotation=value)  # type: ignore[attr-defined]
        method.__annotations__ = {
            **{p.name: p.annotation for p in signature.parameters.values() if p.annotation is not p.empty},
            "return": value,
        }
        return method
