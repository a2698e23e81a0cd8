"""One device in the runtime: its poll loop and operating state, and reads and writes serialised with polls.

Reading path: the schedule says which sources are due -> one driver read for all their resources (the driver
coalesces) -> raw values through the profile's ValueSpecs -> one event per source -> the event sink (the
spool). A device that cannot be reached goes DOWN and is retried no faster than its backoff allows; the first
successful read brings it back UP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import Counter

from yurt_iot.api.iot import Device, DeviceProfile, OperatingState
from yurt_iot.runtime.backoff import Backoff
from yurt_iot.runtime.events import DEFAULT_TOPIC_PREFIX, EventEncoder
from yurt_iot.runtime.metrics import RuntimeMetrics
from yurt_iot.runtime.scheduler import Schedule, Source, parse_duration, phase_of
from yurt_iot.runtime.sdk import (
    ConfigurationError,
    ConnectionLost,
    DeviceBinding,
    Driver,
    DriverError,
    ReadResult,
    ResourceBinding,
    ResourceFailure,
)
from yurt_iot.runtime.values import ReadingError, Value, WriteRefusedError

logger = logging.getLogger(__name__)

EventSink = Callable[[str, bytes], bool]
"""Takes (topic, payload) of an event; returns False when it could not accept it (spool full)."""
StateListener = Callable[[str, OperatingState, str], None]
"""Called with (device, new operating state, reason) when a device goes UP or DOWN."""


def compile_profile(profile: DeviceProfile) -> dict[str, ResourceBinding]:
    """The resources of a profile as drivers and the runtime use them; built once and shared by its devices."""
    return {r.name: ResourceBinding.from_resource(r) for r in profile.spec.device_resources or []}


class DeviceRunner:
    """Polls one device on its schedule and serves on-demand reads and writes."""

    def __init__(
        self,
        device: Device,
        profile: DeviceProfile,
        resources: Mapping[str, ResourceBinding],
        driver: Driver,
        protocol: str,
        sink: EventSink,
        metrics: RuntimeMetrics,
        *,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        backoff: Backoff | None = None,
        on_state: StateListener | None = None,
    ) -> None:
        name = device.metadata.name
        if not name:
            raise ConfigurationError("device has no metadata.name")
        self.name = name
        self.device, self.profile, self.driver = device, profile, driver
        self.resources = resources
        self.binding = DeviceBinding(name, protocol, dict((device.spec.protocols or {})[protocol]), self.resources)
        self.sources = [self._source(event.source_name, event.interval, bool(event.on_change))
                        for event in device.spec.auto_events or []]  # fmt: skip
        self.encoder = EventEncoder(
            service=device.spec.service_name,
            profile=device.spec.profile_name,
            device=name,
            resources={n: r.spec for n, r in self.resources.items()},
            topic_prefix=topic_prefix,
        )
        self._sink, self._metrics, self._on_state = sink, metrics.device(name), on_state
        self._backoff = backoff or Backoff()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._published: dict[str, dict[str, Value]] = {}  # source -> last published values, for onChange
        self._last_error: dict[str, str] = {}  # resource -> last error logged, to log changes, not floods
        self.state: OperatingState = "UNKNOWN"
        self.last_connected_ms: int | None = None
        self._latest: dict[str, Value] = {}
        self._origins: dict[str, int] = {}  # apart from the values: a poll's readings share one origin object

    @property
    def latest(self) -> dict[str, tuple[Value, int]]:
        """Latest value and origin (ns) of each resource read."""
        return {name: (value, self._origins[name]) for name, value in self._latest.items()}

    def _source(self, name: str, interval: str, on_change: bool) -> Source:
        if name in self.resources:
            resources: tuple[str, ...] = (name,)
        else:
            command = next((c for c in self.profile.spec.device_commands or [] if c.name == name), None)
            if command is None:
                raise ConfigurationError(f"device {self.name}: autoEvent source {name!r} is no resource or command")
            resources = tuple(op.device_resource or "" for op in command.resource_operations)
        for resource in resources:
            binding = self.resources.get(resource)
            if binding is None or not binding.spec.readable:
                raise ConfigurationError(f"device {self.name}: source {name!r} reads {resource!r}, not readable")
        return Source(name, resources, parse_duration(interval), on_change)

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.driver.add_device(self.binding)
        if self.sources:
            self._task = asyncio.create_task(self._poll_forever(), name=f"poll {self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        # Cancel until it takes: a library may swallow one cancellation (asyncio.wait_for on Python 3.11).
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if task is not None and not task.cancelled() and task.exception() is not None:
            logger.error("poll loop of %s failed", self.name, exc_info=task.exception())
        await self.driver.remove_device(self.name)

    # --- polling -----------------------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        loop = asyncio.get_running_loop()
        schedule = Schedule(self.sources, loop.time(), phase_of(self.name))
        retry_at = 0.0
        late_seen = 0
        while True:
            delay = max(schedule.next_due(), retry_at) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            due = schedule.take_due(loop.time())
            if schedule.late > late_seen:
                self._metrics.late.inc(schedule.late - late_seen)
                late_seen = schedule.late
            if not due:
                continue
            names = due[0].resources if len(due) == 1 else tuple(dict.fromkeys(r for s in due for r in s.resources))
            origin = time.time_ns()
            started = loop.time()
            try:
                result = await self._read(names)
            except DriverError as error:
                self._metrics.connection_errors.inc()
                self._set_state("DOWN", str(error))
                retry_at = loop.time() + self._backoff.next_delay()
                continue
            self._metrics.poll_seconds.observe(loop.time() - started)
            retry_at = 0.0
            self._publish(due, self._values(result, origin), origin)

    async def _read(self, names: Sequence[str]) -> ReadResult:
        async with self._lock:
            try:
                result = await self.driver.read(self.name, names)
            except ResourceFailure as failure:  # the device answered, refusing the whole read
                result = ReadResult(errors=dict.fromkeys(names, failure))
        self._backoff.reset()
        self.last_connected_ms = time.time_ns() // 1_000_000
        self._set_state("UP", "read succeeded")
        if result.requests:
            self._metrics.requests.inc(result.requests)
        return result

    def _values(self, result: ReadResult, origin: int) -> dict[str, Value]:
        values: dict[str, Value] = {}
        resources, origins = self.resources, self._origins
        for name, raw in result.values.items():
            try:
                values[name] = resources[name].spec.to_value(raw)
            except ReadingError as error:
                self._resource_error(name, self._metrics.reading_errors, error)
                continue
            origins[name] = origin
        self._latest.update(values)
        if self._last_error:  # forget the errors of resources that read again, so that a new one is logged
            for name in values:
                self._last_error.pop(name, None)
        for name, failure in result.errors.items():
            self._resource_error(name, self._metrics.resource_errors, failure)
        return values

    def _resource_error(self, resource: str, counter: Counter, error: Exception) -> None:
        counter.inc()
        message = f"{type(error).__name__}: {error}"
        if self._last_error.get(resource) != message:
            self._last_error[resource] = message
            logger.warning("device %s resource %s: %s", self.name, resource, message)

    def _publish(self, due: Iterable[Source], values: Mapping[str, Value], origin: int) -> None:
        for source in due:
            readings = [(r, values[r]) for r in source.resources if r in values]
            if source.on_change:
                last = self._published.setdefault(source.name, {})
                readings = [(r, v) for r, v in readings if r not in last or last[r] != v]
                last.update(readings)
            if not readings:
                continue
            if self._sink(self.encoder.topic(source.name), self.encoder.encode(source.name, origin, readings)):
                self._metrics.events.inc()
                self._metrics.readings.inc(len(readings))
            else:
                self._metrics.rejected.inc()

    def _set_state(self, state: OperatingState, reason: str) -> None:
        if state == self.state:
            return
        if state == "UP" and self.state == "DOWN":
            self._metrics.reconnects.inc()
        log = logger.warning if state == "DOWN" else logger.info
        log("device %s is %s: %s", self.name, state, reason)
        self.state = state
        self._metrics.up.set(1 if state == "UP" else 0)
        if self._on_state is not None:
            self._on_state(self.name, state, reason)

    def publish_pushed(self, source: str, raw: Mapping[str, Value]) -> None:
        """Publish values the device sent by itself as one event of `source`; the device is evidently UP."""
        origin = time.time_ns()
        unknown = [name for name in raw if name not in self.resources]
        for name in unknown:
            error = ConfigurationError(f"pushed value for unknown resource {name!r}")
            self._resource_error(name, self._metrics.reading_errors, error)
        values = self._values(ReadResult(values={k: v for k, v in raw.items() if k not in unknown}), origin)
        self.last_connected_ms = origin // 1_000_000
        self._set_state("UP", "pushed values")
        if values:
            self._publish([Source(source, tuple(values), 0.0)], values, origin)

    def connection_changed(self, up: bool, reason: str) -> None:
        """The driver learnt, outside a read, that the device's peer went away or came back (see the SDK's
        ConnectionSink). Going DOWN counts like a failed poll; coming back UP is taken at once only for devices
        that are never polled: a polled device is UP again when a read succeeds."""
        if not up:
            self._metrics.connection_errors.inc()
            self._set_state("DOWN", reason)
        elif not self.sources:
            self.last_connected_ms = time.time_ns() // 1_000_000
            self._set_state("UP", reason)

    # --- on demand ---------------------------------------------------------------------------------------

    async def read(self, names: Sequence[str]) -> tuple[dict[str, Value], dict[str, DriverError]]:
        """Read resources now (between polls, never during one); values and per-resource errors."""
        unknown = [n for n in names if n not in self.resources]
        if unknown:
            raise ConfigurationError(f"device {self.name} has no resource {', '.join(unknown)}")
        try:
            result = await self._read(names)
        except ConnectionLost as error:
            self._set_state("DOWN", str(error))
            raise
        values = self._values(result, time.time_ns())
        return values, dict(result.errors)

    async def write(self, values: Mapping[str, Value]) -> None:
        """Check, transform and write user values (strings as in desiredValue, or numbers and booleans).

        WriteRefusedError names the resource and the reason (unknown, read-only, out of range) before
        anything is sent; driver errors propagate after the device was tried.
        """
        raw: dict[str, Value] = {}
        for name, value in values.items():
            binding = self.resources.get(name)
            if binding is None:
                raise WriteRefusedError(f"device {self.name} has no resource {name!r}")
            raw[name] = binding.spec.to_raw(value)
        async with self._lock:
            await self.driver.write(self.name, raw)
