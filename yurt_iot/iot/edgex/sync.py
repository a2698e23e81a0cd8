"""One pool's EdgeX sync, wired: CR informers, one controller per kind, the EdgeX picture and the bus listener.

    kube watch ──> Informer (by pool / EdgeX name) ──┐
                                                     ├─> key (namespace, EdgeX name) ─> PairReconciler ─> both sides
    EdgeX listing every resync ──> EdgeState ────────┤
    core-metadata system events (MQTT) ──────────────┘

Run it with :func:`run_edgex_sync`; :func:`remove_edge_discovered` is the clean-up for a retired controller
(OpenYurt #1626), also run on exit with ``EdgeXSyncOptions(cleanup=True)``.

OpenYurt's API and semantics are kept (one pool and namespace, `<pool>-<name>` CRs with the
`yurt-iot-dock/edgex-object.name` label, `managed`, finalizers, condition types); where they differ, on purpose:

* no 5 s polling: EdgeX's system events plus a listing every `resync_period`; properties are never polled;
* a cloud-owned CR (`managed` not false) is pushed whole: updates of every field including protocols, and of
  profiles (PUT); `adminState` only when the CR sets it, `operatingState` never after creation;
* only edge-owned CRs (`managed: false`, profiles named `<pool>-<name>` with the label) are deleted when their
  object leaves EdgeX, and their spec follows EdgeX's; a cloud-owned object that leaves EdgeX (or an EdgeX that
  lost its database) is created again, so an EdgeX failure cannot delete the operator's declarations;
* DeviceServices with a `native://` base address, and their devices, belong to the native backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from yurt_iot.api.iot import EDGEX_OBJECT_NAME_LABEL
from yurt_iot.iot.edgex.bus import SystemEvents
from yurt_iot.iot.edgex.command import CoreCommandClient
from yurt_iot.iot.edgex.edge_state import EdgeState
from yurt_iot.iot.edgex.kinds import EdgeKind, EdgeObject, edge_kinds, edge_name
from yurt_iot.iot.edgex.metadata import CoreMetadataClient
from yurt_iot.iot.edgex.reconcile import EDGE_INDEX, PairReconciler, by_edge_name
from yurt_iot.iot.native.selection import is_native
from yurt_iot.iot.pool import POOL_INDEX, PoolScope
from yurt_iot.kube import (
    Controller,
    IndexFunc,
    Informer,
    KubeClient,
    KubeMetrics,
    LeaderElector,
    Obj,
    ObjectKey,
    generation_changed,
    remove_finalizer,
)
from yurt_iot.kube import NotFound as KubeNotFound
from yurt_iot.runtime.mqttclient import MqttSettings

__all__ = ["EdgeXSync", "EdgeXSyncOptions", "remove_edge_discovered", "run_edgex_sync"]

logger = logging.getLogger(__name__)

USES_INDEX = "edgex-uses"
"""Device informer index: ``<pool>/<kind>/<EdgeX name>`` of the service and profile each device needs."""


@dataclass(frozen=True)
class EdgeXSyncOptions:
    """How one pool's controller reaches EdgeX and how often it looks.

    `command_url`: core-command, through which desired property values are written (none: they are not).
    `bus`: EdgeX's message bus (MQTT), for system events; without it, edge changes arrive with the next resync.
    `resync_period`: seconds between full listings of EdgeX (the backstop; OpenYurt polls every 5 s).
    `bypass_validation`: create devices with EdgeX 4's ``bypassValidation`` (no device service has to answer).
    `leader_election`: run only while holding the Lease ``yurt-iot-edgex-<pool>`` in the namespace.
    `cleanup`: on exit, delete the pool's edge-discovered CRs and release the finalizers of the others.
    """

    pool: str
    namespace: str
    metadata_url: str
    command_url: str | None = None
    bus: MqttSettings | None = None
    resync_period: float = 30.0
    workers: int = 4
    bypass_validation: bool = True
    edgex_timeout: float = 10.0
    leader_election: bool = False
    cleanup: bool = False

    def __post_init__(self) -> None:
        if self.resync_period <= 0:
            raise ValueError(f"resync_period: must be positive, got {self.resync_period}")
        if self.workers < 1:
            raise ValueError(f"workers: must be at least 1, got {self.workers}")
        for name, url in (("metadata_url", self.metadata_url), ("command_url", self.command_url or "http://")):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{name}: an http(s) URL of EdgeX, got {url!r}")


def _uses(pool: str) -> IndexFunc:
    def values(obj: Obj) -> list[str]:
        spec = obj.get("spec") or {}
        if spec.get("nodePool") != pool:
            return []
        return [f"{pool}/DeviceService/{spec.get('serviceName')}", f"{pool}/DeviceProfile/{spec.get('profileName')}"]

    return values


class EdgeXSync:
    """The parts of one pool's sync; `run(stop)` runs them until `stop` is set."""

    def __init__(self, kube: KubeClient, options: EdgeXSyncOptions, *, metrics: KubeMetrics | None = None) -> None:
        self.kube, self.options = kube, options
        self.scope = PoolScope(options.pool, options.namespace)
        self.metadata = CoreMetadataClient(options.metadata_url, timeout=options.edgex_timeout)
        self.command = (
            CoreCommandClient(options.command_url, timeout=options.edgex_timeout) if options.command_url else None
        )
        kinds = edge_kinds(bypass_validation=options.bypass_validation, command=self.command)
        self.kinds = {k.name: k for k in kinds}
        self.edge = EdgeState(
            self.metadata, self.kinds.values(), on_change=self._edge_changed, on_reachability=self.enqueue_all
        )
        self.informers: dict[str, Informer] = {}
        self.controllers: dict[str, Controller] = {}
        for name, kind in self.kinds.items():
            resource = kube.resource(kind.model, options.namespace)
            indexers = {**self.scope.indexers, EDGE_INDEX: by_edge_name}
            if name == "Device":
                indexers[USES_INDEX] = _uses(options.pool)
            informer = Informer(resource, indexers=indexers)
            foreign = {"DeviceService": is_native, "Device": self._native_device}.get(name, lambda obj: False)
            reconciler = PairReconciler(
                kind, self.scope, informer, resource, self.edge, self.metadata, related=self._related, foreign=foreign
            )
            controller = Controller(f"edgex-{name.lower()}", reconciler, workers=options.workers, metrics=metrics)
            controller.watch(informer, map_to=self._keys_of, predicate=generation_changed)
            self.informers[name], self.controllers[name] = informer, controller
        # A service that turns out native (or stops being so) changes who implements its devices.
        services = self.informers["DeviceService"]
        self.controllers["Device"].watch(services, map_to=self._devices_of, predicate=generation_changed)

    # -- keys ------------------------------------------------------------------------------------------

    def _keys_of(self, obj: Obj) -> Iterable[ObjectKey]:
        return [ObjectKey(self.scope.namespace, edge_name(obj))] if self.scope.owns(obj) else []

    def _native_device(self, obj: Obj) -> bool:
        """A device of a `native://` service: the native backend drives it, EdgeX never sees it."""
        service = (obj.get("spec") or {}).get("serviceName")
        found = self.informers["DeviceService"].store.by_index(EDGE_INDEX, f"{self.scope.pool}/{service}")
        return any(is_native(s) for s in found)

    def _devices_of(self, service: Obj) -> Iterable[ObjectKey]:
        if not self.scope.owns(service):
            return []
        devices = self.informers["Device"].store.by_index(
            USES_INDEX, f"{self.scope.pool}/DeviceService/{edge_name(service)}"
        )
        return [ObjectKey(self.scope.namespace, edge_name(d)) for d in devices]

    def _enqueue(self, kind: str, name: str) -> None:
        self.controllers[kind].enqueue(ObjectKey(self.scope.namespace, name))

    def _edge_changed(self, kind: str, name: str, previous: EdgeObject | None) -> None:
        self._enqueue(kind, name)
        self._related(kind, name, previous)

    def _related(self, kind: str, name: str, previous: EdgeObject | None) -> None:
        """`kind` `name` appeared in EdgeX or left it: what waits for that gets another try (the devices that
        need a service or profile to be created; a device's service and profile to be deleted)."""
        if kind != "Device":
            for device in self.informers["Device"].store.by_index(USES_INDEX, f"{self.scope.pool}/{kind}/{name}"):
                self._enqueue("Device", edge_name(device))
            return
        for obj in (previous, self.edge.get(kind, name)):
            for needed, needed_name in self.kinds[kind].edge_dependencies(obj) if obj is not None else []:
                self._enqueue(needed, needed_name)

    def enqueue_all(self) -> None:
        """Every object either side knows, in every controller (EdgeX came or went)."""
        for name in self.kinds:
            keys = set(self.edge.names(name))
            keys.update(edge_name(o) for o in self.informers[name].store.by_index(POOL_INDEX, self.scope.pool))
            for key in keys:
                self._enqueue(name, key)

    # -- running ---------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: informers first (the controllers need their caches), then EdgeX listing, bus
        listener and controllers. Controllers stop gracefully; with `cleanup`, the clean-up runs last."""
        background = [asyncio.create_task(i.run(), name=f"informer-{n}") for n, i in self.informers.items()]
        try:
            for informer in self.informers.values():
                await informer.wait_synced()
            background.append(asyncio.create_task(self.edge.run(self.options.resync_period), name="edgex-listing"))
            if self.options.bus is not None:
                events = SystemEvents(self.options.bus, self.edge.apply_event, on_connected=self.edge.wake)
                background.append(asyncio.create_task(events.run(), name="edgex-system-events"))
            controllers = [asyncio.create_task(c.run(), name=c.name) for c in self.controllers.values()]
            await stop.wait()
            for controller in self.controllers.values():
                controller.stop()
            await asyncio.gather(*controllers)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.metadata.aclose()
            if self.command is not None:
                await self.command.aclose()
        if self.options.cleanup:
            removed = await remove_edge_discovered(self.kube, self.scope, self.kinds.values())
            logger.info("clean-up of pool %s: %d edge-discovered CRs removed", self.scope.pool, removed)


async def remove_edge_discovered(kube: KubeClient, scope: PoolScope, kinds: Iterable[EdgeKind] | None = None) -> int:
    """Clean-up for a retired controller: delete the pool's edge-discovered CRs (EdgeX keeps its objects) and
    release the finalizers of its other CRs, so that no CR is left waiting for a controller that is gone.

    Returns how many CRs were deleted.
    """
    removed = 0
    for kind in kinds or edge_kinds():
        resource = kube.resource(kind.model, scope.namespace)
        for obj in (await resource.list()).items:
            if not scope.owns(obj):
                continue
            try:
                obj = await remove_finalizer(resource, obj, kind.finalizer)
                labels = obj["metadata"].get("labels") or {}
                if kind.edge_owned(obj) and EDGEX_OBJECT_NAME_LABEL in labels:  # made by us from an EdgeX object
                    await resource.delete(obj["metadata"]["name"], uid=obj["metadata"].get("uid"))
                    removed += 1
            except KubeNotFound:
                continue
    return removed


async def run_edgex_sync(
    kube: KubeClient, options: EdgeXSyncOptions, stop: asyncio.Event, *, metrics: KubeMetrics | None = None
) -> None:
    """Keep the pool's Device, DeviceService and DeviceProfile CRs and EdgeX in sync until `stop` is set
    (with `leader_election`, only while this process holds the pool's Lease). `metrics`: where its work queues,
    reconciles and Lease are counted."""
    sync = EdgeXSync(kube, options, metrics=metrics)
    if not options.leader_election:
        await sync.run(stop)
        return
    elector = LeaderElector(kube, f"yurt-iot-edgex-{options.pool}", options.namespace, metrics=metrics)
    lead = asyncio.create_task(elector.run(lambda: sync.run(stop)))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({lead, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not lead.done():  # stop came before we led: nothing started, give the Lease attempt up
            lead.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lead
