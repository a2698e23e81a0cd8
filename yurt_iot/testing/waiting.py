"""Wait for a condition with a deadline, instead of sleeping and hoping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


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
    condition: Callable[[], T], *, within: float, interval: float = 0.01, what: str = "condition"
) -> T:
    """`wait_for` for code on an event loop: polls `condition` without blocking the loop, for `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise ConditionTimeout(f"{what} did not hold within {within} s (last result: {result!r})")
        await asyncio.sleep(interval)
