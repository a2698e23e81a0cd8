"""The controller's picture of one EdgeX: every device service, profile and device core-metadata holds, by name,
and whether EdgeX answers at all.

Reconcilers read it instead of asking EdgeX, so a reconcile that finds nothing to do costs no request. It is kept
current three ways: a full listing every resync period (the backstop, and the only place "gone from EdgeX" is
learnt without the bus), core-metadata's system events on the message bus (:mod:`yurt_iot.iot.edgex.bus`), and
the reconcilers' own writes. Each change is reported to `on_change(kind, name)`, which enqueues that key.

Reachability is decided here, once for all objects: a listing that fails (or a reconciler's request that finds
EdgeX unavailable) marks EdgeX unreachable, and the listing is retried with backoff, up to one resync period
apart. Every transition is reported to `on_reachability()`, so each CR gets its condition set when EdgeX goes
away and is reconciled again as soon as it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from yurt_iot.iot.edgex.errors import EdgeXError, NotFound, Unavailable
from yurt_iot.iot.edgex.kinds import EdgeKind, EdgeObject
from yurt_iot.iot.edgex.metadata import CoreMetadataClient
from yurt_iot.runtime.backoff import Backoff

__all__ = ["EVENT_TYPES", "EdgeState"]

logger = logging.getLogger(__name__)

EVENT_TYPES = {"deviceservice": "DeviceService", "deviceprofile": "DeviceProfile", "device": "Device"}
"""core-metadata's system event `type` -> our kind name."""

_VOLATILE = {"created", "modified"}


def _same(a: EdgeObject | None, b: EdgeObject | None) -> bool:
    """Equal apart from the timestamps EdgeX rewrites on every write."""
    if a is None or b is None:
        return a is b
    return bool(a.model_dump(exclude=_VOLATILE) == b.model_dump(exclude=_VOLATILE))


class EdgeState:
    """The objects of each kind by EdgeX name, plus `reachable` (None until the first listing ends)."""

    def __init__(
        self,
        metadata: CoreMetadataClient,
        kinds: Iterable[EdgeKind],
        *,
        on_change: Callable[[str, str, EdgeObject | None], None],
        on_reachability: Callable[[], None],
    ) -> None:
        """`on_change(kind, name, previous)` gets the object's previous version (None if it was unknown)."""
        self.metadata = metadata
        self.kinds = {k.name: k for k in kinds}
        self._objects: dict[str, dict[str, EdgeObject]] = {name: {} for name in self.kinds}
        self._on_change, self._on_reachability = on_change, on_reachability
        self.reachable: bool | None = None
        self.error = ""
        self._wake = asyncio.Event()
        self._fetching: set[tuple[str, str]] = set()
        self._deleted: set[tuple[str, str]] = set()  # (kind, name) we deleted, until EdgeX says otherwise
        self._written: dict[tuple[str, str], float] = {}  # loop time of our last write of (kind, name)
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, kind: str, name: str) -> EdgeObject | None:
        return self._objects[kind].get(name)

    def names(self, kind: str) -> list[str]:
        return list(self._objects[kind])

    def put(self, kind: str, obj: EdgeObject, *, notify: bool = True) -> None:
        """Record an object as EdgeX now holds it (after our own write: `notify=False`, the writer knows)."""
        previous = self._objects[kind].get(obj.name)
        self._objects[kind][obj.name] = obj
        self._deleted.discard((kind, obj.name))
        if not notify:
            self._written[kind, obj.name] = asyncio.get_running_loop().time()
        if notify and not _same(previous, obj):
            self._on_change(kind, obj.name, previous)

    def forget(self, kind: str, name: str, *, notify: bool = True) -> None:
        """Drop an object EdgeX no longer holds. After our own delete (`notify=False`) it stays dropped until
        EdgeX adds it again or a listing has it: an event about it published before the delete may still be
        on its way, and must not bring it back."""
        previous = self._objects[kind].pop(name, None)
        if not notify:
            self._deleted.add((kind, name))
            self._written[kind, name] = asyncio.get_running_loop().time()
        elif previous is not None:
            self._on_change(kind, name, previous)

    # -- reachability --------------------------------------------------------------------------------

    def mark_unreachable(self, error: EdgeXError) -> None:
        """EdgeX did not answer a request: every object learns it, and the listing probes it (with backoff)."""
        self._set_reachable(False, str(error))
        self._wake.set()

    def _set_reachable(self, reachable: bool, error: str = "") -> None:
        changed = self.reachable is not reachable
        self.reachable, self.error = reachable, error
        if changed:
            logger.log(
                logging.INFO if reachable else logging.WARNING,
                "EdgeX core-metadata at %s is %s%s",
                self.metadata.base_url,
                "reachable" if reachable else "unreachable",
                f": {error}" if error else "",
            )
            self._on_reachability()

    def wake(self) -> None:
        """List EdgeX again now (e.g. the bus reconnected and events may have been missed)."""
        self._wake.set()

    # -- listing -------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """List every kind and report what changed; raises the EdgeXError if EdgeX could not be listed (the
        previous picture is kept: an outage must not look like every object was deleted)."""
        started = asyncio.get_running_loop().time()
        listed = {name: await kind.list(self.metadata) for name, kind in self.kinds.items()}
        for kind, objects in listed.items():
            known = self._objects[kind]
            fresh = {o.name: o for o in objects}
            changed = []
            for name in known.keys() | fresh.keys():
                if self._written.get((kind, name), -math.inf) > started:  # our write is newer than the listing
                    if name in known:
                        fresh[name] = known[name]
                    else:
                        fresh.pop(name, None)
                elif not _same(known.get(name), fresh.get(name)):
                    changed.append(name)
            self._objects[kind] = fresh
            for name in changed:
                self._on_change(kind, name, known.get(name))
        self._written = {key: at for key, at in self._written.items() if at > started}
        self._deleted.intersection_update(self._written)
        self._set_reachable(True)

    async def run(self, period: float) -> None:
        """List EdgeX every `period` seconds (sooner when woken), retrying with backoff while it is down."""
        backoff = Backoff(initial=0.2, cap=period)
        while True:
            self._wake.clear()
            try:
                await self.refresh()
            except Unavailable as exc:
                self._set_reachable(False, str(exc))
            except EdgeXError as exc:  # answered, but not with a listing: count it as down, with its reason
                self._set_reachable(False, f"listing failed: {exc}")
            except Exception as exc:  # a bug must not end the backstop for good: report it, and keep trying
                logger.exception("listing EdgeX failed")
                self._set_reachable(False, f"listing failed: {exc!r}")
            if self.reachable:
                backoff.reset()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), period)
            else:
                await asyncio.sleep(backoff.next_delay())

    # -- system events ---------------------------------------------------------------------------------

    def apply_event(self, event: dict[str, Any]) -> None:
        """A core-metadata system event (`{type, action, details}`): the object it carries is recorded, or
        forgotten for a delete. Events of other types (provision watchers) are ignored."""
        kind = EVENT_TYPES.get(str(event.get("type")))
        details = event.get("details")
        if kind is None or not isinstance(details, dict):
            return
        try:
            obj = self.kinds[kind].dto.model_validate(details)
        except ValidationError as exc:
            logger.warning("ignoring a %s system event whose object does not parse: %s", kind, exc)
            return
        if event.get("action") == "delete":
            self.forget(kind, obj.name)
            return
        if event.get("action") != "add" and (kind, obj.name) in self._deleted:
            return  # older than our own delete of it
        self._deleted.discard((kind, obj.name))
        self.put(kind, obj)
        for needed, name in self.kinds[kind].edge_dependencies(obj):
            if name and self.get(needed, name) is None and (needed, name) not in self._fetching:
                self._fetching.add((needed, name))
                task = asyncio.get_running_loop().create_task(self._fetch(needed, name))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _fetch(self, kind: str, name: str) -> None:
        """A service or profile a device event names that we have not seen: EdgeX may publish events for
        devices only, and the device's CR is of little use without them."""
        try:
            self.put(kind, await self.kinds[kind].get(self.metadata, name))
        except NotFound:
            pass
        except Unavailable as exc:
            self.mark_unreachable(exc)
        except EdgeXError as exc:
            logger.warning("cannot read %s %s from EdgeX: %s", kind, name, exc)
        finally:
            self._fetching.discard((kind, name))
