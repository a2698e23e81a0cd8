"""What differs between Device, DeviceService and DeviceProfile when syncing them with EdgeX core-metadata.

The reconciler (:mod:`yurt_iot.iot.edgex.reconcile`) is written once; each :class:`EdgeKind` tells it how its
kind is read, written and compared. Comparisons happen in the CR's terms: the EdgeX object is mapped to the CR
spec it would produce (:mod:`yurt_iot.iot.edgex.mapping`) and the pushed fields are compared after
:func:`normalized`, so what the mapping cannot carry (EdgeX-only extras, tags) never looks like drift.

Who owns an object decides the direction: a cloud-owned CR is pushed to EdgeX (create, update, delete); an
edge-owned CR (`managed: false`, or a profile that came from EdgeX) mirrors EdgeX, spec and status.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from yurt_iot.api import iot
from yurt_iot.api.meta import Resource
from yurt_iot.iot.edgex import dtos, mapping
from yurt_iot.iot.edgex.command import CoreCommandClient
from yurt_iot.iot.edgex.metadata import CoreMetadataClient
from yurt_iot.iot.edgex.properties import PropertyResult, PropertySync
from yurt_iot.kube import Obj

__all__ = ["EdgeKind", "EdgeObject", "edge_kinds", "edge_name", "normalized"]

EdgeObject = dtos.DeviceService | dtos.DeviceProfile | dtos.Device
"""An object as core-metadata stores it."""


def normalized(value: Any) -> Any:
    """A JSON value with empty strings, lists, maps and None removed at every level, so that "absent" and
    "empty" (which the CR and EdgeX spell differently) compare equal."""
    if isinstance(value, Mapping):
        pairs = ((str(k), normalized(v)) for k, v in value.items())
        return {k: v for k, v in pairs if v is not None} or None
    if isinstance(value, list | tuple):
        return [normalized(v) for v in value] or None
    return None if value is None or value == "" else value


def edge_name(obj: Obj) -> str:
    """The EdgeX name of a CR: its `yurt-iot-dock/edgex-object.name` label, else its own name."""
    meta = obj.get("metadata") or {}
    return str((meta.get("labels") or {}).get(iot.EDGEX_OBJECT_NAME_LABEL) or meta.get("name") or "")


class EdgeKind(ABC):
    """One kind's EdgeX calls, mapping and ownership rule."""

    model: ClassVar[type[Resource]]
    dto: ClassVar[type[EdgeObject]]
    pushed: ClassVar[tuple[str, ...]]
    """Spec fields the cloud pushes to EdgeX (and compares to decide on an update)."""
    mirrored: ClassVar[tuple[str, ...]]
    """Spec fields an edge-owned CR copies from EdgeX."""
    only_if_set: ClassVar[frozenset[str]] = frozenset()
    """Pushed fields that are left alone in EdgeX when the CR does not set them (states)."""
    synced_condition: ClassVar[str | None] = None
    managing_condition: ClassVar[str | None] = None

    @property
    def name(self) -> str:
        return self.model.resource_type.kind

    @property
    def finalizer(self) -> str:
        return self.model.resource_type.finalizer or ""

    def parse(self, obj: Obj) -> Any:
        """The CR as its model (ValueError naming the field if the stored object does not fit it)."""
        return self.model.model_validate(obj)

    def edge_owned(self, obj: Obj) -> bool:
        """True when EdgeX owns the object and the CR only mirrors it (`spec.managed: false`)."""
        return (obj.get("spec") or {}).get("managed") is False

    def spec_from_edge(self, edge: EdgeObject, pool: str, namespace: str) -> dict[str, Any]:
        """The CR spec (wire form) EdgeX's object maps to."""
        return self.from_edgex(edge, pool, namespace).to_dict()["spec"]  # type: ignore[no-any-return]

    def drift(self, cr_spec: Mapping[str, Any], edge_spec: Mapping[str, Any], fields: tuple[str, ...]) -> list[str]:
        """The fields among `fields` whose values differ (fields in `only_if_set` only when the CR sets them)."""
        return [
            f
            for f in fields
            if not (f in self.only_if_set and cr_spec.get(f) is None)
            and normalized(cr_spec.get(f)) != normalized(edge_spec.get(f))
        ]

    def dependencies(self, obj: Obj) -> list[tuple[str, str]]:
        """EdgeX objects that must exist before this one is created: (kind name, EdgeX name) pairs."""
        return []

    def edge_dependencies(self, edge: EdgeObject) -> list[tuple[str, str]]:
        """The same, for an object as EdgeX holds it."""
        return []

    async def after_push(self, obj: Obj, edge: EdgeObject) -> PropertyResult:
        """Work done once EdgeX's object matches a cloud-owned CR: desired property writes, for devices."""
        return PropertyResult()

    @abstractmethod
    def from_edgex(self, edge: EdgeObject, pool: str, namespace: str) -> Resource: ...

    @abstractmethod
    def status_from_edge(self, edge: EdgeObject) -> dict[str, Any]:
        """Status fields (wire form) that reflect the EdgeX object."""

    @abstractmethod
    async def list(self, md: CoreMetadataClient) -> list[EdgeObject]: ...

    @abstractmethod
    async def get(self, md: CoreMetadataClient, name: str) -> EdgeObject: ...

    @abstractmethod
    async def add(self, md: CoreMetadataClient, obj: Obj) -> EdgeObject:
        """Create the CR's object in EdgeX; returns it as stored (with its id). Raises the item's error."""

    @abstractmethod
    async def update(self, md: CoreMetadataClient, obj: Obj, edge: EdgeObject) -> None:
        """Make EdgeX's object match the CR's pushed fields. Raises the item's error."""

    @abstractmethod
    async def delete(self, md: CoreMetadataClient, name: str) -> None: ...


def _extras(edge: EdgeObject, *names: str) -> dict[str, Any]:
    """Fields a newer EdgeX sends that the DTO does not declare (lastConnected, ...), when present."""
    extra = edge.model_extra or {}
    return {n: extra[n] for n in names if isinstance(extra.get(n), int)}


def _needs(service: str | None, profile: str | None) -> list[tuple[str, str]]:
    needs = [(iot.DeviceService.resource_type.kind, service or "")]
    return [*needs, (iot.DeviceProfile.resource_type.kind, profile)] if profile else needs


class _DeviceService(EdgeKind):
    model = iot.DeviceService
    dto = dtos.DeviceService
    pushed = ("baseAddress", "description", "labels", "adminState")
    mirrored = pushed
    only_if_set = frozenset({"adminState"})
    synced_condition = "DeviceServiceSynced"
    managing_condition = "DeviceServiceManaging"

    def from_edgex(self, edge: EdgeObject, pool: str, namespace: str) -> Resource:
        assert isinstance(edge, dtos.DeviceService)
        return mapping.device_service_from_edgex(edge, pool=pool, namespace=namespace)

    def status_from_edge(self, edge: EdgeObject) -> dict[str, Any]:
        assert isinstance(edge, dtos.DeviceService)
        return {"edgeId": edge.id, "adminState": edge.admin_state, **_extras(edge, "lastConnected", "lastReported")}

    async def list(self, md: CoreMetadataClient) -> list[EdgeObject]:
        return list(await md.list_device_services())

    async def get(self, md: CoreMetadataClient, name: str) -> EdgeObject:
        return await md.get_device_service(name)

    async def add(self, md: CoreMetadataClient, obj: Obj) -> EdgeObject:
        wanted = mapping.device_service_to_edgex(self.parse(obj)).model_copy(update={"id": None})
        [result] = await md.add_device_services([wanted])
        result.raise_for_status()
        return wanted.model_copy(update={"id": result.id})

    async def update(self, md: CoreMetadataClient, obj: Obj, edge: EdgeObject) -> None:
        service: iot.DeviceService = self.parse(obj)
        update = mapping.device_service_update(service).model_copy(update={"id": edge.id, "name": edge.name})
        if service.spec.admin_state is None:
            update = update.model_copy(update={"admin_state": None})
        [result] = await md.update_device_services([update])
        result.raise_for_status()

    async def delete(self, md: CoreMetadataClient, name: str) -> None:
        await md.delete_device_service(name)


class _DeviceProfile(EdgeKind):
    model = iot.DeviceProfile
    dto = dtos.DeviceProfile
    pushed = ("description", "manufacturer", "model", "labels", "deviceResources", "deviceCommands")
    mirrored = pushed

    def edge_owned(self, obj: Obj) -> bool:
        """Profiles have no `managed` field: one that came from EdgeX (it carries the EdgeX-name label and is
        named `<pool>-<name>`) mirrors EdgeX; any other is the cloud's."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        name = str(labels.get(iot.EDGEX_OBJECT_NAME_LABEL) or "")
        pool = str((obj.get("spec") or {}).get("nodePool") or "")
        return bool(name) and (obj.get("metadata") or {}).get("name") == mapping.cr_name(pool, name)

    def from_edgex(self, edge: EdgeObject, pool: str, namespace: str) -> Resource:
        assert isinstance(edge, dtos.DeviceProfile)
        return mapping.device_profile_from_edgex(edge, pool=pool, namespace=namespace)

    def status_from_edge(self, edge: EdgeObject) -> dict[str, Any]:
        return {"id": edge.id}

    async def list(self, md: CoreMetadataClient) -> list[EdgeObject]:
        return list(await md.list_device_profiles())

    async def get(self, md: CoreMetadataClient, name: str) -> EdgeObject:
        return await md.get_device_profile(name)

    async def add(self, md: CoreMetadataClient, obj: Obj) -> EdgeObject:
        wanted = mapping.device_profile_to_edgex(self.parse(obj)).model_copy(update={"id": None})
        [result] = await md.add_device_profiles([wanted])
        result.raise_for_status()
        return wanted.model_copy(update={"id": result.id})

    async def update(self, md: CoreMetadataClient, obj: Obj, edge: EdgeObject) -> None:
        """A PUT of the whole profile (EdgeX has no partial profile update), carrying its id, which EdgeX 4
        would drop otherwise; what EdgeX added beyond our fields (tags, ...) at the top level is kept."""
        wanted = mapping.device_profile_to_edgex(self.parse(obj))
        keep = {k: v for k, v in (edge.model_extra or {}).items() if k not in ("created", "modified")}
        body = dtos.DeviceProfile.model_validate({**keep, **wanted.to_json(), "id": edge.id, "name": edge.name})
        [result] = await md.replace_device_profiles([body])
        result.raise_for_status()

    async def delete(self, md: CoreMetadataClient, name: str) -> None:
        await md.delete_device_profile(name)


class _Device(EdgeKind):
    model = iot.Device
    dto = dtos.Device
    # operatingState is the device service's to report: pushed at creation only, never reset by an update, and
    # mirrored into status only (a spec write on every health flip would wake every watcher of the CR).
    pushed = (
        "description", "adminState", "protocols", "labels", "location", "serviceName", "profileName", "autoEvents",
    )  # fmt: skip
    mirrored = pushed
    only_if_set = frozenset({"adminState"})
    synced_condition = "DeviceSynced"
    managing_condition = "DeviceManaging"

    def __init__(self, bypass_validation: bool, properties: PropertySync) -> None:
        self.bypass_validation, self.properties = bypass_validation, properties

    async def after_push(self, obj: Obj, edge: EdgeObject) -> PropertyResult:
        assert isinstance(edge, dtos.Device)
        return await self.properties.sync(obj, edge)

    def dependencies(self, obj: Obj) -> list[tuple[str, str]]:
        spec = obj.get("spec") or {}
        return _needs(spec.get("serviceName"), spec.get("profileName"))

    def edge_dependencies(self, edge: EdgeObject) -> list[tuple[str, str]]:
        assert isinstance(edge, dtos.Device)
        return _needs(edge.service_name, edge.profile_name)

    def from_edgex(self, edge: EdgeObject, pool: str, namespace: str) -> Resource:
        assert isinstance(edge, dtos.Device)
        return mapping.device_from_edgex(edge, pool=pool, namespace=namespace)

    def status_from_edge(self, edge: EdgeObject) -> dict[str, Any]:
        assert isinstance(edge, dtos.Device)
        states = {"adminState": edge.admin_state, "operatingState": edge.operating_state}
        return {"edgeId": edge.id, **states, **_extras(edge, "lastConnected", "lastReported")}

    async def list(self, md: CoreMetadataClient) -> list[EdgeObject]:
        return list(await md.list_devices())

    async def get(self, md: CoreMetadataClient, name: str) -> EdgeObject:
        return await md.get_device(name)

    async def add(self, md: CoreMetadataClient, obj: Obj) -> EdgeObject:
        wanted = mapping.device_to_edgex(self.parse(obj)).model_copy(update={"id": None})
        [result] = await md.add_devices([wanted], bypass_validation=self.bypass_validation)
        result.raise_for_status()
        return wanted.model_copy(update={"id": result.id})

    async def update(self, md: CoreMetadataClient, obj: Obj, edge: EdgeObject) -> None:
        device: iot.Device = self.parse(obj)
        states: dict[str, Any] = {"operating_state": None, "id": edge.id, "name": edge.name}
        if device.spec.admin_state is None:
            states["admin_state"] = None
        update = mapping.device_update(device).model_copy(update=states)
        [result] = await md.update_devices([update], bypass_validation=self.bypass_validation)
        result.raise_for_status()

    async def delete(self, md: CoreMetadataClient, name: str) -> None:
        await md.delete_device(name)


def edge_kinds(*, bypass_validation: bool = True, command: CoreCommandClient | None = None) -> tuple[EdgeKind, ...]:
    """Device services, profiles and devices, in creation order (a device needs its service and profile in
    EdgeX first). `bypass_validation`: create and update devices with EdgeX 4's ``bypassValidation``, so that
    no device service has to answer the validation request on the bus. `command`: core-command, through which
    desired property values are written (without it they are not)."""
    return _DeviceService(), _DeviceProfile(), _Device(bypass_validation, PropertySync(command))
