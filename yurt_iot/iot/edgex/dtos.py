"""EdgeX v3 DTOs (go-mod-core-contracts, as core-metadata and core-command of EdgeX 3.x and 4.x speak them).

Only the fields the controller reads or writes are declared; everything else EdgeX sends is kept as an extra
field and sent back unchanged, so a read-modify-write round trip (a profile PUT, say) does not drop what a
newer EdgeX added (``tags``, ``properties``, ``parent``, ...). Python names are snake_case, the wire camelCase.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = [
    "AutoEvent",
    "CoreCommand",
    "CoreCommandParameter",
    "Device",
    "DeviceCommand",
    "DeviceProfile",
    "DeviceResource",
    "DeviceService",
    "DeviceServiceUpdate",
    "DeviceUpdate",
    "EdgeXModel",
    "Event",
    "Reading",
    "ResourceOperation",
    "ResourceProperties",
]


class EdgeXModel(BaseModel):
    """Base of every DTO: camelCase on the wire, unknown fields preserved."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def to_json(self) -> dict[str, Any]:
        """The DTO as EdgeX takes it: camelCase keys, unset fields left out, extra fields as they came."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class DeviceService(EdgeXModel):
    """A device service: the process core-command forwards a device's commands to, at `base_address`."""

    id: str | None = None
    name: str
    description: str | None = None
    labels: list[str] | None = None
    base_address: str
    admin_state: str = "UNLOCKED"
    created: int | None = None
    modified: int | None = None


class DeviceServiceUpdate(EdgeXModel):
    """A PATCH of a device service: identified by `id` or `name`; only the fields given change."""

    id: str | None = None
    name: str | None = None
    description: str | None = None
    labels: list[str] | None = None
    base_address: str | None = None
    admin_state: str | None = None


class ResourceProperties(EdgeXModel):
    """Type, transforms and bounds of a resource's value; EdgeX v3 carries the numbers as numbers."""

    value_type: str
    read_write: str
    units: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    default_value: str | None = None
    mask: int | None = None
    shift: int | None = None
    scale: float | None = None
    offset: float | None = None
    base: float | None = None
    assertion: str | None = None
    media_type: str | None = None


class DeviceResource(EdgeXModel):
    name: str
    description: str | None = None
    is_hidden: bool = False
    attributes: dict[str, Any] | None = None
    properties: ResourceProperties


class ResourceOperation(EdgeXModel):
    device_resource: str
    default_value: str | None = None
    mappings: dict[str, str] | None = None


class DeviceCommand(EdgeXModel):
    name: str
    is_hidden: bool = False
    read_write: str
    resource_operations: list[ResourceOperation]


class DeviceProfile(EdgeXModel):
    """A device profile: the resources and commands shared by the devices that name it."""

    id: str | None = None
    name: str
    manufacturer: str | None = None
    model: str | None = None
    description: str | None = None
    labels: list[str] | None = None
    device_resources: list[DeviceResource] | None = None
    device_commands: list[DeviceCommand] | None = None
    created: int | None = None
    modified: int | None = None


class AutoEvent(EdgeXModel):
    interval: str
    source_name: str
    on_change: bool | None = None


class Device(EdgeXModel):
    """A device: served by `service_name`, described by `profile_name`, addressed by `protocols`."""

    id: str | None = None
    name: str
    description: str | None = None
    admin_state: str = "UNLOCKED"
    operating_state: str = "UNKNOWN"
    labels: list[str] | None = None
    location: Any = None
    service_name: str
    profile_name: str | None = None
    protocols: dict[str, dict[str, Any]]
    auto_events: list[AutoEvent] | None = None
    created: int | None = None
    modified: int | None = None


class DeviceUpdate(EdgeXModel):
    """A PATCH of a device: identified by `id` or `name`; only the fields given change."""

    id: str | None = None
    name: str | None = None
    description: str | None = None
    admin_state: str | None = None
    operating_state: str | None = None
    labels: list[str] | None = None
    location: Any = None
    service_name: str | None = None
    profile_name: str | None = None
    protocols: dict[str, dict[str, Any]] | None = None
    auto_events: list[AutoEvent] | None = None


class Reading(EdgeXModel):
    """One value in an event: `value` (a string), or `binary_value` (base64) or `object_value`."""

    resource_name: str
    value_type: str
    device_name: str | None = None
    profile_name: str | None = None
    origin: int | None = None
    units: str | None = None
    value: str | None = None
    binary_value: str | None = None
    media_type: str | None = None
    object_value: Any = None


class Event(EdgeXModel):
    """What a device command read: the readings of one device and source; `origin` in nanoseconds."""

    id: str | None = None
    device_name: str
    profile_name: str | None = None
    source_name: str
    origin: int | None = None
    readings: list[Reading]


class CoreCommandParameter(EdgeXModel):
    resource_name: str
    value_type: str


class CoreCommand(EdgeXModel):
    """A command core-command offers for a device: readable (`get`) and/or writable (`set`) at `url` + `path`."""

    name: str
    get: bool = False
    set: bool = False
    path: str
    url: str
    parameters: list[CoreCommandParameter] | None = None
