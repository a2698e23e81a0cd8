"""The SCPI driver: one resource is one SCPI header, read with a query and written with a command.

The dialect is that of simple SCPI instruments on a raw TCP socket (port 5025 by convention): one command line
in, one line out. A resource's attribute ``command`` is its header, e.g. ``MEAS:TEMP``; a read sends
``MEAS:TEMP?`` and takes the reply line as the value; a write sends ``SOUR:VOLT 3.3;*OPC?`` and waits for ``1``,
so that a write is confirmed and its errors are seen. An instrument answers a line it cannot execute with
``ERR <code>,"<message>"`` instead (as this package's simulator does; real instruments queue the error for
``SYST:ERR?``, which a production driver would poll).

Protocol properties: ``Address`` and ``Port`` of the instrument, and an optional ``Timeout`` (seconds or a Go
duration such as ``500ms``) that each read or write may take; without it the driver's default applies.

One connection per device, made on the first read or write and dropped on anything doubtful: a connection
with a reply outstanding (after a timeout or a cancellation) would hand that late reply to the next query.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from yurt_iot.runtime.sdk import (
    ConfigurationError,
    ConnectionLost,
    DeviceBinding,
    Driver,
    PushSink,
    ReadResult,
    ResourceBinding,
    ResourceFailure,
    Value,
    ValueType,
    bits,
    is_float,
    is_integer,
    parse_seconds,
)

__all__ = ["ScpiDriver"]

PROTOCOL: Final = "scpi"
_HEADER = re.compile(r"\*?[A-Za-z][A-Za-z0-9]*(:[A-Za-z][A-Za-z0-9]*)*")
_ERROR_PREFIX: Final = "ERR "
_BOOLEANS: Final = {"1": True, "ON": True, "0": False, "OFF": False}


@dataclass(frozen=True, slots=True)
class _Resource:
    name: str
    header: str
    value_type: ValueType

    @classmethod
    def parse(cls, device: str, resource: ResourceBinding) -> _Resource:
        value_type = resource.spec.value_type
        where = f"device {device!r} resource {resource.name!r}"
        if not (value_type in ("Bool", "String") or is_integer(value_type) or is_float(value_type)):
            raise ConfigurationError(f"{where}: valueType {value_type} is not served (Bool, String, numbers)")
        header = resource.attributes.get("command")
        if not isinstance(header, str) or not _HEADER.fullmatch(header):
            raise ConfigurationError(f"{where}: attribute 'command' = {header!r} is not an SCPI header like MEAS:TEMP")
        return cls(resource.name, header, value_type)

    def decode(self, reply: str) -> Value:
        """The raw value of a query's reply line; ValueError if it is an error or not of the resource's type."""
        if reply.startswith(_ERROR_PREFIX):
            raise ValueError(f"the instrument answered {reply.removeprefix(_ERROR_PREFIX)}")
        if self.value_type == "Bool":
            if reply.upper() not in _BOOLEANS:
                raise ValueError(f"{reply!r} is not a Bool (1, 0, ON or OFF)")
            return _BOOLEANS[reply.upper()]
        if is_integer(self.value_type):
            return int(reply)
        if is_float(self.value_type):
            return float(reply)
        quoted = len(reply) >= 2 and reply[0] == reply[-1] == '"'
        return reply[1:-1].replace('""', '"') if quoted else reply

    def encode(self, value: Value) -> str:
        """The command that sets `value`; ValueError if it is not of the resource's type."""
        if isinstance(value, bool):
            if self.value_type != "Bool":
                raise ValueError(f"{value!r} is not a {self.value_type}")
            argument = "1" if value else "0"
        elif isinstance(value, int) and (is_integer(self.value_type) or is_float(self.value_type)):
            argument = str(value)
        elif isinstance(value, float) and is_float(self.value_type):
            argument = _shortest(value, bits(self.value_type))
        elif self.value_type == "String" and isinstance(value, str):
            argument = '"' + value.replace('"', '""') + '"'
        else:
            raise ValueError(f"{value!r} is not a {self.value_type}")
        return f"{self.header} {argument}"


def _shortest(value: float, width: int) -> str:
    """The shortest decimal that reads back as `value` at `width` bits: 3.3, not the Float32 3.299999952316284."""
    if width == 64 or not math.isfinite(value):
        return repr(value)
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        text = f"{value:.{digits}g}"
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == value:
            return text
    return repr(value)


class _Link:
    """The connection to one instrument: made on demand, dropped when a reply may still be on its way."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def exchange(self, line: str) -> str:
        """Send one line and return the reply line (OSError or EOFError when the connection fails)."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            reply = await reader.readline()
            if not reply.endswith(b"\n"):
                raise EOFError("the instrument closed the connection")
        except BaseException:  # failed, timed out or cancelled mid-exchange: the reply may still come
            self.drop()
            raise
        return reply.decode(errors="replace").strip()

    def drop(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None

    async def close(self) -> None:
        streams, self._streams = self._streams, None
        if streams is not None:
            streams[1].close()
            with contextlib.suppress(OSError):
                await streams[1].wait_closed()


@dataclass(frozen=True, slots=True)
class _Device:
    name: str
    timeout: float
    resources: Mapping[str, _Resource]
    link: _Link


class ScpiDriver(Driver):
    """Instruments that speak SCPI over TCP (protocol ``scpi``); see the module docstring."""

    def __init__(self, *, timeout: float = 1.0, push: PushSink | None = None) -> None:
        super().__init__(timeout=timeout, push=push)  # instruments do not push: `push` stays unused
        self._devices: dict[str, _Device] = {}

    async def add_device(self, device: DeviceBinding) -> None:
        """Check the properties and the resources' headers; adding a device again replaces it."""
        host, port, timeout = _properties(device)
        resources = {name: _Resource.parse(device.name, r) for name, r in device.resources.items()}
        await self.remove_device(device.name)
        self._devices[device.name] = _Device(device.name, timeout or self.timeout, resources, _Link(host, port))

    async def remove_device(self, name: str) -> None:
        device = self._devices.pop(name, None)
        if device is not None:
            await device.link.close()

    async def read(self, device: str, resources: Sequence[str]) -> ReadResult:
        """Query the resources one after another, all within the device's timeout."""
        target = self._device(device)
        result = ReadResult()
        async with self._deadline(target):
            for name in resources:
                resource = target.resources.get(name)
                if resource is None:
                    result.errors[name] = ResourceFailure(f"device {device!r} has no resource {name!r}")
                    continue
                result.requests += 1
                reply = await target.link.exchange(f"{resource.header}?")
                try:
                    result.values[name] = resource.decode(reply)
                except ValueError as error:
                    result.errors[name] = ResourceFailure(f"device {device!r} resource {name!r}: {error}")
        return result

    async def write(self, device: str, values: Mapping[str, Value]) -> None:
        """Set every value with one line, confirmed by ``*OPC?``; nothing is sent unless every value encodes."""
        target = self._device(device)
        commands = []
        for name, value in values.items():
            resource = target.resources.get(name)
            if resource is None:
                raise ResourceFailure(f"device {device!r} has no resource {name!r}")
            try:
                commands.append(resource.encode(value))
            except ValueError as error:
                raise ResourceFailure(f"device {device!r} resource {name!r}: {error}") from None
        async with self._deadline(target):
            reply = await target.link.exchange(";".join([*commands, "*OPC?"]))
        if reply != "1":
            raise ResourceFailure(f"device {device!r} refused {'; '.join(commands)}: {reply}")

    async def close(self) -> None:
        for name in list(self._devices):
            await self.remove_device(name)

    def _device(self, name: str) -> _Device:
        device = self._devices.get(name)
        if device is None:
            raise ConfigurationError(f"device {name!r} has not been added to the SCPI driver")
        return device

    @contextlib.asynccontextmanager
    async def _deadline(self, device: _Device) -> AsyncIterator[None]:
        """Turn a failed connection or a missed deadline into ConnectionLost naming the device and instrument."""
        where = f"device {device.name!r} at {device.link.host}:{device.link.port}"
        try:
            async with asyncio.timeout(device.timeout):
                yield
        except TimeoutError:
            raise ConnectionLost(f"{where}: no answer within {device.timeout} s") from None
        except (OSError, EOFError) as error:
            raise ConnectionLost(f"{where}: {error}") from None


def _properties(device: DeviceBinding) -> tuple[str, int, float | None]:
    def fail(name: str, reason: str) -> ConfigurationError:
        value = device.properties.get(name)
        shown = "" if value is None else f" = {value!r}"
        return ConfigurationError(f"device {device.name!r}: protocol property {PROTOCOL}.{name}{shown} {reason}")

    host = device.properties.get("Address", "").strip()
    if not host:
        raise fail("Address", "is required")
    port_text = device.properties.get("Port", "").strip()
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise fail("Port", "is not an integer 1-65535")
    timeout_text = device.properties.get("Timeout", "").strip()
    try:
        timeout = parse_seconds(timeout_text) if timeout_text else None
    except ValueError:
        raise fail("Timeout", "is not a positive number of seconds or a duration such as 500ms") from None
    return host, int(port_text), timeout
