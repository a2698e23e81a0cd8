"""Pure conversions between our CRs (`yurt_iot.api.iot`) and EdgeX DTOs, both ways, as OpenYurt's yurt-iot-dock
does them (pkg/yurtiotdock/clients/edgex-foundry/v3/util.go), minus its rough edges.

* **Names.** A CR's EdgeX name is its `yurt-iot-dock/edgex-object.name` label, else its own name
  (:func:`yurt_iot.api.iot.edge_name`). An object found only in EdgeX becomes the CR ``<pool>-<name>`` (lower
  case, ``_`` -> ``-``; :func:`cr_name`) carrying that label, so that it maps back to the same EdgeX name.
* **Ownership.** Edge-discovered devices and services are `managed: false`: the edge owns them, the cloud
  only mirrors them. Status gets the EdgeX id (`edgeId`, and `id` for profiles) and states.
* **States.** An empty adminState means UNLOCKED and an empty operatingState UNKNOWN.
* **Values.** The CRs keep profile numbers (minimum, scale, mask, ...) as strings and protocol properties as
  strings; EdgeX v3 wants numbers for the former and takes any JSON value for the latter. Numbers EdgeX sends
  back are written the short way (``0.1``, ``10``) rather than Go's ``%f`` (``10.000000``), and a location
  that is not a string becomes its JSON text where OpenYurt would panic.
* **Updates** identify the device by its EdgeX name (OpenYurt sends the CR name, which differs for
  edge-discovered devices) and carry the EdgeX id when the status has one.
* **Not mapped:** a resource's `tag` (EdgeX v3 has a `tags` map instead) and the device's `notify`
  (OpenYurt never syncs it either); `deviceProperties` go through core-command, not core-metadata.

Bad input raises ValueError naming the field.
"""

from __future__ import annotations

import json
import math
from typing import Any

from yurt_iot.api import iot
from yurt_iot.api.meta import ObjectMeta
from yurt_iot.iot.edgex import dtos

__all__ = [
    "cr_name",
    "device_from_edgex",
    "device_profile_from_edgex",
    "device_profile_to_edgex",
    "device_service_from_edgex",
    "device_service_to_edgex",
    "device_service_update",
    "device_to_edgex",
    "device_update",
]

_FLOAT_PROPERTIES = ("minimum", "maximum", "scale", "offset", "base")
_INT_PROPERTIES = ("mask", "shift")


def cr_name(pool: str, edgex_name: str) -> str:
    """The CR name of an object found in EdgeX under `edgex_name`, in `pool`."""
    return f"{pool}-{edgex_name.lower().replace('_', '-')}"


def _meta(pool: str, namespace: str, edgex_name: str) -> ObjectMeta:
    return ObjectMeta(
        name=cr_name(pool, edgex_name), namespace=namespace, labels={iot.EDGEX_OBJECT_NAME_LABEL: edgex_name}
    )


def _text(value: Any) -> str:
    """A JSON value as the string a CR field holds: strings as they are, numbers the short way, others as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, sort_keys=True)


def _attribute(value: Any) -> iot.AttributeValue:
    return value if isinstance(value, str | int | float) else _text(value)  # bool is an int


def _float(text: str, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a number") from None


def _int(text: str, field: str) -> int:
    body = text.strip().lstrip("+-").lower()
    try:
        value = int(body[2:], 16) if body.startswith("0x") else int(body, 10)
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not an integer") from None
    return -value if text.strip().startswith("-") else value


# --- devices -----------------------------------------------------------------------------------------


def _auto_events_to_edgex(events: list[iot.AutoEvent] | None) -> list[dtos.AutoEvent] | None:
    if events is None:
        return None
    return [dtos.AutoEvent(interval=e.interval, source_name=e.source_name, on_change=e.on_change) for e in events]


def device_to_edgex(device: iot.Device) -> dtos.Device:
    """The EdgeX device a Device CR asks for (for a create, or to compare with what EdgeX has)."""
    spec = device.spec
    return dtos.Device(
        id=device.status.edge_id if device.status else None,
        name=iot.edge_name(device),
        description=spec.description,
        admin_state=spec.admin_state or "UNLOCKED",
        operating_state=spec.operating_state or "UNKNOWN",
        labels=spec.labels,
        location=spec.location,
        service_name=spec.service_name,
        profile_name=spec.profile_name,
        protocols={name: dict(props) for name, props in (spec.protocols or {}).items()},
        auto_events=_auto_events_to_edgex(spec.auto_events),
    )


def device_update(device: iot.Device) -> dtos.DeviceUpdate:
    """A PATCH that makes the EdgeX device match the CR's spec: a description or labels the CR lacks are
    cleared in EdgeX (sent empty), not left as they were."""
    wanted = device_to_edgex(device).model_dump(exclude={"created", "modified"})
    wanted |= {"description": wanted["description"] or "", "labels": wanted["labels"] or []}
    if not wanted["protocols"]:
        del wanted["protocols"]  # EdgeX refuses an empty map; without one the device keeps its protocols
    return dtos.DeviceUpdate.model_validate(wanted)


def device_from_edgex(device: dtos.Device, *, pool: str, namespace: str) -> iot.Device:
    """The Device CR for a device found only in EdgeX: named `<pool>-<name>`, owned by the edge."""
    if not device.profile_name:
        raise ValueError(f"device {device.name}: profileName: a Device CR needs a profile, EdgeX has none")
    return iot.Device.model_validate(
        {
            "metadata": _meta(pool, namespace, device.name).to_dict(),
            "spec": {
                "description": device.description,
                "adminState": device.admin_state,
                "operatingState": device.operating_state,
                "protocols": {p: {k: _text(v) for k, v in props.items()} for p, props in device.protocols.items()},
                "labels": device.labels,
                "location": None if device.location is None else _text(device.location),
                "serviceName": device.service_name,
                "profileName": device.profile_name,
                "notify": False,
                "managed": False,
                "nodePool": pool,
                "autoEvents": [e.model_dump(by_alias=True, exclude_none=True) for e in device.auto_events or []]
                or None,
            },
            "status": {
                "edgeId": device.id,
                "adminState": device.admin_state,
                "operatingState": device.operating_state,
            },
        }
    )


# --- device services ---------------------------------------------------------------------------------


def device_service_to_edgex(service: iot.DeviceService) -> dtos.DeviceService:
    spec = service.spec
    return dtos.DeviceService(
        id=service.status.edge_id if service.status else None,
        name=iot.edge_name(service),
        description=spec.description,
        labels=spec.labels,
        base_address=spec.base_address,
        admin_state=spec.admin_state or "UNLOCKED",
    )


def device_service_update(service: iot.DeviceService) -> dtos.DeviceServiceUpdate:
    """A PATCH that makes the EdgeX device service match the CR's spec (absent description and labels: cleared)."""
    wanted = device_service_to_edgex(service).model_dump(exclude={"created", "modified"})
    wanted |= {"description": wanted["description"] or "", "labels": wanted["labels"] or []}
    return dtos.DeviceServiceUpdate.model_validate(wanted)


def device_service_from_edgex(service: dtos.DeviceService, *, pool: str, namespace: str) -> iot.DeviceService:
    return iot.DeviceService.model_validate(
        {
            "metadata": _meta(pool, namespace, service.name).to_dict(),
            "spec": {
                "baseAddress": service.base_address,
                "description": service.description,
                "labels": service.labels,
                "adminState": service.admin_state,
                "managed": False,
                "nodePool": pool,
            },
            "status": {"edgeId": service.id, "adminState": service.admin_state},
        }
    )


# --- device profiles ---------------------------------------------------------------------------------


def _properties_to_edgex(props: iot.ResourceProperties, where: str) -> dtos.ResourceProperties:
    if props.value_type is None or props.read_write is None:
        raise ValueError(f"{where}.valueType and {where}.readWrite: EdgeX requires both")
    numbers: dict[str, float | int] = {}
    for name in _FLOAT_PROPERTIES:
        if (text := getattr(props, name)) is not None:
            numbers[name] = _float(text, f"{where}.{name}")
    for name in _INT_PROPERTIES:
        if (text := getattr(props, name)) is not None:
            numbers[name] = _int(text, f"{where}.{name}")
    return dtos.ResourceProperties(
        value_type=props.value_type,
        read_write=props.read_write,
        units=props.units,
        default_value=props.default_value,
        assertion=props.assertion,
        media_type=props.media_type,
        **numbers,
    )


def _command_to_edgex(command: iot.DeviceCommand, where: str) -> dtos.DeviceCommand:
    operations = []
    for i, op in enumerate(command.resource_operations):
        if not op.device_resource:
            raise ValueError(f"{where}.resourceOperations[{i}].deviceResource: required by EdgeX")
        operations.append(
            dtos.ResourceOperation(
                device_resource=op.device_resource, default_value=op.default_value or None, mappings=op.mappings
            )
        )
    return dtos.DeviceCommand(
        name=command.name, is_hidden=command.is_hidden, read_write=command.read_write, resource_operations=operations
    )


def device_profile_to_edgex(profile: iot.DeviceProfile) -> dtos.DeviceProfile:
    spec = profile.spec
    resources = [
        dtos.DeviceResource(
            name=r.name,
            description=r.description,
            is_hidden=r.is_hidden,
            attributes=dict(r.attributes) if r.attributes is not None else None,
            properties=_properties_to_edgex(r.properties, f"spec.deviceResources[{i}].properties"),
        )
        for i, r in enumerate(spec.device_resources or [])
    ]
    commands = [_command_to_edgex(c, f"spec.deviceCommands[{i}]") for i, c in enumerate(spec.device_commands or [])]
    return dtos.DeviceProfile(
        id=profile.status.id if profile.status else None,
        name=iot.edge_name(profile),
        manufacturer=spec.manufacturer,
        model=spec.model,
        description=spec.description,
        labels=spec.labels,
        device_resources=resources or None,
        device_commands=commands or None,
    )


def _properties_from_edgex(props: dtos.ResourceProperties) -> dict[str, Any]:
    numbers = {name: getattr(props, name) for name in (*_FLOAT_PROPERTIES, *_INT_PROPERTIES)}
    return {
        "valueType": props.value_type,
        "readWrite": props.read_write,
        "units": props.units,
        "defaultValue": props.default_value,
        "assertion": props.assertion,
        "mediaType": props.media_type,
        **{name: _text(value) for name, value in numbers.items() if value is not None},
    }


def device_profile_from_edgex(profile: dtos.DeviceProfile, *, pool: str, namespace: str) -> iot.DeviceProfile:
    resources = [
        {
            "name": r.name,
            "description": r.description or "",
            "isHidden": r.is_hidden,
            "properties": _properties_from_edgex(r.properties),
            "attributes": {k: _attribute(v) for k, v in r.attributes.items()} if r.attributes is not None else None,
        }
        for r in profile.device_resources or []
    ]
    commands = [
        {
            "name": c.name,
            "isHidden": c.is_hidden,
            "readWrite": c.read_write,
            "resourceOperations": [
                {"deviceResource": op.device_resource, "defaultValue": op.default_value or "", "mappings": op.mappings}
                for op in c.resource_operations
            ],
        }
        for c in profile.device_commands or []
    ]
    return iot.DeviceProfile.model_validate(
        {
            "metadata": _meta(pool, namespace, profile.name).to_dict(),
            "spec": {
                "nodePool": pool,
                "description": profile.description,
                "manufacturer": profile.manufacturer,
                "model": profile.model,
                "labels": profile.labels,
                "deviceResources": resources or None,
                "deviceCommands": commands or None,
            },
            "status": {"id": profile.id},
        }
    )
