"""The reconcile runner: workers take keys from a work queue and call a level-triggered reconcile.

As in controller-runtime, the queue holds only keys (namespace, name), never events: "reconciliation is
level-based", a reconcile reads the current state (from the informer's cache) and makes the world match it,
so it does not matter how many events led to it. Outcomes:

- returns `Result()` (or None): done; the key's failure history is forgotten;
- returns `Result(requeue_after=s)`: visit again in `s` seconds (0: as soon as possible); history forgotten;
- raises `TerminalError`: the object cannot be reconciled as it is (invalid spec); logged, not retried
  until it changes;
- raises anything else: logged and retried with the key's exponential backoff (5 ms doubling up to 1000 s).

One key is never reconciled by two workers at once (the queue guarantees it), different keys run in parallel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from yurt_iot.kube.informer import EventHandler, Informer
from yurt_iot.kube.metrics import KubeMetrics
from yurt_iot.kube.objects import Obj, ObjectKey, object_key
from yurt_iot.kube.queue import RateLimiter, ShutDown, WorkQueue

__all__ = ["Controller", "Predicate", "Reconciler", "Result", "TerminalError", "generation_changed"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What a reconcile asks for next: nothing, or another visit after `requeue_after` seconds.

    The one way to ask for a later visit (controller-runtime's extra `Requeue` flag confused people).
    """

    requeue_after: float | None = None

    def __post_init__(self) -> None:
        if self.requeue_after is not None and self.requeue_after < 0:
            raise ValueError(f"requeue_after: must not be negative, got {self.requeue_after}")


class TerminalError(Exception):
    """The object cannot be reconciled until it changes (e.g. an invalid spec); retrying is useless."""


Reconciler = Callable[[ObjectKey], Awaitable[Result | None]]
"""`async def reconcile(key) -> Result | None`: make the world match the object named by `key`."""

Predicate = Callable[[Obj | None, Obj], bool]
"""Whether an add (old is None) or update (old, new) is worth a reconcile; deletes always are."""


def generation_changed(old: Obj | None, new: Obj) -> bool:
    """Predicate: only adds and spec changes (metadata.generation), so our own status writes and resyncs
    do not trigger another reconcile; deletion requests (deletionTimestamp set) always pass."""
    if old is None:
        return True
    meta_old, meta_new = old.get("metadata") or {}, new.get("metadata") or {}
    if meta_new.get("deletionTimestamp") and not meta_old.get("deletionTimestamp"):
        return True
    return bool(meta_old.get("generation") != meta_new.get("generation"))


class Controller:
    """Runs `workers` concurrent reconciles of the keys in `queue` until stopped.

    A controller runs once: `run()` returns after `stop()` or raises CancelledError when cancelled, in
    both cases after stopping gracefully (no new keys; reconciles in flight get `shutdown_timeout`
    seconds to finish before they are cancelled). Create a new controller to run again.
    """

    def __init__(
        self,
        name: str,
        reconcile: Reconciler,
        *,
        workers: int = 1,
        rate_limiter: RateLimiter[ObjectKey] | None = None,
        metrics: KubeMetrics | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers: must be at least 1, got {workers}")
        self.name, self.workers, self.shutdown_timeout = name, workers, shutdown_timeout
        self.queue: WorkQueue[ObjectKey] = WorkQueue(rate_limiter=rate_limiter, name=name, metrics=metrics)
        self._reconcile = reconcile
        self._metrics = metrics
        self._stopping = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Controller {self.name}>"

    def enqueue(self, key: ObjectKey) -> None:
        """Ask for a reconcile of `key` (e.g. from an EdgeX event or another informer)."""
        self.queue.add(key)

    def watch(
        self,
        informer: Informer,
        *,
        map_to: Callable[[Obj], Iterable[ObjectKey]] | None = None,
        predicate: Predicate | None = None,
    ) -> None:
        """Enqueue on the informer's changes: the object's own key, or the keys `map_to` derives from it
        (e.g. a Device's DeviceService); adds and updates only where `predicate` lets them pass."""
        keys = map_to or (lambda obj: (object_key(obj),))

        def enqueue(obj: Obj) -> None:
            for key in keys(obj):
                self.queue.add(key)

        def on_add(obj: Obj) -> None:
            if predicate is None or predicate(None, obj):
                enqueue(obj)

        def on_update(old: Obj, new: Obj) -> None:
            if predicate is None or predicate(old, new):
                enqueue(new)

        informer.add_handler(EventHandler(on_add=on_add, on_update=on_update, on_delete=enqueue))

    def stop(self) -> None:
        """Make `run()` stop gracefully and return."""
        self._stopping.set()

    async def run(self) -> None:
        workers = [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}") for i in range(self.workers)]
        try:
            await self._stopping.wait()
        finally:
            await self._shutdown(workers)

    async def _shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        self.queue.shutdown(drain=False)
        _, late = await asyncio.wait(workers, timeout=self.shutdown_timeout)
        if late:
            logger.warning(
                "%r: cancelling %d reconciles still running after %.1f s", self, len(late), self.shutdown_timeout
            )
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self._reconcile_one(key)
            finally:
                self.queue.done(key)

    async def _reconcile_one(self, key: ObjectKey) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            result = await self._reconcile(key)
        except TerminalError as exc:
            logger.error("%r: %s cannot be reconciled: %s", self, key, exc)
            self.queue.forget(key)
            outcome = "terminal"
        except Exception:
            logger.exception("%r: reconcile of %s failed (retry %d)", self, key, self.queue.num_requeues(key) + 1)
            self.queue.add_rate_limited(key)
            outcome = "error"
        else:
            self.queue.forget(key)
            if result is not None and result.requeue_after is not None:
                self.queue.add_after(key, result.requeue_after)
                outcome = "requeue_after"
            else:
                outcome = "success"
        if self._metrics is not None:
            self._metrics.reconciles.labels(self.name, outcome).inc()
            self._metrics.reconcile_seconds.labels(self.name).observe(loop.time() - started)
