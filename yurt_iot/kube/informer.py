"""Informer: one list+watch per resource type feeding a local cache and event handlers.

The shape is client-go's reflector: list (the snapshot and its resourceVersion), then watch from that
resourceVersion, so no change slips between the two. The watch is re-opened where the last one stopped
(its last event or bookmark), because the server ends every watch after `timeoutSeconds` and networks break.
When the server no longer has that resourceVersion (410 Gone: etcd compacted it) the informer lists again
and emits the difference to its cache as adds, updates and deletes, so handlers still see every object's
final state even though the individual events in between are lost. Handlers are meant to enqueue keys,
not to act: reconcilers are level-triggered and read the cache.

A periodic resync re-emits every cached object as an update, so a controller that dropped a key (or
depends on the outside world, like EdgeX) reconsiders every object from time to time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from yurt_iot.kube import errors
from yurt_iot.kube.client import ResourceClient
from yurt_iot.kube.objects import Obj, ObjectKey, object_key
from yurt_iot.kube.store import IndexFunc, Store
from yurt_iot.runtime.backoff import Backoff

__all__ = ["EventHandler", "Informer"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventHandler:
    """Callbacks for cache changes; each runs synchronously on the loop, so keep them short (enqueue a key).

    `on_update(old, new)` is also called by a resync, with `old is new`.
    """

    on_add: Callable[[Obj], None] | None = None
    on_update: Callable[[Obj, Obj], None] | None = None
    on_delete: Callable[[Obj], None] | None = None


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Informer:
    """Keeps `store` equal to the server's view of one resource type (optionally one namespace/selector).

    Run it with `await informer.run()` (in a task; cancel to stop) and `await informer.wait_synced()`
    before trusting the cache.
    """

    def __init__(
        self,
        resource: ResourceClient,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        resync_period: float | None = None,
        watch_timeout: int = 300,
        backoff: Backoff | None = None,
    ) -> None:
        """`watch_timeout` is the server-side lifetime of one watch in seconds (randomised up to twice as
        long so that many informers do not reconnect together); `backoff` paces retries after errors."""
        if watch_timeout < 1:
            raise ValueError(f"watch_timeout: must be at least 1 s, got {watch_timeout}")
        if resync_period is not None and resync_period <= 0:
            raise ValueError(f"resync_period: must be positive, got {resync_period}")
        self.resource = resource
        self.namespace = namespace if namespace is not None else resource.namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.resync_period, self.watch_timeout = resync_period, watch_timeout
        self.store = Store(indexers)
        self._backoff = backoff or Backoff(initial=0.1, cap=30.0)
        self._handlers: list[EventHandler] = []
        self._synced = asyncio.Event()
        self._rv: str | None = None

    def __repr__(self) -> str:
        return f"<Informer {self.resource.resource_type.plural}{' in ' + self.namespace if self.namespace else ''}>"

    @property
    def has_synced(self) -> bool:
        """True once the first list is in the cache and its adds were handed to the handlers."""
        return self._synced.is_set()

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the cache is current to (what the next watch resumes from)."""
        return self._rv

    async def wait_synced(self) -> None:
        """Wait for `has_synced` (bound it with `asyncio.timeout`)."""
        await self._synced.wait()

    def add_handler(self, handler: EventHandler) -> None:
        """Register callbacks; a handler added after the sync first gets an add for every cached object."""
        self._handlers.append(handler)
        if self.has_synced and handler.on_add is not None:
            for obj in self.store.list():
                self._call(handler.on_add, obj)

    async def run(self) -> None:
        """List and watch until cancelled; errors are logged and retried with backoff, never raised."""
        resync = asyncio.create_task(self._resync_forever(self.resync_period)) if self.resync_period else None
        try:
            await self._list_and_watch_forever()
        finally:
            if resync is not None:
                resync.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await resync

    async def _list_and_watch_forever(self) -> None:
        while True:
            try:
                if self._rv is None:
                    await self._relist()
                await self._watch()
            except errors.Gone as exc:
                relisting = self._rv is None  # the list itself expired (its continue token): pace the retries
                logger.info("%r: resourceVersion %s is gone (%s); listing again", self, self._rv, exc.message)
                self._rv = None
                if relisting:
                    await asyncio.sleep(self._backoff.next_delay())
            except errors.KubeError as exc:
                delay = self._backoff.next_delay()
                logger.warning("%r: %s; retrying in %.2f s", self, exc, delay)
                await asyncio.sleep(delay)

    async def _relist(self) -> None:
        """List everything and bring the cache (and the handlers) to that state."""
        listing = await self.resource.list(
            namespace=self.namespace, label_selector=self.label_selector, field_selector=self.field_selector
        )
        seen: set[ObjectKey] = set()
        for obj in listing.items:
            seen.add(object_key(obj))
            self._store_and_emit(obj)
        for key in set(self.store.keys()) - seen:
            gone = self.store.remove(key)
            if gone is not None:
                self._emit_delete(gone)
        self._rv = listing.resource_version
        self._backoff.reset()
        self._synced.set()

    async def _watch(self) -> None:
        """One watch from the cache's resourceVersion until the server ends it; progress is kept on error."""
        timeout = int(self.watch_timeout * (1 + random.random()))
        events = self.resource.watch(
            namespace=self.namespace,
            resource_version=self._rv,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=timeout,
            allow_bookmarks=True,
        )
        async with contextlib.aclosing(events):
            async for event in events:
                obj = event.object
                if event.type in ("ADDED", "MODIFIED"):
                    self._store_and_emit(obj)
                elif event.type == "DELETED":
                    self.store.remove(object_key(obj))
                    self._emit_delete(obj)
                elif event.type != "BOOKMARK":
                    logger.warning("%r: ignoring watch event of unknown type %s", self, event.type)
                    continue
                self._rv = _rv(obj) or self._rv
                self._backoff.reset()

    def _store_and_emit(self, obj: Obj) -> None:
        old = self.store.upsert(obj)
        if old is None:
            for handler in self._handlers:
                if handler.on_add is not None:
                    self._call(handler.on_add, obj)
        elif _rv(old) != _rv(obj):
            for handler in self._handlers:
                if handler.on_update is not None:
                    self._call(handler.on_update, old, obj)

    def _emit_delete(self, obj: Obj) -> None:
        for handler in self._handlers:
            if handler.on_delete is not None:
                self._call(handler.on_delete, obj)

    async def _resync_forever(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            if self.has_synced:
                for obj in self.store.list():
                    for handler in self._handlers:
                        if handler.on_update is not None:
                            self._call(handler.on_update, obj, obj)

    def _call(self, callback: Callable[..., None], *args: Obj) -> None:
        """A failing handler is logged; it must not stop the informer or the other handlers."""
        try:
            callback(*args)
        except Exception:
            logger.exception("%r: event handler %r failed", self, callback)
