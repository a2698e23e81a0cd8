"""The MQTT driver: EdgeX device-mqtt devices, read and written by request and response, and their pushed values.

How the pieces fit: `config` parses a device's protocol properties, `codec` turns its resources' JSON into raw
values and back, and `broker` carries requests and routes messages over the one connection per broker. This
module keeps the devices, turns reads and writes into requests, and hands pushed values to the runtime.

Reads send one request per resource, as EdgeX does (``<CommandTopic>/<resource>/get/<uuid>``, empty payload),
and, as EdgeX does, one after another, each after the previous response. Sending them all at once would save
round trips, but a burst of small packets meets Nagle's algorithm in the broker (mosquitto leaves TCP_NODELAY off
by default) and the device's delayed ACKs: a read of 5 resources took 44 ms at once against 1 ms in turn on
loopback. A read with no response at all within the device's Timeout raises ConnectionLost (the device is
unreachable); once the device has answered, a resource left unanswered fails alone, with ResourceFailure, and so
do the ones after it, which the Timeout leaves no time for. Writes send ``{"<resource>": value}`` to
``<CommandTopic>/<resource>/set/<uuid>`` in the same way, in order, each waiting for its response (whatever it
holds, as in EdgeX), all within the Timeout.

A pushed message that cannot be taken is dropped and counted in `MqttDriver.malformed` by `Reason`; the log gets
the first one at once, then at most one line per `LOG_INTERVAL` with the number dropped in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from yurt_iot.runtime.sdk import (
    ConfigurationError,
    ConnectionLost,
    DeviceBinding,
    Driver,
    PushSink,
    ReadResult,
    ResourceFailure,
    Value,
)

from .broker import Broker
from .codec import Codec, Malformed, Reason
from .config import BrokerConfig, DeviceConfig, parse_properties

__all__ = ["LOG_INTERVAL", "MqttDriver"]

logger = logging.getLogger(__name__)

LOG_INTERVAL: Final = 10.0
"""Seconds between two log lines about malformed messages."""


@dataclass(frozen=True, slots=True)
class _Device:
    name: str
    config: DeviceConfig
    timeout: float
    broker: Broker
    codec: Codec

    def topic(self, resource: str, method: str) -> str:
        return f"{self.config.command_topic}/{resource}/{method}"

    def unanswered(self) -> ConnectionLost:
        return ConnectionLost(
            f"device {self.name!r}: no response on {self.config.response_topic}/<uuid> within {self.timeout} s"
        )


class MqttDriver(Driver):
    """Devices of EdgeX device-mqtt (protocol ``mqtt``), on any number of brokers.

    One driver serves every device; devices with the same broker settings share one connection, made when the
    first of them is added. `malformed` counts the pushed messages dropped, by `Reason`.
    """

    def __init__(self, *, timeout: float = 1.0, push: PushSink | None = None) -> None:
        super().__init__(timeout=timeout, push=push)
        self._devices: dict[str, _Device] = {}
        self._brokers: dict[BrokerConfig, Broker] = {}
        #: Pushed messages dropped, by `Reason` (a str).
        self.malformed: Counter[str] = Counter()
        self._quiet_until = 0.0  # time.monotonic() before which malformed messages are not logged
        self._unlogged = 0

    @property
    def reconnects(self) -> int:
        """Connections to the brokers in use that were made again after a loss."""
        return sum(broker.client.reconnects for broker in self._brokers.values())

    @property
    def stray_responses(self) -> int:
        """Responses that matched no waiting request (late, or for another gateway), on every broker."""
        return sum(broker.stray_responses for broker in self._brokers.values())

    async def add_device(self, device: DeviceBinding) -> None:
        """Check the device's properties and resource names; adding a device again replaces it."""
        config = parse_properties(device.name, device.properties)
        codec = Codec.compile(device.name, device.resources)
        await self.remove_device(device.name)
        broker = self._brokers.get(config.broker)
        if broker is None:
            broker = Broker(config.broker, self._on_incoming, self._on_malformed, self._on_connection)
        broker.add(device.name, config)
        self._brokers[config.broker] = broker
        timeout = config.timeout if config.timeout is not None else self.timeout
        self._devices[device.name] = _Device(device.name, config, timeout, broker, codec)

    async def remove_device(self, name: str) -> None:
        """Forget the device, and close its broker connection if no other device uses it."""
        device = self._devices.pop(name, None)
        if device is None:
            return
        device.broker.remove(device.config)
        if not device.broker.in_use:
            del self._brokers[device.config.broker]
            await device.broker.close()

    async def read(self, device: str, resources: Sequence[str]) -> ReadResult:
        """Request the resources one after another, all within the device's Timeout (see the module docstring)."""
        target = self._device(device)
        result = ReadResult()
        deadline = asyncio.get_running_loop().time() + target.timeout
        names = list(dict.fromkeys(resources))
        answered = False
        for index, name in enumerate(names):
            if name not in target.codec.decoders:
                result.errors[name] = ResourceFailure(f"device {device!r} has no resource {name!r}")
                continue
            result.requests += 1
            try:
                payload = await self._exchange(target, name, "get", b"", deadline)
            except ConnectionLost as lost:
                if not answered:
                    raise  # not one answer: the device is unreachable
                for rest in names[index:]:
                    result.errors.setdefault(rest, ResourceFailure(f"device {device!r} resource {rest!r}: {lost}"))
                break
            answered = True
            try:
                result.values[name] = target.codec.response(name, payload)
            except ResourceFailure as failure:
                result.errors[name] = failure
        return result

    async def write(self, device: str, values: Mapping[str, Value]) -> None:
        """Write each value with its own request, in order; nothing is sent unless every value can be encoded."""
        target = self._device(device)
        payloads = [(name, target.codec.set_payload(name, value)) for name, value in values.items()]
        deadline = asyncio.get_running_loop().time() + target.timeout
        for name, payload in payloads:
            await self._exchange(target, name, "set", payload, deadline)

    async def _exchange(self, device: _Device, resource: str, method: str, payload: bytes, deadline: float) -> bytes:
        """One request and its response's payload; ConnectionLost if it does not come by `deadline`."""
        await device.broker.wait_ready(deadline)
        try:
            async with asyncio.timeout_at(deadline):
                return await device.broker.request(
                    device.topic(resource, method), payload, device.config.response_topic
                )
        except TimeoutError:
            raise device.unanswered() from None

    async def close(self) -> None:
        """Close every broker connection and forget the devices."""
        brokers = list(self._brokers.values())
        self._brokers.clear()
        self._devices.clear()
        for broker in brokers:
            await broker.close()

    def _device(self, name: str) -> _Device:
        device = self._devices.get(name)
        if device is None:
            raise ConfigurationError(f"device {name!r} has not been added to the MQTT driver")
        return device

    def _on_connection(self, broker: Broker, ready: bool, reason: str) -> None:
        """The broker is every device's way in: its loss is theirs, also for devices that are never read."""
        for device in list(self._devices.values()):
            if device.broker is broker:
                self.connection_changed(device.name, ready, reason)

    # -- pushed messages (in paho's read callback, on the event loop) -----------------------------------

    def _on_incoming(self, broker: Broker, prefix: str, device: str, source: str, payload: bytes) -> None:
        topic = f"{prefix}/{device}/{source}"
        target = self._devices.get(device)
        if target is None or target.broker is not broker or target.config.incoming_topic != prefix:
            self._on_malformed(Reason.DEVICE, topic, f"no device {device!r} pushes to {prefix} on {broker}")
            return
        try:
            values = target.codec.pushed(source, payload)
        except Malformed as malformed:
            self._on_malformed(malformed.reason, topic, str(malformed))
            return
        if self.push is not None:
            self.push(device, source, values)

    def _on_malformed(self, reason: Reason, topic: str, detail: str) -> None:
        self.malformed[reason] += 1
        now = time.monotonic()
        if now < self._quiet_until:
            self._unlogged += 1
            return
        since = f" ({self._unlogged} more dropped since the last report)" if self._unlogged else ""
        logger.warning(
            "MQTT: dropped a message on %r (%s): %s%s; dropped so far: %s",
            topic, reason, detail, since, dict(self.malformed), exc_info=reason is Reason.ERROR,
        )  # fmt: skip
        self._quiet_until, self._unlogged = now + LOG_INTERVAL, 0
