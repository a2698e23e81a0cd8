"""The native backend's controller: the pool's Device CRs run by the device runtime, with no EdgeX between.

    Device / DeviceProfile / DeviceService informers (one namespace; the pool's objects only)
        --keys of the affected devices--> work queue --> reconcile(device)
            -> Gateway.apply (restarts the device only if its spec or profile changed)
            -> desired values written (only those not yet on the device), read back
            -> finalizer and status (only if changed)
    DeviceRunner.on_state (UP/DOWN) --> the device's key again, no sooner than `min_status_interval`

Reconciles read only the informers' caches and touch the API server only to change something, so while the
server is away the runtime keeps driving every device it knows (status writes fail and are retried with
backoff); when it returns, the informers list again and the retries write the statuses that are due.

A desired value (`spec.deviceProperties[name].desiredValue`) is written when it differs from what was last
written to this running device and from the latest value read from it. The memory is dropped when the device
goes DOWN or restarts, and the device's desired properties are then read afresh before anything is written:
a device that kept its settings is not written to, one that lost them in a power cycle gets them again.
`spec.adminState: LOCKED` (or a LOCKED DeviceService) stops the device: no polls, no writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from yurt_iot.api.iot import EDGEX_OBJECT_NAME_LABEL, Device, DeviceProfile, DeviceService, OperatingState
from yurt_iot.iot.native.selection import FINALIZER, is_native
from yurt_iot.iot.native.status import (
    MANAGING,
    SYNCED,
    ConditionValue,
    coarse_last_connected,
    merge_conditions,
    properties_patch,
)
from yurt_iot.iot.pool import PoolScope
from yurt_iot.kube import (
    Controller,
    ExponentialRateLimiter,
    Informer,
    KubeClient,
    KubeMetrics,
    Obj,
    ObjectKey,
    Result,
    by_field,
    ensure_finalizer,
    generation_changed,
    object_key,
    patch_status_if_changed,
    remove_finalizer,
)
from yurt_iot.runtime.device import DeviceRunner, EventSink
from yurt_iot.runtime.gateway import Gateway
from yurt_iot.runtime.metrics import RuntimeMetrics
from yurt_iot.runtime.sdk import DriverError
from yurt_iot.runtime.values import ValueSpec

__all__ = ["NativeController", "NativeSettings"]

logger = logging.getLogger(__name__)

_SERVICE_INDEX, _PROFILE_INDEX, _EDGE_NAME_INDEX = "spec.serviceName", "spec.profileName", "edgeName"


@dataclass(frozen=True)
class NativeSettings:
    """How often the controller looks at its devices and writes their status."""

    status_interval: float = 30.0
    """Seconds between looks at each running device (actual values, lastConnected); unchanged status is not written."""
    min_status_interval: float = 1.0
    """Least seconds between two status writes of a device caused by its state changing (a flapping device)."""
    last_connected_resolution: float = 60.0
    """lastConnected is written when the state changes or it is older than this many seconds, not per reading."""
    write_retry: float = 5.0
    """Seconds before a desired value the device did not take is tried again (sooner when it comes back UP)."""
    workers: int = 4
    """Devices reconciled at once."""

    def __post_init__(self) -> None:
        for name in ("status_interval", "min_status_interval", "last_connected_resolution", "write_retry"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")


def _edge_name(obj: Obj) -> list[str]:
    """Index function: the name Devices use to refer to a service or profile (see `api.iot.edge_name`)."""
    meta = obj.get("metadata") or {}
    return [str((meta.get("labels") or {}).get(EDGEX_OBJECT_NAME_LABEL) or meta.get("name") or "")]


def _canonical(spec: ValueSpec, text: str) -> str:
    """A desired value in the form the device reads it back ("21.5" as "2.15e+01"), for comparisons."""
    try:
        return spec.format(spec.parse(text))
    except ValueError:
        return text  # the write will say what is wrong with it


class NativeController:
    """Runs the native Devices of one pool (see the module docstring) in its own `gateway`."""

    def __init__(
        self,
        kube: KubeClient,
        scope: PoolScope,
        sink: EventSink,
        *,
        settings: NativeSettings | None = None,
        runtime_metrics: RuntimeMetrics | None = None,
        kube_metrics: KubeMetrics | None = None,
        topic_prefix: str | None = None,
        driver_timeout: float = 1.0,
    ) -> None:
        self.scope, self.settings = scope, settings or NativeSettings()
        ns = scope.namespace
        self.devices = kube.resource(Device, ns)
        self.device_informer = Informer(
            self.devices,
            indexers={
                **scope.indexers, _SERVICE_INDEX: by_field(_SERVICE_INDEX), _PROFILE_INDEX: by_field(_PROFILE_INDEX),
            },
        )  # fmt: skip
        self.service_informer = Informer(kube.resource(DeviceService, ns), indexers={_EDGE_NAME_INDEX: _edge_name})
        self.profile_informer = Informer(kube.resource(DeviceProfile, ns), indexers={_EDGE_NAME_INDEX: _edge_name})
        gateway_args: dict[str, Any] = {"topic_prefix": topic_prefix} if topic_prefix else {}
        self.gateway = Gateway(
            sink, metrics=runtime_metrics, driver_timeout=driver_timeout, on_state=self._state_changed, **gateway_args
        )
        self.controller = Controller(
            "native-devices",
            self.reconcile,
            workers=self.settings.workers,
            rate_limiter=ExponentialRateLimiter(base=0.05, cap=10.0),
            metrics=kube_metrics,
        )
        self.controller.watch(self.device_informer, predicate=self._device_event)
        for informer, index in ((self.service_informer, _SERVICE_INDEX), (self.profile_informer, _PROFILE_INDEX)):
            self.controller.watch(informer, map_to=self._devices_using(index), predicate=generation_changed)
        self._written: dict[str, dict[str, str]] = {}  # device -> property -> canonical value written
        self._runners: dict[str, DeviceRunner] = {}  # the runner `_written` is about
        self._patched_at: dict[str, float] = {}  # device -> loop time of its last status write
        self._synced = asyncio.Event()

    @property
    def has_synced(self) -> bool:
        """True once the three caches are filled and devices are being reconciled (readiness)."""
        return self._synced.is_set()

    async def run(self) -> None:
        """Watch and reconcile until cancelled; then every device stops and the drivers close."""
        informers = (self.service_informer, self.profile_informer, self.device_informer)
        tasks = [asyncio.create_task(i.run(), name=f"informer {i.resource.resource_type.plural}") for i in informers]
        try:
            for informer in informers:
                await informer.wait_synced()
            self._synced.set()
            logger.info("native backend of pool %s in %s: caches synced", self.scope.pool, self.scope.namespace)
            await self.controller.run()
        finally:
            self.controller.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.gateway.close()

    # --- what gets reconciled ----------------------------------------------------------------------------

    def _device_event(self, old: Obj | None, new: Obj) -> bool:
        """Spec changes and deletions of this pool's devices, and a device leaving the pool; never another
        pool's device (our own status writes change no generation, so they do not come back here)."""
        mine = self.scope.owns(new) or (old is not None and self.scope.owns(old))
        return mine and generation_changed(old, new)

    def _devices_using(self, index: str) -> Callable[[Obj], list[ObjectKey]]:
        """Maps a service or profile to the keys of this pool's devices that use it (and only those)."""

        def keys(obj: Obj) -> list[ObjectKey]:
            if not self.scope.owns(obj):
                return []
            devices = self.device_informer.store.by_index(index, _edge_name(obj)[0])
            return [object_key(d) for d in devices if self.scope.owns(d)]

        return keys

    def _state_changed(self, name: str, state: OperatingState, reason: str) -> None:
        """A device went UP or DOWN: its status is due, no sooner than `min_status_interval` after the last."""
        if state == "DOWN":
            self._written.pop(name, None)  # it may come back without what we wrote
        loop = asyncio.get_running_loop()
        last = self._patched_at.get(name)
        delay = 0.0 if last is None else last + self.settings.min_status_interval - loop.time()
        self.controller.queue.add_after(ObjectKey(self.scope.namespace, name), delay)

    def _lookup(self, informer: Informer, name: str) -> Obj | None:
        """The pool's service or profile with this edge name (the pool's own object wins over a stray one)."""
        return next((o for o in informer.store.by_index(_EDGE_NAME_INDEX, name) if self.scope.owns(o)), None)

    # --- reconcile ---------------------------------------------------------------------------------------

    async def reconcile(self, key: ObjectKey) -> Result | None:
        """Make the runtime run the device as its CR says, then write what the runtime saw to its status."""
        obj = self.device_informer.store.get_by_key(key)
        if obj is None or not self.scope.owns(obj):
            await self._stop(key.name)  # gone, or moved to another pool: its CR is that pool's now
            return None
        service = self._lookup(self.service_informer, str(obj["spec"].get("serviceName") or ""))
        meta = obj.get("metadata") or {}
        if service is None or not is_native(service) or meta.get("deletionTimestamp"):
            await self._stop(key.name)
            await remove_finalizer(self.devices, obj, FINALIZER)
            return None
        obj = await ensure_finalizer(self.devices, obj, FINALIZER)
        profile = self._lookup(self.profile_informer, str(obj["spec"].get("profileName") or ""))
        if profile is None:
            missing = f"DeviceProfile {obj['spec'].get('profileName')!r} of pool {self.scope.pool} does not exist"
            await self._halt(obj, {"synced": False}, ConditionValue(SYNCED, False, "ProfileNotFound", missing))
            return None
        if "LOCKED" in (obj["spec"].get("adminState"), service["spec"].get("adminState")):
            locked = "adminState is LOCKED (device or service): not polled, desired values not written"
            await self._halt(obj, {"adminState": "LOCKED"}, ConditionValue(MANAGING, False, "Locked", locked))
            return None
        try:
            device = Device.model_validate(obj)
            runner = await self.gateway.apply(_without_desired(device), DeviceProfile.model_validate(profile))
        except (DriverError, ValueError) as error:
            await self._halt(obj, {"synced": False}, ConditionValue(SYNCED, False, "InvalidSpec", str(error)))
            return None
        failures, retry = await self._write_desired(runner, device)
        managing = (
            ConditionValue(MANAGING, False, "WriteFailed", "; ".join(f"{p}: {m}" for p, m in failures.items()))
            if failures
            else ConditionValue(MANAGING, True, "DesiredValuesWritten")
        )
        synced = ConditionValue(SYNCED, True, "Running", "driven by the native device runtime")
        status = {"synced": True, "adminState": "UNLOCKED"}
        await self._write_status(obj, runner, status, [synced, managing])
        delay = self.settings.write_retry if retry else self.settings.status_interval
        return Result(requeue_after=delay)

    async def _halt(self, obj: Obj, fields: Mapping[str, Any], condition: ConditionValue) -> None:
        """The device cannot run: stop it and say why in its status."""
        await self._stop(object_key(obj).name)
        await self._write_status(obj, None, fields, [condition])

    async def _stop(self, name: str) -> None:
        self._written.pop(name, None)
        self._runners.pop(name, None)
        self._patched_at.pop(name, None)
        if name in self.gateway.devices:
            await self.gateway.remove(name)
            logger.info("device %s stopped", name)

    async def _write_desired(self, runner: DeviceRunner, device: Device) -> tuple[dict[str, str], bool]:
        """Write the desired values the device does not have yet, one property at a time (a refused value does
        not hold the others back), and read them back. Returns the failures by property, and whether trying
        again could help (the device did not answer, rather than refusing the value)."""
        name = runner.name
        if self._runners.get(name) is not runner:  # a new or restarted device: nothing written to it yet
            self._runners[name] = runner
            self._written.pop(name, None)
        wanted_values = _desired(device)
        if name not in self._written:
            silent = await self._refresh(runner, wanted_values)
            if silent is not None:  # nothing to compare with: decide when it answers
                return dict.fromkeys(wanted_values, silent), True
        written = self._written.setdefault(name, {})
        failures: dict[str, str] = {}
        retry = False
        readback: list[str] = []
        for prop, text in wanted_values.items():
            binding = runner.resources.get(prop)
            if binding is None:
                failures[prop] = f"profile {device.spec.profile_name} has no resource {prop!r}"
                continue
            wanted = _canonical(binding.spec, text)
            latest = runner.latest.get(prop)
            if written.get(prop) == wanted or (latest is not None and binding.spec.format(latest[0]) == wanted):
                written[prop] = wanted
                continue
            try:
                await runner.write({prop: text})
            except (DriverError, ValueError) as error:
                failures[prop] = f"{type(error).__name__}: {error}"
                retry = retry or isinstance(error, DriverError)
                continue
            written[prop] = wanted
            if binding.spec.readable:
                readback.append(prop)
        if readback:
            try:
                _, errors = await runner.read(readback)
            except DriverError as lost:
                errors = dict.fromkeys(readback, lost)
            for prop, problem in errors.items():
                failures[prop] = f"read back: {type(problem).__name__}: {problem}"
                retry = True
        return failures, retry

    @staticmethod
    async def _refresh(runner: DeviceRunner, wanted: Mapping[str, str]) -> str | None:
        """Read the desired properties of a device we know nothing about yet (new, restarted, back from DOWN),
        so that what it already holds is not written again and what it lost is; why not, if it did not answer."""
        readable = [p for p in wanted if p in runner.resources and runner.resources[p].spec.readable]
        try:
            if readable:
                await runner.read(readable)
        except DriverError as error:
            return f"not written, the device does not answer: {type(error).__name__}: {error}"
        return None

    async def _write_status(
        self, obj: Obj, runner: DeviceRunner | None, fields: Mapping[str, Any], conditions: list[ConditionValue]
    ) -> None:
        """Patch the device's status to `fields`, `conditions` and (with a runner) what the runner saw, if that
        changes anything."""
        current: dict[str, Any] = obj.get("status") or {}
        status: dict[str, Any] = dict(fields)
        if runner is not None:
            state = runner.state
            status["operatingState"] = state
            resolution = int(self.settings.last_connected_resolution * 1000)
            status["lastConnected"] = coarse_last_connected(
                current.get("lastConnected"), runner.last_connected_ms,
                state_changed=current.get("operatingState") != state, resolution_ms=resolution,
            )  # fmt: skip
            status["deviceProperties"] = properties_patch(current.get("deviceProperties"), self._actual(runner, obj))
        status["conditions"] = merge_conditions(current.get("conditions"), conditions)
        answer = await patch_status_if_changed(self.devices, obj, status)
        if answer is not obj:
            self._patched_at[object_key(obj).name] = asyncio.get_running_loop().time()

    def _actual(self, runner: DeviceRunner, obj: Obj) -> dict[str, str]:
        """The actual value of every desired property: the latest read, else (write-only) what was written."""
        latest, written = runner.latest, self._written.get(runner.name, {})
        actual: dict[str, str] = {}
        for prop in (obj["spec"].get("deviceProperties") or {}).values():
            name = prop.get("name") or ""
            binding = runner.resources.get(name)
            if binding is not None and name in latest:
                actual[name] = binding.spec.format(latest[name][0])
            elif name in written:
                actual[name] = written[name]
        return actual


def _desired(device: Device) -> dict[str, str]:
    return {p.name: p.desired_value for p in (device.spec.device_properties or {}).values()}


def _without_desired(device: Device) -> Device:
    """The device as the runtime runs it: desired values are this controller's business, so editing one must
    not restart the device (Gateway.apply restarts on any spec change)."""
    return device.model_copy(update={"spec": device.spec.model_copy(update={"device_properties": None})})
