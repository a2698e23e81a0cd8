"""A device's protocol properties: the endpoint it sits behind, its unit id and its timeout.

``modbus-tcp``: Address, Port, UnitID (0-255), optional Timeout and Framer (``socket``, Modbus TCP's MBAP header,
the default; or ``rtu``, RTU frames over TCP as serial-to-Ethernet converters forward them).
``modbus-rtu``: Address (the serial device path), UnitID, BaudRate, DataBits (5-8), StopBits (1 or 2), Parity
(N, O or E), optional Timeout. Timeout is seconds (``5``, ``0.5``) or a Go duration (``500ms``); without it the
driver's default applies. Other properties, such as EdgeX's IdleTimeout, are accepted and ignored. Numbers may
be decimal or 0x hex, as EdgeX's parser takes them.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pymodbus.framer import FramerType

from yurt_iot.runtime.sdk import ConfigurationError, parse_seconds

__all__ = ["PROTOCOLS", "DeviceConfig", "Endpoint", "SerialEndpoint", "TcpEndpoint", "parse_properties"]

TCP: Final = "modbus-tcp"
RTU: Final = "modbus-rtu"
PROTOCOLS: Final = (TCP, RTU)

_INTEGER: Final = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]+")
_FRAMERS: Final = {"socket": FramerType.SOCKET, "rtu": FramerType.RTU}


@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    """A Modbus TCP server; every device with the same host, port and framing shares one connection."""

    host: str
    port: int
    framer: FramerType = FramerType.SOCKET

    @property
    def key(self) -> object:
        return self

    def __str__(self) -> str:
        suffix = "" if self.framer is FramerType.SOCKET else " (RTU over TCP)"
        return f"{self.host}:{self.port}{suffix}"


@dataclass(frozen=True, slots=True)
class SerialEndpoint:
    """A serial port; every device on it shares the port, which must be set up the same way for all of them."""

    path: str
    baudrate: int
    bytesize: int
    parity: str
    stopbits: int

    @property
    def key(self) -> object:
        return ("serial", self.path)

    def __str__(self) -> str:
        return f"{self.path} ({self.baudrate} {self.bytesize}{self.parity}{self.stopbits})"


Endpoint = TcpEndpoint | SerialEndpoint


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    endpoint: Endpoint
    unit: int
    timeout: float | None
    """Seconds a request may take, or None for the driver's default."""


def parse_properties(device: str, protocol: str, properties: Mapping[str, str]) -> DeviceConfig:
    """The device's config; ConfigurationError names the device and the property that is missing or wrong."""
    return _Parser(device, protocol, properties).config()


class _Parser:
    def __init__(self, device: str, protocol: str, properties: Mapping[str, str]) -> None:
        self.device, self.protocol, self.properties = device, protocol, properties

    def fail(self, name: str, reason: str) -> ConfigurationError:
        value = self.properties.get(name)
        shown = "" if value is None else f" = {value!r}"
        return ConfigurationError(f"device {self.device!r}: protocol property {self.protocol}.{name}{shown} {reason}")

    def text(self, name: str) -> str:
        value = str(self.properties.get(name, "")).strip()
        if not value:
            raise self.fail(name, "is required")
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        text = self.text(name)
        number = int(text, 16 if text[1:2] in ("x", "X") else 10) if _INTEGER.fullmatch(text) else None
        if number is None or not low <= number <= high:
            raise self.fail(name, f"is not an integer {low}-{high}")
        return number

    def parity(self) -> str:
        parity = self.text("Parity").upper()
        if parity not in ("N", "O", "E"):
            raise self.fail("Parity", "is none of N, O, E")
        return parity

    def timeout(self) -> float | None:
        text = str(self.properties.get("Timeout", "")).strip()
        if not text:
            return None
        try:
            return parse_seconds(text)
        except ValueError:
            raise self.fail("Timeout", "is not a positive number of seconds or a duration such as 500ms") from None

    def config(self) -> DeviceConfig:
        if self.protocol == TCP:
            endpoint: Endpoint = self.tcp()
        elif self.protocol == RTU:
            endpoint = self.serial()
        else:
            raise ConfigurationError(f"device {self.device!r}: protocol {self.protocol!r} is none of {PROTOCOLS}")
        return DeviceConfig(endpoint, self.integer("UnitID", 0, 255), self.timeout())

    def tcp(self) -> TcpEndpoint:
        framer = str(self.properties.get("Framer", "socket")).strip().lower()
        if framer not in _FRAMERS:
            raise self.fail("Framer", f"is none of {', '.join(_FRAMERS)}")
        return TcpEndpoint(self.text("Address"), self.integer("Port", 1, 65535), _FRAMERS[framer])

    def serial(self) -> SerialEndpoint:
        if importlib.util.find_spec("serial") is None:
            raise ConfigurationError(f"device {self.device!r}: {RTU} needs pyserial, which is not installed")
        return SerialEndpoint(
            self.text("Address"),
            self.integer("BaudRate", 1, 10_000_000),
            self.integer("DataBits", 5, 8),
            self.parity(),
            self.integer("StopBits", 1, 2),
        )
