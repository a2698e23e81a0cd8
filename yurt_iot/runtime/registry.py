"""Find drivers through the `yurt_iot.drivers` entry point group, importing only the ones in use.

Each entry point is named after a protocol (a key of a Device's `spec.protocols`, e.g. `modbus-tcp`) and
points at a `Driver` subclass. Built-in drivers are registered the same way as a third-party package's, so
installing a driver is all it takes to use it. Loading is lazy because drivers are heavy to import (asyncua
alone costs about 50 MB and 0.4 s): a gateway that only talks Modbus never imports asyncua.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from yurt_iot.runtime.sdk import Driver

ENTRY_POINT_GROUP = "yurt_iot.drivers"


class UnknownProtocolError(LookupError):
    """No installed driver serves the protocol."""


def available_protocols() -> dict[str, EntryPoint]:
    """Protocol name -> entry point of every installed driver, without importing any of them."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


@cache
def driver_class(protocol: str) -> type[Driver]:
    """The driver class serving `protocol`, imported on first use."""
    found = available_protocols().get(protocol)
    if found is None:
        known = ", ".join(sorted(available_protocols())) or "none"
        raise UnknownProtocolError(f"no driver for protocol {protocol!r} (installed: {known})")
    cls = found.load()
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise TypeError(f"entry point {found.name} = {found.value} is not a yurt_iot Driver subclass")
    return cls
