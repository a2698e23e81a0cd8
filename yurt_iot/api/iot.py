"""`iot.openyurt.io/v1alpha1`: Device, DeviceService and DeviceProfile, field for field as OpenYurt ships them.

Additions over OpenYurt are optional and marked as such; a manifest valid for OpenYurt is valid here.
Enumerations and number formats that OpenYurt only checks at the edge are enforced by the CRD schema,
so a typo is refused by `kubectl apply` instead of failing later in EdgeX.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from yurt_iot.api.meta import ApiModel, Condition, PrinterColumn, Resource, ResourceType, age_column

GROUP = "iot.openyurt.io"
VERSION = "v1alpha1"

#: Label that names the EdgeX object a CR was synced from (CRs are named `<pool>-<name>`).
EDGEX_OBJECT_NAME_LABEL = "yurt-iot-dock/edgex-object.name"

AdminState = Literal["LOCKED", "UNLOCKED"]
OperatingState = Literal["UP", "DOWN", "UNKNOWN"]
ReadWrite = Literal["R", "W", "RW", "WR"]
ValueType = Literal[
    "Bool", "String", "Binary", "Object",
    "Uint8", "Uint16", "Uint32", "Uint64", "Int8", "Int16", "Int32", "Int64", "Float32", "Float64",
    "BoolArray", "StringArray", "ObjectArray",
    "Uint8Array", "Uint16Array", "Uint32Array", "Uint64Array",
    "Int8Array", "Int16Array", "Int32Array", "Int64Array", "Float32Array", "Float64Array",
]  # fmt: skip

#: Bound on resources and commands per profile; it also keeps the cost of the CEL rules within the API server's budget.
MAX_PROFILE_ITEMS = 1000

_NUMBER = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
_INTEGER = r"^([-+]?[0-9]+|0[xX][0-9a-fA-F]+)$"
_DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"


def _pool_columns(kind: str, *, managed: bool) -> tuple[PrinterColumn, ...]:
    columns = [
        PrinterColumn("NODEPOOL", ".spec.nodePool", description=f"The nodepool of {kind}"),
        PrinterColumn("SYNCED", ".status.synced", "boolean", f"The synced status of {kind}"),
    ]
    if managed:
        columns.append(PrinterColumn("MANAGED", ".spec.managed", "boolean", f"The managed status of {kind}", 1))
    return (*columns, age_column())


# --- Device ------------------------------------------------------------------------------------------


class DesiredPropertyState(ApiModel):
    """A value the cloud wants a device property to have."""

    name: str
    """Name of the device resource (property) to write."""
    put_url: str | None = Field(default=None, alias="putURL")
    """URL used to write the property (filled in by the controller)."""
    desired_value: str
    """The value to write, as a string; it is parsed according to the resource's valueType."""


class ActualPropertyState(ApiModel):
    """The last value read from a device property."""

    name: str
    """Name of the device resource (property)."""
    get_url: str | None = Field(default=None, alias="getURL")
    """URL used to read the property."""
    actual_value: str
    """The value read from the device, as a string."""


class AutoEvent(ApiModel):
    """Periodic reading of a resource or command (an EdgeX autoEvent). Addition over OpenYurt."""

    source_name: str = Field(min_length=1)
    """Device resource or device command to read."""
    interval: str = Field(pattern=_DURATION)
    """Read period as a Go duration, e.g. 500ms, 10s, 1m."""
    on_change: bool | None = None
    """Publish a reading only when its value changed since the last one published."""


class DeviceSpec(ApiModel):
    """DeviceSpec defines the desired state of Device."""

    description: str | None = None
    """Information describing the device."""
    admin_state: AdminState | None = None
    """Admin state (LOCKED/UNLOCKED)."""
    operating_state: OperatingState | None = None
    """Operating state (UP/DOWN/UNKNOWN)."""
    protocols: dict[str, dict[str, str]] | None = None
    """Protocol properties by protocol name, e.g. modbus-tcp: {Address: 127.0.0.1, Port: "502", UnitID: "1"}."""
    labels: list[str] | None = None
    """Other labels applied to the device to help with searching."""
    location: str | None = None
    """Device service specific location."""
    service_name: str = Field(min_length=1)
    """Associated device service; one per device."""
    profile_name: str = Field(min_length=1)
    """Associated device profile, which describes the device."""
    notify: bool
    """Kept for OpenYurt compatibility; never synced to EdgeX."""
    managed: bool | None = None
    """True: the cloud owns the device and pushes its edits to the edge; false: the edge owns it."""
    node_pool: str | None = None
    """The NodePool whose device controller handles this device."""
    device_properties: dict[str, DesiredPropertyState] | None = None
    """Desired values of device properties, by property name."""
    auto_events: list[AutoEvent] | None = None
    """Periodic readings of the device (EdgeX autoEvents). Addition over OpenYurt."""


class DeviceStatus(ApiModel):
    """DeviceStatus defines the observed state of Device."""

    last_connected: int | None = None
    """Time (milliseconds) that the device last provided any feedback or responded to any request."""
    last_reported: int | None = None
    """Time (milliseconds) that the device reported data to the core microservice."""
    synced: bool | None = None
    """Whether the device exists both in the cluster and on the edge platform."""
    device_properties: dict[str, ActualPropertyState] | None = None
    """Actual values of device properties, by property name."""
    edge_id: str | None = None
    """Id of the device on the edge platform."""
    admin_state: AdminState | None = None
    """Admin state (LOCKED/UNLOCKED) on the edge."""
    operating_state: OperatingState | None = None
    """Operating state (UP/DOWN/UNKNOWN) on the edge."""
    conditions: list[Condition] | None = None
    """Current state of the device: DeviceSynced, DeviceManaging."""


class Device(Resource):
    """Device is a physical or simulated device served by a device service of a NodePool."""

    resource_type = ResourceType(
        GROUP, VERSION, "Device", "devices",
        short_names=("dev",), printer_columns=_pool_columns("device", managed=True),
        finalizer="iot.openyurt.io/device",
    )  # fmt: skip

    spec: DeviceSpec
    status: DeviceStatus | None = None


# --- DeviceService -----------------------------------------------------------------------------------


class DeviceServiceSpec(ApiModel):
    """DeviceServiceSpec defines the desired state of DeviceService."""

    base_address: str = Field(min_length=1)
    """Address the device service is reached at, e.g. http://edgex-device-modbus:59901."""
    description: str | None = None
    """Information describing the device service."""
    labels: list[str] | None = None
    """Labels to help with searching."""
    admin_state: AdminState | None = None
    """Admin state (LOCKED/UNLOCKED)."""
    managed: bool | None = None
    """True: the cloud owns the service and pushes its edits to the edge; false: the edge owns it."""
    node_pool: str | None = None
    """The NodePool whose device controller handles this service."""


class DeviceServiceStatus(ApiModel):
    """DeviceServiceStatus defines the observed state of DeviceService."""

    synced: bool | None = None
    """Whether the service exists both in the cluster and on the edge platform."""
    edge_id: str | None = None
    """Id of the service on the edge platform."""
    last_connected: int | None = None
    """Time (milliseconds) that the service last responded."""
    last_reported: int | None = None
    """Time (milliseconds) that the service last reported data."""
    admin_state: AdminState | None = None
    """Admin state on the edge."""
    conditions: list[Condition] | None = None
    """Current state of the service: DeviceServiceSynced, DeviceServiceManaging."""


class DeviceService(Resource):
    """DeviceService is a process that talks to devices of one protocol (EdgeX device service or native)."""

    resource_type = ResourceType(
        GROUP, VERSION, "DeviceService", "deviceservices",
        short_names=("dsvc",), printer_columns=_pool_columns("deviceService", managed=True),
        finalizer="iot.openyurt.io/deviceservice",
    )  # fmt: skip

    spec: DeviceServiceSpec
    status: DeviceServiceStatus | None = None


# --- DeviceProfile -----------------------------------------------------------------------------------


class ResourceProperties(ApiModel):
    """How a device resource's value is typed, transformed and bounded (EdgeX ResourceProperties).

    Numbers are strings, as in OpenYurt; the schema checks that they parse.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.minimum) || !has(self.maximum) || double(self.minimum) <= double(self.maximum)",
                    "message": "minimum must not be greater than maximum",
                    "fieldPath": ".minimum",
                }
            ]
        }
    )

    read_write: ReadWrite | None = None
    """Access: R, W, RW or WR."""
    minimum: str | None = Field(default=None, pattern=_NUMBER, max_length=64)
    """Smallest value a write may set."""
    maximum: str | None = Field(default=None, pattern=_NUMBER, max_length=64)
    """Largest value a write may set."""
    default_value: str | None = None
    """Value written when a write gives none."""
    mask: str | None = Field(default=None, pattern=_INTEGER, max_length=64)
    """Bit mask ANDed with the raw value on read."""
    shift: str | None = Field(default=None, pattern=_INTEGER, max_length=64)
    """Bit shift applied after the mask on read (positive: left, negative: right)."""
    scale: str | None = Field(default=None, pattern=_NUMBER, max_length=64)
    """Factor the raw value is multiplied by on read (divided by on write)."""
    offset: str | None = Field(default=None, pattern=_NUMBER, max_length=64)
    """Value added after scaling on read (subtracted on write)."""
    base: str | None = Field(default=None, pattern=_NUMBER, max_length=64)
    """Base raised to the power of the raw value on read."""
    assertion: str | None = None
    """Expected value; a reading that differs marks the device DOWN."""
    media_type: str | None = None
    """Media type of Binary values."""
    units: str | None = None
    """Units of the value."""
    value_type: ValueType | None = None
    """Type of the value: Bool, String, Int8..Int64, Uint8..Uint64, Float32, Float64, Binary, arrays."""


AttributeScalar = str | int | float | bool
AttributeValue = AttributeScalar | list[AttributeScalar]
"""A resource attribute: a scalar, or a list of them (e.g. OPC-UA's ``inputMap: [2, 3]``, as EdgeX writes it)."""


class DeviceResource(ApiModel):
    """One value of a device: a register, a node, a topic field."""

    description: str
    """What the resource is."""
    name: str = Field(min_length=1)
    """Name of the resource, unique in the profile."""
    is_hidden: bool
    """Hidden resources are not exposed as commands."""
    tag: str | None = None
    """Free tag."""
    properties: ResourceProperties
    """Type, transforms and bounds of the value."""
    attributes: dict[str, AttributeValue] | None = Field(
        default=None,
        json_schema_extra={"additionalProperties": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    """Protocol-specific addressing, e.g. primaryTable and startingAddress for Modbus, nodeId for OPC-UA."""


class ResourceOperation(ApiModel):
    """One resource read or written by a device command."""

    device_resource: str | None = None
    """Name of the device resource."""
    mappings: dict[str, str] | None = None
    """Raw value to display value mapping."""
    default_value: str
    """Value written when the command gives none."""


class DeviceCommand(ApiModel):
    """A named group of resources read or written together."""

    name: str = Field(min_length=1)
    """Name of the command, unique in the profile."""
    is_hidden: bool
    """Hidden commands are not exposed by core-command."""
    read_write: ReadWrite
    """Access: R, W, RW or WR."""
    resource_operations: list[ResourceOperation] = Field(min_length=1)
    """The resources the command reads or writes, in order."""


class DeviceProfileSpec(ApiModel):
    """DeviceProfileSpec defines the desired state of DeviceProfile."""

    node_pool: str | None = None
    """The NodePool the profile belongs to."""
    description: str | None = None
    """Information describing the profile."""
    manufacturer: str | None = None
    """Manufacturer of the device."""
    model: str | None = None
    """Model of the device."""
    labels: list[str] | None = None
    """Labels used to search for groups of profiles."""
    device_resources: list[DeviceResource] | None = Field(
        default=None,
        max_length=MAX_PROFILE_ITEMS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """The values a device of this profile has."""
    device_commands: list[DeviceCommand] | None = Field(
        default=None,
        max_length=MAX_PROFILE_ITEMS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Named groups of resources."""


class DeviceProfileStatus(ApiModel):
    """DeviceProfileStatus defines the observed state of DeviceProfile."""

    id: str | None = None
    """Id of the profile on the edge platform (the key is `id`, not `edgeId`, as in OpenYurt)."""
    synced: bool | None = None
    """Whether the profile exists both in the cluster and on the edge platform."""


class DeviceProfile(Resource):
    """DeviceProfile describes a kind of device: its resources and commands; many devices share one."""

    resource_type = ResourceType(
        GROUP, VERSION, "DeviceProfile", "deviceprofiles",
        short_names=("dp",), printer_columns=_pool_columns("deviceProfile", managed=False),
        finalizer="iot.openyurt.io/deviceprofile",
    )  # fmt: skip

    spec: DeviceProfileSpec
    status: DeviceProfileStatus | None = None


def edge_name(resource: Device | DeviceService | DeviceProfile) -> str:
    """The object's name on the edge platform, as OpenYurt derives it: the `yurt-iot-dock/edgex-object.name`
    label of an object synced from the edge, else the object's own name. Devices name their service and
    profile by these names."""
    labels = resource.metadata.labels or {}
    return labels.get(EDGEX_OBJECT_NAME_LABEL) or resource.metadata.name or ""
