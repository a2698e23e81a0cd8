"""Desired property values of a cloud-owned Device written through EdgeX core-command, and read back.

OpenYurt reads every readable property of every device on each 5 s round and writes the ones that differ;
here a property is touched only when it is due: its desired value differs from the last value read back
(``status.deviceProperties[name].actualValue``). A due property is written (``PUT`` of its resource through
core-command) and read back once, and the read-back value becomes the actual value. As in OpenYurt, writes
wait until the device is UP and UNLOCKED in EdgeX; failures are reported per property, not raised.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from yurt_iot.iot.edgex import dtos
from yurt_iot.iot.edgex.command import CoreCommandClient
from yurt_iot.iot.edgex.errors import EdgeXError
from yurt_iot.kube import Obj

__all__ = ["PropertyResult", "PropertySync", "same_value"]


def same_value(actual: str | None, desired: str) -> bool:
    """Whether a read-back value already is the desired one; numbers compare as numbers, since EdgeX formats
    floats its own way (``"2.15e+01"`` for 21.5)."""
    if actual is None:
        return False
    if actual == desired:
        return True
    try:
        a, d = float(actual), float(desired)
    except ValueError:
        return actual.strip().lower() == desired.strip().lower()  # Bool: "true" / "True"
    return math.isclose(a, d, rel_tol=1e-6, abs_tol=1e-9)


def _reading_text(reading: dtos.Reading) -> str:
    if reading.value is not None:
        return reading.value
    if reading.binary_value is not None:
        return f"{reading.media_type}:blob value"  # as OpenYurt shows binary readings
    return json.dumps(reading.object_value, sort_keys=True)


@dataclass
class PropertyResult:
    """What a round of writes produced: the new `status.deviceProperties` (None: nothing written) and problems."""

    actual: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)


class PropertySync:
    """Writes the due desired values of a device through core-command (None: no core-command configured)."""

    def __init__(self, command: CoreCommandClient | None) -> None:
        self.command = command
        # The last value read back per (device, property): the informer's copy of the status may not show our
        # own latest status write yet when the device is reconciled again, and the write must not be repeated.
        self._read_back: dict[tuple[str, str], dict[str, Any]] = {}

    async def sync(self, obj: Obj, edge: dtos.Device) -> PropertyResult:
        desired: dict[str, Any] = (obj.get("spec") or {}).get("deviceProperties") or {}
        if not desired:
            return PropertyResult()
        current: dict[str, Any] = dict((obj.get("status") or {}).get("deviceProperties") or {})
        current |= {key: self._read_back[edge.name, key] for key in desired if (edge.name, key) in self._read_back}
        due = {
            key: prop
            for key, prop in desired.items()
            if not same_value((current.get(key) or {}).get("actualValue"), str(prop.get("desiredValue", "")))
        }
        if not due:
            return PropertyResult()
        if self.command is None:
            return PropertyResult(problems=["no core-command address is configured: desired values are not written"])
        if edge.admin_state != "UNLOCKED" or edge.operating_state != "UP":
            state = f"{edge.admin_state}/{edge.operating_state}"
            return PropertyResult(problems=[f"desired values wait until the device is UNLOCKED and UP (now {state})"])
        actual = dict(current)
        problems = []
        for key, prop in due.items():
            name = str(prop.get("name") or key)
            try:
                actual[key] = self._read_back[edge.name, key] = await self._write_and_read(
                    edge.name, name, str(prop.get("desiredValue", ""))
                )
            except EdgeXError as exc:  # core-command or the device service: retried with the device's backoff
                problems.append(f"{name}: {exc}")
        return PropertyResult(actual, problems)

    async def _write_and_read(self, device: str, name: str, value: str) -> dict[str, Any]:
        assert self.command is not None
        await self.command.write(device, name, {name: value})
        event = await self.command.read(device, name)
        reading = next((r for r in (event.readings if event else []) if r.resource_name == name), None)
        if reading is None:
            raise EdgeXError(None, f"the read-back of {name} returned no {name} reading")
        url = f"{self.command.base_url}/api/v3/device/name/{device}/{name}"
        return {"name": name, "getURL": url, "actualValue": _reading_text(reading)}
