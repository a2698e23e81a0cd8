"""Wait for a condition with a deadline, instead of sleeping and hoping."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")


class ConditionTimeout(AssertionError):
    """The condition did not hold before the deadline."""


def wait_for(condition: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str = "condition") -> T:
    """Call `condition` until it returns something truthy and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise ConditionTimeout(f"{what} did not hold within {timeout} s (last result: {result!r})")
        time.sleep(interval)


async def async_wait_for(
    condition: Callable[[], T | Awaitable[T]], *, within: float, interval: float = 0.01, what: str = "condition"
) -> T:
    """`wait_for` on an event loop: polls `condition` (plain or async) without blocking the loop."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise ConditionTimeout(f"{what} did not hold within {within} s (last result: {result!r})")
        await asyncio.sleep(interval)


def async_test(timeout: float = 30.0) -> Callable[[Callable[P, Coroutine[Any, Any, None]]], Callable[P, None]]:
    """Run an async test function in its own event loop, failing it after `timeout` seconds."""

    def decorate(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
        @functools.wraps(test)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            asyncio.run(asyncio.wait_for(test(*args, **kwargs), timeout))

        return run

    return decorate
