"""The work queue between informers and reconcilers: de-duplicating, delaying and rate-limited per key.

Its promises are client-go's workqueue's, which every controller's correctness leans on:

- a key added several times before a worker takes it is handed out once (events coalesce into one reconcile);
- a key is never handed to two workers at once: added again while being processed, it is handed out again
  only after `done()`, so the new state is still seen;
- `add_after` hands a key out later (the earliest of several requested times wins);
- `add_rate_limited` delays a key by its own exponential backoff (5 ms, 10 ms, ... up to 1000 s) until
  `forget` resets it after a success, so one broken object cannot make the others wait or spin the CPU.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from yurt_iot.kube.metrics import KubeMetrics
from yurt_iot.runtime.backoff import Backoff

__all__ = ["ExponentialRateLimiter", "RateLimiter", "ShutDown", "WorkQueue"]

T = TypeVar("T", bound=Hashable)
T_contra = TypeVar("T_contra", bound=Hashable, contravariant=True)


class ShutDown(Exception):
    """The queue was shut down and has nothing left to hand out: the worker should exit."""


class RateLimiter(Protocol[T_contra]):
    """How long a key waits before its next try, from its history of failures."""

    def when(self, item: T_contra) -> float:
        """The delay for this retry (counts it)."""
        ...

    def forget(self, item: T_contra) -> None:
        """Drop the item's history after a success."""
        ...

    def num_requeues(self, item: T_contra) -> int: ...


class ExponentialRateLimiter(Generic[T]):
    """Per-key delays base, 2*base, 4*base, ... capped at `cap`, without jitter (each key has its own count)."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"base: must be positive and at most cap ({cap}), got {base}")
        self.base, self.cap = base, cap
        self._backoffs: dict[T, Backoff] = {}

    def when(self, item: T) -> float:
        backoff = self._backoffs.get(item)
        if backoff is None:
            backoff = self._backoffs[item] = Backoff(initial=self.base, cap=self.cap, jitter=0.0)
        return backoff.next_delay()

    def forget(self, item: T) -> None:
        self._backoffs.pop(item, None)

    def num_requeues(self, item: T) -> int:
        backoff = self._backoffs.get(item)
        return backoff.failures if backoff is not None else 0


class WorkQueue(Generic[T]):
    """Keys waiting for a worker; see the module docstring for the guarantees.

    Workers loop `key = await queue.get()` ... `queue.done(key)` until `get` raises `ShutDown`.
    """

    def __init__(
        self, *, rate_limiter: RateLimiter[T] | None = None, name: str = "", metrics: KubeMetrics | None = None
    ) -> None:
        self.name = name
        self.rate_limiter: RateLimiter[T] = rate_limiter or ExponentialRateLimiter()
        self._metrics = metrics
        self._queue: collections.deque[T] = collections.deque()
        self._dirty: set[T] = set()  # queued, or to be queued again when its processing is done
        self._processing: set[T] = set()
        self._waiting: dict[T, asyncio.TimerHandle] = {}
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._shutting_down = False

    def __len__(self) -> int:
        """Keys ready to be handed out (not counting delayed or in-process ones)."""
        return len(self._queue)

    @property
    def processing(self) -> int:
        """Keys handed out and not yet `done`."""
        return len(self._processing)

    @property
    def waiting(self) -> int:
        """Keys scheduled by `add_after`/`add_rate_limited` that are not due yet."""
        return len(self._waiting)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, item: T) -> None:
        """Queue a key now, unless it is queued already; ignored after `shutdown`."""
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if self._metrics is not None:
            self._metrics.queue_adds.labels(self.name).inc()
        if item not in self._processing:
            self._queue.append(item)
            self._changed()
            self._wake_one()

    def add_after(self, item: T, delay: float) -> None:
        """Queue a key after `delay` seconds; an earlier pending time for the same key wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._waiting.get(item)
        if pending is not None:
            if pending.when() <= due:
                return
            pending.cancel()
        self._waiting[item] = loop.call_at(due, self._due, item)

    def add_rate_limited(self, item: T) -> None:
        """Queue a key after its next backoff delay: the way to retry a failure."""
        if self._metrics is not None and not self._shutting_down:
            self._metrics.queue_retries.labels(self.name).inc()
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: T) -> None:
        """Reset the key's backoff (after a success); does not remove it from the queue."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)

    async def get(self) -> T:
        """The next key, waiting for one; raises `ShutDown` once shut down and empty."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                if getter in self._getters:
                    self._getters.remove(getter)
                elif self._queue:
                    self._wake_one()  # we were woken for an item we will not take: pass it on
                raise
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        self._changed()
        return item

    def done(self, item: T) -> None:
        """The worker finished with the key; if it was added meanwhile, it is queued again now."""
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._changed()
            self._wake_one()

    def shutdown(self, *, drain: bool = True) -> None:
        """Stop accepting keys and cancel delayed ones. With `drain`, workers still get the queued keys
        before `ShutDown`; without, those are dropped (fine for level-triggered reconcilers: the next
        start lists everything again)."""
        self._shutting_down = True
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        if not drain:
            self._dirty.difference_update(self._queue)
            self._queue.clear()
            self._changed()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)

    def _due(self, item: T) -> None:
        del self._waiting[item]
        self.add(item)

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    def _changed(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(self.name).set(len(self._queue))
