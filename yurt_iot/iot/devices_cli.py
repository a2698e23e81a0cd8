"""`yurt-iot devices ls|read|write --kube`: the Device CRs of a cluster, as the gateway's devices API shows a
standalone gateway's devices.

Everything goes through the API server, never to the devices: `read` shows what the pool's device controller
(native or EdgeX backend) last reported in `status.deviceProperties`, and `write` sets
`spec.deviceProperties[RESOURCE].desiredValue` for the controller to write. The write is a JSON merge patch:
deviceProperties is a map keyed by resource name, so the patch changes the named entries and keeps the others
(CRDs accept no strategic merge patch). Waiting for the value to be taken is a watch on the one object until
its status shows it; values are compared in the form the controller reports them ("22.5" of a Float32 is
reported as "2.25e+01"), which the device's profile gives.

    target = ClusterTarget(namespace="factory", pool="hangzhou")
    rows = await list_devices(target)
    await write_device(target, "thermostat-1", {"SetPoint": "22.5"}, wait=30, on_progress=print)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from yurt_iot.api.iot import EDGEX_OBJECT_NAME_LABEL, Device, DeviceProfile
from yurt_iot.iot.native.status import MANAGING
from yurt_iot.iot.pool import PoolScope
from yurt_iot.kube import ApiError, Gone, KubeClient, NotFound, Obj, ResourceClient, Unreachable
from yurt_iot.kube.config import context_namespace
from yurt_iot.runtime.values import ValueSpec

__all__ = [
    "ClusterTarget",
    "DevicesError",
    "devices_table",
    "list_devices",
    "read_device",
    "values_table",
    "write_device",
]

_STATE_STYLE = {"UP": "green", "DOWN": "red", "UNLOCKED": "green", "LOCKED": "yellow"}
_WATCH_SECONDS = 60  # a watch the server ends is simply started again from where it stopped


class DevicesError(Exception):
    """What went wrong, in words for the user (the device, namespace, resource or server concerned)."""


@dataclass(frozen=True)
class ClusterTarget:
    """Where the devices are: a cluster (kubeconfig and context), a namespace, optionally one pool."""

    kubeconfig: Path | None = None
    """Default: $KUBECONFIG or ~/.kube/config, or the service account in a pod (as `yurt-iot dock`)."""
    context: str | None = None
    """Default: the kubeconfig's current context."""
    namespace: str | None = None
    """Default: the context's namespace, else "default" (as kubectl)."""
    pool: str | None = None
    """Only the devices whose spec.nodePool is this pool."""


@dataclass(frozen=True)
class _Cluster:
    """An open connection to the target's namespace."""

    kube: KubeClient
    namespace: str
    pool: str | None

    @property
    def devices(self) -> ResourceClient:
        return self.kube.resource(Device, self.namespace)

    def in_pool(self, obj: Obj) -> bool:
        return self.pool is None or PoolScope(self.pool, self.namespace).owns(obj)

    async def device(self, name: str) -> Obj:
        """The Device CR `name`; a DevicesError if there is none (in the pool, when one is given)."""
        try:
            obj = await self.devices.get(name)
        except NotFound:
            raise DevicesError(f"device {name} not found in namespace {self.namespace}") from None
        if not self.in_pool(obj):
            pool = (obj.get("spec") or {}).get("nodePool")
            raise DevicesError(f"device {name} of namespace {self.namespace} is in pool {pool}, not {self.pool}")
        return obj

    async def value_specs(self, device: Device) -> dict[str, ValueSpec]:
        """The value specs of the device's profile by resource name, as its controller finds the profile (by its
        edge name, the pool's own first); empty while the profile does not exist."""
        name, profiles = device.spec.profile_name, self.kube.resource(DeviceProfile, self.namespace)
        found = (await profiles.list(label_selector=f"{EDGEX_OBJECT_NAME_LABEL}={name}")).items
        with contextlib.suppress(NotFound):
            found.append(await profiles.get(name))
        found.sort(key=lambda p: (p.get("spec") or {}).get("nodePool") != device.spec.node_pool)
        if not found:
            return {}
        specs: dict[str, ValueSpec] = {}
        for resource in DeviceProfile.model_validate(found[0]).spec.device_resources or []:
            with contextlib.suppress(ValueError):  # a resource the controller cannot use either: no checks for it
                specs[resource.name] = ValueSpec.from_resource(resource)
        return specs


@contextlib.asynccontextmanager
async def _connect(target: ClusterTarget) -> AsyncIterator[_Cluster]:
    """The target's namespace, with the API server's failures turned into DevicesErrors that say what happened."""
    try:
        kube = KubeClient.from_kubeconfig(target.kubeconfig, context=target.context)
        namespace = target.namespace or context_namespace(target.kubeconfig, context=target.context) or "default"
    except Exception as error:  # the kubernetes package's loaders raise their own exception types
        raise DevicesError(f"no usable kubeconfig ({target.kubeconfig or 'default'}): {error}") from None
    async with kube:
        try:
            yield _Cluster(kube, namespace, target.pool)
        except Unreachable as error:
            raise DevicesError(f"cannot reach the API server: {error}") from None
        except ApiError as error:
            raise DevicesError(f"the API server refused: {error}") from None


# --- reading CRs -------------------------------------------------------------------------------------------


def _reported_at(obj: Obj) -> datetime | None:
    """When the device's controller last reported on it: status.lastReported (the EdgeX backend copies EdgeX's),
    else the time of the last status write. The native backend keeps no lastReported, which would cost a write
    per reading, so the API server's record of its status writes is the closest the CR tells."""
    reported = (obj.get("status") or {}).get("lastReported")
    if reported:
        return datetime.fromtimestamp(int(reported) / 1000, UTC)
    writes = [
        str(entry["time"])
        for entry in (obj.get("metadata") or {}).get("managedFields") or []
        if entry.get("subresource") == "status" and entry.get("time")
    ]
    return datetime.fromisoformat(max(writes)) if writes else None


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if moment else None


def _summary(obj: Obj) -> dict[str, Any]:
    """The essentials of a Device CR; states are those observed at the edge (status), else those asked for."""
    device = Device.model_validate(obj)
    spec, status = device.spec, device.status
    return {
        "name": device.metadata.name,
        "namespace": device.metadata.namespace,
        "nodePool": spec.node_pool,
        "serviceName": spec.service_name,
        "profileName": spec.profile_name,
        "adminState": (status and status.admin_state) or spec.admin_state,
        "operatingState": (status and status.operating_state) or spec.operating_state,
        "synced": bool(status and status.synced),
        "lastReported": _iso(_reported_at(obj)),
    }


async def list_devices(target: ClusterTarget) -> list[dict[str, Any]]:
    """The essentials of the namespace's Device CRs (of the pool, if the target names one), by name."""
    async with _connect(target) as cluster:
        items = (await cluster.devices.list()).items
        return [_summary(obj) for obj in items if cluster.in_pool(obj)]


def _properties(obj: Obj) -> tuple[dict[str, str], dict[str, str]]:
    """The actual values (status) and desired values (spec) of a Device CR, by resource."""
    device = Device.model_validate(obj)
    status = device.status.device_properties if device.status else None
    actual = {p.name: p.actual_value for p in (status or {}).values()}
    return actual, {p.name: p.desired_value for p in (device.spec.device_properties or {}).values()}


async def read_device(target: ClusterTarget, name: str, resources: Sequence[str] = ()) -> dict[str, Any]:
    """The values the controller reports for the device (all, or `resources`), each with its desired value if
    the spec sets one; a DevicesError naming the resources the device has neither value of."""
    async with _connect(target) as cluster:
        obj = await cluster.device(name)
    actual, desired = _properties(obj)
    known = list(actual) + [r for r in desired if r not in actual]
    missing = [r for r in resources if r not in known]
    if missing:
        has = ", ".join(known) or "none"
        raise DevicesError(
            f"device {name} in namespace {cluster.namespace} reports no value of {', '.join(map(repr, missing))} "
            f"in status.deviceProperties (it has: {has})"
        )
    shown = list(dict.fromkeys(resources)) or known
    return {
        "device": name,
        "namespace": cluster.namespace,
        "reportedAt": _iso(_reported_at(obj)),
        "values": {r: actual.get(r) for r in shown},
        "desired": {r: desired[r] for r in shown if r in desired},
    }


# --- writing desired values --------------------------------------------------------------------------------


def _canonical(spec: ValueSpec | None, text: str) -> str:
    """`text` in the form the controller reports values of its resource ("22.5" as "2.25e+01")."""
    if spec is None:
        return text
    try:
        return spec.format(spec.parse(text))
    except ValueError:
        return text


def _pending(obj: Obj, wanted: Mapping[str, str]) -> dict[str, str | None]:
    """The resources whose reported value is not yet the wanted one (canonical form), with what is reported."""
    actual, _ = _properties(obj)
    return {r: actual.get(r) for r, value in wanted.items() if actual.get(r) != value}


def _unreported(obj: Obj, wanted: Mapping[str, str], values: Mapping[str, str]) -> str:
    """The values written that `obj` does not report yet, with what it reports instead, e.g. `a=1 (reported: 0)`."""
    pending = _pending(obj, wanted)
    return ", ".join(f"{r}={values[r]} (reported: {pending[r] or 'nothing'})" for r in pending)


def _why_not(obj: Obj) -> str:
    """The controller's own words on a write that did not happen (its DeviceManaging condition), if any."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    managing = next((c for c in conditions if c.get("type") == MANAGING and c.get("status") == "False"), None)
    return f"; the controller says: {managing.get('reason')}: {managing.get('message', '')}" if managing else ""


async def _await_reported(
    devices: ResourceClient, obj: Obj, wanted: Mapping[str, str], on_change: Callable[[Obj], None]
) -> Obj:
    """Watch the device from `obj` on until its status reports every wanted value; the last version seen."""
    name = str(obj["metadata"]["name"])
    version = str(obj["metadata"]["resourceVersion"])
    while _pending(obj, wanted):
        try:
            async with contextlib.aclosing(
                devices.watch(
                    field_selector=f"metadata.name={name}", resource_version=version, timeout_seconds=_WATCH_SECONDS
                )
            ) as events:
                async for event in events:
                    version = str(event.object["metadata"]["resourceVersion"])
                    if event.type == "DELETED":
                        raise DevicesError(f"device {name} was deleted while waiting for it")
                    if event.type in ("ADDED", "MODIFIED"):
                        obj = event.object
                        on_change(obj)
                        if not _pending(obj, wanted):
                            break
        except Gone:  # too far behind: start over from the object as it is now
            obj = await devices.get(name)
            version = str(obj["metadata"]["resourceVersion"])
            on_change(obj)
    return obj


def _checked(specs: Mapping[str, ValueSpec], device: Device, values: Mapping[str, str]) -> None:
    """Refuse, before anything is written, what the controller would refuse: a resource its profile lacks, a
    read-only one, a value that does not parse or is out of bounds (no checks while the profile is missing)."""
    if not specs:
        return
    for resource, value in values.items():
        spec = specs.get(resource)
        if spec is None:
            raise DevicesError(f"device {device.metadata.name}: profile {device.spec.profile_name} has no "
                               f"resource {resource!r} (it has: {', '.join(specs)})")  # fmt: skip
        try:
            spec.to_raw(value)
        except ValueError as error:
            raise DevicesError(f"device {device.metadata.name}: {error}") from None


async def write_device(
    target: ClusterTarget,
    name: str,
    values: Mapping[str, str],
    *,
    wait: float | None = 30.0,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Set the desired `values` (resource -> value) of the device, keeping its other desired values; then wait up
    to `wait` seconds (None: not at all) until the controller reports each of them, DevicesError if it does not.

    `on_progress` is told, in words, what is being waited for each time the device's status changes.
    """
    tell = on_progress or (lambda _: None)
    async with _connect(target) as cluster:
        obj = await cluster.device(name)
        device = Device.model_validate(obj)
        specs = await cluster.value_specs(device)
        _checked(specs, device, values)
        entries = {r: {"name": r, "desiredValue": v} for r, v in values.items()}
        obj = await cluster.devices.patch(name, {"spec": {"deviceProperties": entries}})
        document: dict[str, Any] = {"device": name, "namespace": cluster.namespace, "desired": dict(values)}
        if wait is None:
            return document
        wanted = {r: _canonical(specs.get(r), v) for r, v in values.items()}

        def changed(now: Obj) -> None:
            nonlocal obj
            obj = now  # the latest version, for the message if the wait times out
            if _pending(now, wanted):
                tell(f"waiting for {name} to report {_unreported(now, wanted, values)}")

        changed(obj)
        try:
            async with asyncio.timeout(wait):
                obj = await _await_reported(cluster.devices, obj, wanted, changed)
        except TimeoutError:
            raise DevicesError(
                f"device {name} in namespace {cluster.namespace} did not report {_unreported(obj, wanted, values)}"
                f" within {wait:g} s{_why_not(obj)}"
            ) from None
    document["values"] = _properties(obj)[0]
    return document


# --- tables --------------------------------------------------------------------------------------------------


def _ago(iso: str | None, now: datetime) -> str:
    if not iso:
        return "-"
    seconds = max(0, int((now - datetime.fromisoformat(iso)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _state(value: str | None) -> Text:
    return Text(value or "-", style=_STATE_STYLE.get(value or "", "yellow"))


def _table(columns: Iterable[str]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def devices_table(devices: Sequence[Mapping[str, Any]], now: datetime | None = None) -> Table:
    """`list_devices` as a table, with how long ago each device was last reported on."""
    moment = now or datetime.now(UTC)
    table = _table(("NAME", "POOL", "SERVICE", "PROFILE", "ADMIN", "OPERATING", "SYNCED", "LAST REPORTED"))
    for d in devices:
        synced = Text(str(d["synced"]).lower(), style="green" if d["synced"] else "yellow")
        table.add_row(d["name"], d["nodePool"] or "-", d["serviceName"], d["profileName"], _state(d["adminState"]),
                      _state(d["operatingState"]), synced, _ago(d["lastReported"], moment))  # fmt: skip
    return table


def values_table(document: Mapping[str, Any], now: datetime | None = None) -> Table:
    """`read_device` as a table: each resource's reported value, and its desired value if the spec sets one."""
    table = _table(("RESOURCE", "ACTUAL", "DESIRED"))
    for resource, value in document["values"].items():
        table.add_row(resource, value if value is not None else "-", document["desired"].get(resource, ""))
    table.caption = f"reported {_ago(document['reportedAt'], now or datetime.now(UTC))}"
    return table
