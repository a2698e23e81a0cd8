"""What the EdgeX sync tests share: a running pool controller, manifests, kubectl on a worker thread, and reads
of both sides."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import yaml

from yurt_iot.api.iot import Device, DeviceProfile, DeviceService
from yurt_iot.iot.edgex import CoreMetadataClient, NotFound
from yurt_iot.iot.edgex.sync import EdgeXSync, EdgeXSyncOptions
from yurt_iot.kube import KubeClient, Obj
from yurt_iot.kube import NotFound as KubeNotFound
from yurt_iot.runtime.mqttclient import MqttSettings
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.edgex import EdgeX
from yurt_iot.testing.mosquitto import Mosquitto

POOL = "hangzhou"
DEADLINE = 10.0
API_VERSION = "iot.openyurt.io/v1alpha1"
type_of = {"DeviceService": DeviceService, "DeviceProfile": DeviceProfile, "Device": Device}


@contextlib.asynccontextmanager
async def syncing(
    cp: ControlPlane,
    namespace: str,
    edgex: EdgeX,
    bus: Mosquitto | None,
    *,
    pool: str = POOL,
    resync_period: float = 30.0,
) -> AsyncIterator[EdgeXSync]:
    """The pool's EdgeX sync running on this loop; stopped (gracefully) on exit."""
    options = EdgeXSyncOptions(
        pool=pool,
        namespace=namespace,
        metadata_url=edgex.metadata_url,
        command_url=edgex.command_url,
        bus=MqttSettings(bus.host, bus.port) if bus is not None else None,
        resync_period=resync_period,
    )
    async with KubeClient.from_kubeconfig(cp.kubeconfig) as kube:
        sync = EdgeXSync(kube, options)
        stop = asyncio.Event()
        task = asyncio.create_task(sync.run(stop))
        try:
            async with asyncio.timeout(DEADLINE):
                for informer in sync.informers.values():
                    await informer.wait_synced()
            yield sync
        finally:
            stop.set()
            async with asyncio.timeout(DEADLINE):
                await task


async def kubectl(cp: ControlPlane, *args: str, docs: list[dict[str, Any]] | None = None) -> str:
    """kubectl on a worker thread (the controller shares this loop); fails the test on a non-zero exit."""
    stdin = yaml.safe_dump_all(docs) if docs is not None else None
    result = await asyncio.to_thread(cp.kubectl, *args, input=stdin)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


async def warm_up(kube: KubeClient, namespace: str) -> None:
    """The API server's first write of each IoT kind takes it about 2 s (once per session); tests that time
    the controller make those writes beforehand, with CRs of a pool no controller serves."""
    for doc in (service_cr("warm-up", pool="nobody"), profile_cr("warm-up", pool="nobody")):
        await kube.resource(type_of[doc["kind"]], namespace).create(doc)
    await kube.resource(Device, namespace).create(device_cr("warm-up", "warm-up", "warm-up", pool="nobody"))


def service_cr(name: str, *, pool: str = POOL, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DeviceService",
        "metadata": {"name": name},
        "spec": {"baseAddress": f"http://127.0.0.1:59901/{name}", "nodePool": pool, "managed": True, **spec},
    }


def profile_cr(name: str, *, pool: str = POOL, **spec: Any) -> dict[str, Any]:
    resources = [
        {
            "name": "Temperature",
            "description": "room temperature",
            "isHidden": False,
            "properties": {"valueType": "Float32", "readWrite": "R", "scale": "0.1", "units": "C"},
            "attributes": {"primaryTable": "INPUT_REGISTERS", "startingAddress": 0},
        },
        {
            "name": "Setpoint",
            "description": "wanted temperature",
            "isHidden": False,
            "properties": {"valueType": "Int16", "readWrite": "RW", "minimum": "5", "maximum": "30"},
            "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1},
        },
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "DeviceProfile",
        "metadata": {"name": name},
        "spec": {"nodePool": pool, "manufacturer": "Acme", "model": "T-1000", "deviceResources": resources, **spec},
    }


def device_cr(name: str, service: str, profile: str, *, pool: str = POOL, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Device",
        "metadata": {"name": name},
        "spec": {
            "serviceName": service,
            "profileName": profile,
            "notify": True,
            "nodePool": pool,
            "managed": True,
            "adminState": "UNLOCKED",
            "protocols": {"modbus-tcp": {"Address": "127.0.0.1", "Port": "1502", "UnitID": "1"}},
            **spec,
        },
    }


async def edgex_object(md: CoreMetadataClient, kind: str, name: str) -> Any:
    """The object EdgeX holds (a DTO), or None."""
    get = {"DeviceService": md.get_device_service, "DeviceProfile": md.get_device_profile, "Device": md.get_device}
    try:
        return await get[kind](name)
    except NotFound:
        return None


async def cr(kube: KubeClient, kind: type[Any], namespace: str, name: str) -> Obj | None:
    try:
        return await kube.resource(kind, namespace).get(name)
    except KubeNotFound:
        return None


def condition(obj: Obj | None, type_: str) -> dict[str, Any]:
    """The condition of that type in the object's status ({} if none)."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), {})
