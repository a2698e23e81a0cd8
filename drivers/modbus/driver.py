"""The Modbus driver: devices of modbus-tcp and modbus-rtu, their reads coalesced, their connections shared.

How the pieces fit: `config` parses a device's protocol properties into the endpoint it sits behind, `codec`
compiles each resource's attributes into a `Point`, `plan` merges the points of a read into requests, and
`link` carries requests over the one connection per endpoint. This module keeps the devices and maps replies to
results: a Modbus exception response fails the resources of its request only, and everything that goes wrong on
the way (see `link`) fails the whole read or write with ConnectionLost.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pymodbus.pdu import ModbusPDU

from yurt_iot.runtime.sdk import (
    ConfigurationError,
    DeviceBinding,
    Driver,
    PushSink,
    ReadResult,
    ResourceBinding,
    ResourceFailure,
    Value,
)

from .codec import Point, Table, compile_point
from .config import parse_properties
from .link import Call, Link
from .plan import DEFAULT_MAX_GAP, ReadPlan, plan_reads

__all__ = ["ModbusDriver"]

_PLANS_PER_PROFILE: Final = 64
"""Read plans kept per profile: one per set of resources read together, which recur every poll."""

_EXCEPTIONS: Final = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
"""Exception codes of the Modbus application protocol specification v1.1b3, section 7."""

_WRITE_COIL: Final = 5
_WRITE_REGISTER: Final = 6
_WRITE_REGISTERS: Final = 16


@dataclass(slots=True, weakref_slot=True)
class _Profile:
    """The points of the resources that devices of one profile share, and their read plans: compiled once, not
    once per device (a hundred devices of 125 resources would hold 12,500 copies of the same points)."""

    resources: Mapping[str, ResourceBinding]
    points: dict[str, Point]
    plans: dict[tuple[str, ...], ReadPlan] = field(default_factory=dict)

    def plan(self, names: Sequence[str], max_gap: int) -> ReadPlan:
        key = tuple(names)
        plan = self.plans.get(key)
        if plan is None:
            if len(self.plans) >= _PLANS_PER_PROFILE:
                del self.plans[next(iter(self.plans))]  # the oldest: ad hoc reads must not grow the cache forever
            plan = self.plans[key] = plan_reads(self.points, names, max_gap)
        return plan


@dataclass(slots=True)
class _Device:
    name: str
    unit: int
    timeout: float
    link: Link
    profile: _Profile

    @property
    def points(self) -> dict[str, Point]:
        return self.profile.points

    async def request(
        self, call: Call, function_code: int, complete: Callable[[ModbusPDU], bool] | None = None
    ) -> ModbusPDU:
        return await self.link.request(call, function_code, self.timeout, complete)

    def refused(self, what: str, reply: ModbusPDU) -> ResourceFailure:
        code = reply.exception_code
        meaning = _EXCEPTIONS.get(code, "not a standard exception code")
        return ResourceFailure(f"device {self.name!r}: {what}: Modbus exception {code} ({meaning})")


class ModbusDriver(Driver):
    """Modbus TCP, RTU over TCP and RTU over serial lines, with EdgeX device-modbus profiles.

    One driver serves every device of both protocols. Devices behind the same endpoint (host, port and framing,
    or serial port) share one connection, connected on first use. `max_gap` is the gap, in registers, that
    coalesced reads may bridge between resources (see `plan`); 0 merges only adjacent resources.
    """

    def __init__(self, *, timeout: float = 1.0, push: PushSink | None = None, max_gap: int = DEFAULT_MAX_GAP) -> None:
        super().__init__(timeout=timeout, push=push)
        if max_gap < 0:
            raise ValueError(f"max_gap must be 0 or more registers, got {max_gap}")
        self.max_gap = max_gap
        self._devices: dict[str, _Device] = {}
        self._links: dict[object, Link] = {}
        # By id() of the resources mapping, which the runtime shares between the devices of one profile; an entry
        # lives while a device uses it (and holds the mapping, so that its id cannot be reused meanwhile).
        self._profiles: weakref.WeakValueDictionary[int, _Profile] = weakref.WeakValueDictionary()

    async def add_device(self, device: DeviceBinding) -> None:
        """Check the device's properties and attributes; adding a device again replaces it."""
        config = parse_properties(device.name, device.protocol, device.properties)
        profile = self._profile(device)
        key = config.endpoint.key
        link = self._links.get(key)
        if link is not None and link.endpoint != config.endpoint and self._users(link, besides=device.name):
            raise ConfigurationError(
                f"device {device.name!r}: {config.endpoint} is already open as {link.endpoint} for other devices; "
                "every device on a serial port must use the same settings"
            )
        await self.remove_device(device.name)
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = Link(config.endpoint)
        timeout = config.timeout if config.timeout is not None else self.timeout
        self._devices[device.name] = _Device(device.name, config.unit, timeout, link, profile)

    def _profile(self, device: DeviceBinding) -> _Profile:
        """The compiled resources of the device, shared with the devices whose binding has the same resources."""
        key = id(device.resources)
        profile = self._profiles.get(key)
        if profile is None or profile.resources is not device.resources:
            points = {name: compile_point(device.name, resource) for name, resource in device.resources.items()}
            profile = self._profiles[key] = _Profile(device.resources, points)
        return profile

    async def remove_device(self, name: str) -> None:
        """Forget the device, and close its connection if no other device uses it."""
        device = self._devices.pop(name, None)
        if device is not None and not self._users(device.link):
            del self._links[device.link.endpoint.key]
            await device.link.close()

    async def read(self, device: str, resources: Sequence[str]) -> ReadResult:
        """Read the resources in as few requests as their addresses allow (see `plan`), one after another."""
        target = self._device(device)
        plan = target.profile.plan(resources, self.max_gap)
        result = ReadResult()
        for name in plan.unknown:
            result.errors[name] = ResourceFailure(f"device {device!r} has no resource {name!r}")
        for request in plan.requests:
            call = _read_call(request.table, request.address, request.count, target.unit)
            reply = await target.request(call, request.function_code, request.complete)
            result.requests += 1
            if reply.isError():
                end = request.address + request.count - 1
                failure = target.refused(f"reading {request.table} {request.address}-{end}", reply)
                for name in request.names:
                    result.errors[name] = failure
            else:
                request.decode(reply, result.values)
        return result

    async def write(self, device: str, values: Mapping[str, Value]) -> None:
        """Write each value with its own request, in order; nothing is sent unless every value can be encoded.

        Registers take FC6 (one) or FC16 (more), coils FC5, and a bit of a holding register a read (FC3) and a
        write (FC6) of that register. ResourceFailure for a read-only table, a value that does not fit, or an
        exception response, which stops the writes that follow.
        """
        target = self._device(device)
        encoded = [_encode(target, name, value) for name, value in values.items()]
        for point, payload in encoded:
            await _write(target, point, payload)

    async def close(self) -> None:
        """Close every connection; the devices stay, and reconnect if they are used again."""
        for link in self._links.values():
            await link.close()

    def _device(self, name: str) -> _Device:
        device = self._devices.get(name)
        if device is None:
            raise ConfigurationError(f"device {name!r} has not been added to the Modbus driver")
        return device

    def _users(self, link: Link, besides: str | None = None) -> bool:
        return any(device.link is link for name, device in self._devices.items() if name != besides)


def _read_call(table: Table, address: int, count: int, unit: int) -> Call:
    if table is Table.COILS:
        return lambda client: client.read_coils(address, count=count, device_id=unit)
    if table is Table.DISCRETE_INPUTS:
        return lambda client: client.read_discrete_inputs(address, count=count, device_id=unit)
    if table is Table.HOLDING_REGISTERS:
        return lambda client: client.read_holding_registers(address, count=count, device_id=unit)
    return lambda client: client.read_input_registers(address, count=count, device_id=unit)


def _encode(device: _Device, name: str, value: Value) -> tuple[Point, bool | list[int]]:
    """The point and what to send for it: a coil's or register bit's state, or registers."""
    point = device.points.get(name)
    if point is None:
        raise ResourceFailure(f"device {device.name!r} has no resource {name!r}")
    if not point.table.writable:
        raise ResourceFailure(f"device {device.name!r} resource {name!r}: {point.table} is read-only")
    if point.table is Table.COILS or point.bit is not None:
        return point, point.encode_bool(value)
    return point, point.encode(value)


async def _write(device: _Device, point: Point, payload: bool | list[int]) -> None:
    unit, address = device.unit, point.address
    call: Call
    if isinstance(payload, list):
        if len(payload) == 1:
            call, function_code = lambda c: c.write_register(address, payload[0], device_id=unit), _WRITE_REGISTER
        else:
            call, function_code = lambda c: c.write_registers(address, payload, device_id=unit), _WRITE_REGISTERS
    elif point.bit is None:
        call, function_code = lambda c: c.write_coil(address, payload, device_id=unit), _WRITE_COIL
    else:  # read-modify-write; the runtime guarantees that no poll of the device runs in between
        table = point.table
        read = await device.request(
            _read_call(table, address, 1, unit), table.read_function, lambda reply: len(reply.registers) == 1
        )
        if read.isError():
            raise device.refused(f"reading {point.table} {address} to set bit {point.bit} of {point.name!r}", read)
        register = point.set_bit(read.registers[0], payload)
        call, function_code = lambda c: c.write_register(address, register, device_id=unit), _WRITE_REGISTER
    reply = await device.request(call, function_code)
    if reply.isError():
        raise device.refused(f"writing {point.name!r} at {point.table} {address}", reply)
