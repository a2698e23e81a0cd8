"""Async client of EdgeX core-command (REST API v3, port 59882): read and write a device's commands.

core-command looks the device up in core-metadata and forwards the request to the device's service, so its
errors come from three places: core-command itself (NotFound for an unknown device or command), the device
service being unreachable (Unavailable), and the device service's own answer (Locked for a LOCKED device,
or whatever the driver reports).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from yurt_iot.iot.edgex.dtos import CoreCommand, Event
from yurt_iot.iot.edgex.errors import EdgeXError
from yurt_iot.iot.edgex.http import EdgeXService

__all__ = ["CoreCommandClient"]


def _device_path(device: str, command: str | None = None) -> str:
    if not device or command == "":
        raise ValueError("device and command names must not be empty")
    path = f"/device/name/{quote(device, safe='')}"
    return path if command is None else f"{path}/{quote(command, safe='')}"


def _flag(value: bool) -> str:
    return "true" if value else "false"


class CoreCommandClient(EdgeXService):
    """core-command at `base_url`, e.g. ``CoreCommandClient("http://127.0.0.1:59882")``."""

    async def device_commands(self, device: str) -> list[CoreCommand]:
        """The commands core-command offers for `device` (its profile's non-hidden resources and commands)."""
        body = await self._json("GET", _device_path(device))
        commands = (body.get("deviceCoreCommand") or {}).get("coreCommands") if isinstance(body, dict) else None
        try:
            return [CoreCommand.model_validate(c) for c in commands or []]
        except ValidationError as exc:
            raise EdgeXError(None, f"unexpected core commands of {device!r}: {exc}") from exc

    async def read(
        self, device: str, command: str, *, push_event: bool = False, return_event: bool = True
    ) -> Event | None:
        """Read `command` of `device` now. `push_event` also publishes the event to EdgeX's event stream;
        without `return_event` the reading is not sent back and the result is None."""
        params = {"ds-pushevent": _flag(push_event), "ds-returnevent": _flag(return_event)}
        body = await self._json("GET", _device_path(device, command), params=params)
        event = body.get("event") if isinstance(body, dict) else None
        if event is None:
            if return_event:
                raise EdgeXError(None, f"read of {device}/{command} returned no event: {body!r:.300}")
            return None
        try:
            return Event.model_validate(event)
        except ValidationError as exc:
            raise EdgeXError(None, f"unexpected event from {device}/{command}: {exc}") from exc

    async def write(self, device: str, command: str, values: Mapping[str, Any]) -> None:
        """Write `values` (resource name -> value, usually a string) through `command` of `device`."""
        await self._request("PUT", _device_path(device, command), json=dict(values))
