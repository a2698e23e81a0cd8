"""The driver plug-in API: what a protocol driver implements, and what the runtime hands it.

A driver serves every device of its protocol in one gateway process, so it can share what devices share
(one Modbus TCP connection for all unit ids behind one endpoint, one OPC-UA session per server). The
runtime owns everything protocol-independent and keeps it in one place for all drivers: the profile
semantics (a driver returns *raw* values, `ValueSpec` turns them into readings), scheduling, the
serialisation of a device's reads and writes (a driver never sees two calls for one device at once),
reconnect backoff, device state and telemetry.

Errors tell the runtime what happened, so that every driver is handled the same way:

    DriverError
     ├── ConfigurationError   the device's protocol properties or a resource's attributes are wrong;
     │                        the device is not started and the message names the field
     ├── ConnectionLost       the device cannot be reached; it goes DOWN and is retried with backoff
     └── ResourceFailure      the device answered, but not for this resource (e.g. a Modbus exception);
                              counted, the device stays UP
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from yurt_iot.api.iot import AttributeScalar, AttributeValue, DeviceResource, ValueType
from yurt_iot.runtime.backoff import Backoff
from yurt_iot.runtime.scheduler import parse_duration, parse_seconds
from yurt_iot.runtime.values import Value, ValueSpec, bits, is_float, is_integer, is_numeric, is_unsigned

# Everything a driver needs is importable from here, so a driver depends on this module alone.
__all__ = [
    "AttributeScalar",
    "AttributeValue",
    "Backoff",
    "ConfigurationError",
    "ConnectionLost",
    "ConnectionSink",
    "DeviceBinding",
    "Driver",
    "DriverError",
    "PushSink",
    "ReadResult",
    "ResourceBinding",
    "ResourceFailure",
    "Value",
    "ValueSpec",
    "ValueType",
    "bits",
    "is_float",
    "is_integer",
    "is_numeric",
    "is_unsigned",
    "parse_duration",
    "parse_seconds",
]


class DriverError(Exception):
    """Base of the errors a driver raises."""


class ConfigurationError(DriverError):
    """A protocol property or resource attribute is missing or wrong; the message names it."""


class ConnectionLost(DriverError):
    """The device (or the endpoint in front of it) cannot be reached, or stopped answering in time."""


class ResourceFailure(DriverError):
    """The device answered, but refused or could not serve this resource."""


@dataclass(frozen=True, slots=True)
class ResourceBinding:
    """One resource of a device's profile, as a driver sees it."""

    name: str
    attributes: Mapping[str, AttributeValue]
    """Protocol-specific addressing from the profile, e.g. primaryTable and startingAddress."""
    spec: ValueSpec
    """The value type and transforms; drivers need the type (`spec.value_type`), the runtime the rest."""

    @classmethod
    def from_resource(cls, resource: DeviceResource) -> ResourceBinding:
        return cls(resource.name, dict(resource.attributes or {}), ValueSpec.from_resource(resource))


@dataclass(frozen=True, slots=True)
class DeviceBinding:
    """A device handed to a driver: its protocol properties and every resource of its profile."""

    name: str
    protocol: str
    """The key of `spec.protocols` the driver serves, e.g. "modbus-tcp"."""
    properties: Mapping[str, str]
    """`spec.protocols[protocol]`, e.g. Address, Port, UnitID."""
    resources: Mapping[str, ResourceBinding] = field(default_factory=dict)


@dataclass(slots=True)
class ReadResult:
    """What one read returned: a raw value or an error for each resource asked for."""

    values: dict[str, Value] = field(default_factory=dict)
    errors: dict[str, DriverError] = field(default_factory=dict)
    requests: int = 0
    """Protocol requests the read took (for metrics; 0 if the driver does not count)."""


PushSink = Callable[[str, str, Mapping[str, Value]], None]
"""Called by a driver with (device name, source name, raw values by resource) for values the device sent by
itself (an OPC-UA data change, an MQTT message); the runtime publishes them as one event of that source."""


ConnectionSink = Callable[[str, bool, str], None]
"""Called by a driver with (device name, reachable, reason) when it learns without being asked, outside any read,
that a device's peer went away or came back: the broker of MQTT devices, the session of OPC-UA subscriptions. The
runtime sets the device DOWN or UP as a failed or successful read would; for devices that only push, and are
never read, this is the only way their state can follow their peer."""


class Driver(abc.ABC):
    """A protocol driver. Subclasses are registered under the `yurt_iot.drivers` entry point group,
    one entry per protocol name they serve (the keys of a Device's `spec.protocols`).

    The runtime creates one instance per protocol group and process, calls `add_device` for each device,
    then `read`/`write` (never concurrently for one device), and `close` at shutdown. Reads and writes
    must give up within `timeout` seconds by raising ConnectionLost, and must leave the driver usable
    when they are cancelled.
    """

    on_connection: ConnectionSink | None = None
    """Set by the runtime once it has made the driver (so that constructors need not take it); drivers call
    `connection_changed` rather than this."""

    def __init__(self, *, timeout: float = 1.0, push: PushSink | None = None) -> None:
        self.timeout = timeout
        self.push = push

    def connection_changed(self, device: str, up: bool, reason: str) -> None:
        """Report that the device's peer can (`up`) or cannot be reached, learnt outside a read."""
        if self.on_connection is not None:
            self.on_connection(device, up, reason)

    @abc.abstractmethod
    async def add_device(self, device: DeviceBinding) -> None:
        """Check the device's properties and attributes and get ready to serve it (ConfigurationError if
        they are wrong). Must not fail because the device is unreachable: connect lazily."""

    @abc.abstractmethod
    async def remove_device(self, name: str) -> None:
        """Forget the device, closing what only it used."""

    @abc.abstractmethod
    async def read(self, device: str, resources: Sequence[str]) -> ReadResult:
        """Read the named resources of the device, in as few requests as the protocol allows."""

    @abc.abstractmethod
    async def write(self, device: str, values: Mapping[str, Value]) -> None:
        """Write raw values (already checked and inverse-transformed by the runtime) to the device."""

    async def close(self) -> None:  # noqa: B027 - optional for drivers without resources of their own
        """Release every connection."""

    async def discover(self) -> list[DeviceBinding]:
        """Devices found on the network; drivers that cannot discover keep this default."""
        raise NotImplementedError(f"{type(self).__name__} does not discover devices")
