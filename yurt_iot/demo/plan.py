"""What the demo must start so that the devices of the manifests answer: one simulator per Modbus or OPC-UA
endpoint, one per MQTT device, and the MQTT brokers they talk through, on the ports the manifests name.

The manifests are the ones a user would `kubectl apply`; the demo adapts to them rather than the other way round,
so an edited example (another port, a second unit id, a second sensor) is simulated as written.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from yurt_iot.api.iot import Device

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})


class DemoError(RuntimeError):
    """The demo cannot run as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Simulator:
    """A simulator process: what it is for, the port it serves (or needs), and its command line."""

    purpose: str
    port: int
    argv: tuple[str, ...]
    listens: bool = True
    """False for an MQTT device, which connects to the broker on `port` rather than listening on it."""


@dataclass
class Plan:
    brokers: set[int] = field(default_factory=set)
    """Ports of the MQTT brokers to start."""
    simulators: list[Simulator] = field(default_factory=list)
    unsimulated: list[str] = field(default_factory=list)
    """Devices the demo cannot simulate (they will show DOWN), with the reason."""


def _module(name: str) -> tuple[str, ...]:
    return (sys.executable, "-m", f"yurt_iot.sim.{name}")


def _loopback_port(device: str, url_or_host: str, port: object) -> int:
    host = urlsplit(url_or_host).hostname if "://" in url_or_host else url_or_host
    if host not in LOOPBACK_NAMES:
        raise ValueError(f"{device} is at {host}; the demo simulates devices on 127.0.0.1 only")
    if not isinstance(port, int | str) or not str(port).isdigit():
        raise ValueError(f"{device} has no port in {url_or_host!r}")
    return int(port)


def plan(devices: Iterable[Device], telemetry_broker: int) -> Plan:
    """The processes that make `devices` answer, and `telemetry_broker`, where the gateway publishes."""
    result = Plan(brokers={telemetry_broker})
    modbus_units: dict[int, list[str]] = defaultdict(list)
    for device in devices:
        name = device.metadata.name or "?"
        for protocol, properties in (device.spec.protocols or {}).items():
            try:
                if protocol == "modbus-tcp":
                    port = _loopback_port(name, properties.get("Address", ""), properties.get("Port", "502"))
                    modbus_units[port].append(properties.get("UnitID", "1"))
                elif protocol == "opcua":
                    endpoint = properties.get("Endpoint", "")
                    port = _loopback_port(name, endpoint, urlsplit(endpoint).port)
                    argv = (*_module("opcua"), "--port", str(port))
                    result.simulators.append(Simulator(f"OPC-UA simulator of {name}", port, argv))
                elif protocol == "mqtt":
                    broker = properties.get("Broker", "tcp://127.0.0.1:1883")  # the driver's default
                    port = _loopback_port(name, broker, urlsplit(broker).port or 1883)
                    result.brokers.add(port)
                    argv = (*_module("mqtt"), "--broker-port", str(port), "--device", name,
                            "--command-topic", properties.get("CommandTopic", f"command/{name}"))  # fmt: skip
                    result.simulators.append(Simulator(f"MQTT simulator of {name}", port, argv, listens=False))
                else:
                    result.unsimulated.append(f"{name}: no simulator for protocol {protocol}")
            except ValueError as error:
                result.unsimulated.append(str(error))
    for port, units in sorted(modbus_units.items()):
        argv = (*_module("modbus"), "--port", str(port), "--units", ",".join(sorted(set(units), key=int)))
        result.simulators.insert(0, Simulator(f"Modbus simulator (units {', '.join(units)})", port, argv))
    return result
