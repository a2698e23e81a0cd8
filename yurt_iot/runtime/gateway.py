"""The device runtime of one gateway process: drivers, the devices they serve, and where events go.

A Device and its DeviceProfile (the same models the CRDs carry) are all it takes to run a device; the
per-pool controller, the standalone gateway and the demo all feed it through `apply` and `remove`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from yurt_iot.api.iot import Device, DeviceProfile, edge_name
from yurt_iot.runtime import registry
from yurt_iot.runtime.device import DeviceRunner, EventSink, StateListener, compile_profile
from yurt_iot.runtime.events import DEFAULT_TOPIC_PREFIX
from yurt_iot.runtime.metrics import RuntimeMetrics
from yurt_iot.runtime.sdk import ConfigurationError, Driver, ResourceBinding, Value

logger = logging.getLogger(__name__)


class Gateway:
    """Runs devices: one driver instance per driver class, one DeviceRunner per device."""

    def __init__(
        self,
        sink: EventSink,
        *,
        metrics: RuntimeMetrics | None = None,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        driver_timeout: float = 1.0,
        on_state: StateListener | None = None,
    ) -> None:
        self.metrics = metrics or RuntimeMetrics()
        self._sink, self._topic_prefix, self._on_state = sink, topic_prefix, on_state
        self._driver_timeout = driver_timeout
        self._drivers: dict[type[Driver], Driver] = {}
        self._profiles: dict[str, tuple[DeviceProfile, dict[str, ResourceBinding]]] = {}
        self.devices: dict[str, DeviceRunner] = {}

    def _resources(self, profile: DeviceProfile) -> dict[str, ResourceBinding]:
        """The profile's compiled resources, shared by every device of the same profile while it is unchanged."""
        name = edge_name(profile)
        cached = self._profiles.get(name)
        if cached is None or cached[0].spec != profile.spec:
            cached = self._profiles[name] = (profile, compile_profile(profile))
        return cached[1]

    def _protocol(self, device: Device) -> str:
        installed = registry.available_protocols()
        protocols = [p for p in device.spec.protocols or {} if p in installed]
        if len(protocols) != 1:
            found = ", ".join(device.spec.protocols or {}) or "none"
            raise ConfigurationError(
                f"device {device.metadata.name}: spec.protocols needs exactly one protocol with an installed driver "
                f"(has: {found}; installed: {', '.join(sorted(installed)) or 'none'})"
            )
        return protocols[0]

    def _driver(self, protocol: str) -> Driver:
        cls = registry.driver_class(protocol)
        if cls not in self._drivers:
            driver = self._drivers[cls] = cls(timeout=self._driver_timeout, push=self._pushed)
            driver.on_connection = self._connection_changed
        return self._drivers[cls]

    def _connection_changed(self, device: str, up: bool, reason: str) -> None:
        runner = self.devices.get(device)
        if runner is not None:
            runner.connection_changed(up, reason)

    def _pushed(self, device: str, source: str, values: Mapping[str, Value]) -> None:
        runner = self.devices.get(device)
        if runner is None:
            logger.debug("values pushed for %s, which is not running here: dropped", device)
            return
        runner.publish_pushed(source, values)

    async def apply(self, device: Device, profile: DeviceProfile) -> DeviceRunner:
        """Run the device, or restart it if its spec or profile changed; unchanged devices keep polling."""
        name = device.metadata.name or ""
        current = self.devices.get(name)
        if current is not None and current.device.spec == device.spec and current.profile.spec == profile.spec:
            return current
        protocol = self._protocol(device)
        runner = DeviceRunner(
            device, profile, self._resources(profile), self._driver(protocol), protocol, self._sink, self.metrics,
            topic_prefix=self._topic_prefix, on_state=self._on_state,
        )  # fmt: skip
        if current is not None:
            await current.stop()
        self.devices[name] = runner  # before start, so values the driver pushes at once find the device
        try:
            await runner.start()
        except BaseException:
            del self.devices[name]
            raise
        return runner

    async def remove(self, name: str) -> None:
        runner = self.devices.pop(name, None)
        if runner is not None:
            await runner.stop()

    def runner(self, name: str) -> DeviceRunner:
        try:
            return self.devices[name]
        except KeyError:
            raise LookupError(f"no device {name!r} in this gateway") from None

    @property
    def drivers(self) -> Mapping[type[Driver], Driver]:
        return self._drivers

    async def close(self) -> None:
        for name in list(self.devices):
            await self.remove(name)
        for driver in self._drivers.values():
            await driver.close()
        self._drivers.clear()
