"""Cloud to edge: what `kubectl apply` / `kubectl delete` of the pool's CRs does to EdgeX (the contract double of
yurt_iot/testing/edgex), against the real API server."""

from __future__ import annotations

import secrets

from yurt_iot.api.iot import Device, DeviceProfile, DeviceService
from yurt_iot.iot.edgex import CoreMetadataClient
from yurt_iot.iot.edgex.dtos import DeviceUpdate
from yurt_iot.kube import KubeClient
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.edgex import EdgeX
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.waiting import async_test, async_wait_for

from .sync_helpers import (
    DEADLINE,
    condition,
    cr,
    device_cr,
    edgex_object,
    kubectl,
    profile_cr,
    service_cr,
    syncing,
)


def _names() -> tuple[str, str, str]:
    suffix = secrets.token_hex(3)
    return f"modbus-{suffix}", f"thermostat-{suffix}", f"room-{suffix}"


@async_test(timeout=60)
async def test_applied_objects_reach_edgex_with_their_fields_and_are_marked_synced(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto
) -> None:
    svc, prof, dev = _names()
    async with (
        syncing(control_plane, namespace, edgex, mosquitto) as sync,
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        # The device first: it waits for its service and profile instead of failing in EdgeX.
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=[device_cr(dev, svc, prof)])
        waiting = await async_wait_for(
            lambda: (
                condition(sync.informers["Device"].store.get(namespace, dev), "DeviceSynced").get("reason")
                == "WaitingForDependency"
            ),
            within=DEADLINE,
        )
        assert waiting
        docs = [service_cr(svc, labels=["modbus"]), profile_cr(prof, description="a thermostat")]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)

        device = await async_wait_for(lambda: edgex_object(md, "Device", dev), within=DEADLINE)
        assert device.service_name == svc and device.profile_name == prof
        assert device.protocols == {"modbus-tcp": {"Address": "127.0.0.1", "Port": "1502", "UnitID": "1"}}
        assert device.admin_state == "UNLOCKED"
        service = await edgex_object(md, "DeviceService", svc)
        assert service.base_address == f"http://127.0.0.1:59901/{svc}" and service.labels == ["modbus"]
        profile = await edgex_object(md, "DeviceProfile", prof)
        assert profile.description == "a thermostat" and profile.manufacturer == "Acme"
        temperature = profile.device_resources[0]
        assert temperature.name == "Temperature" and temperature.properties.scale == 0.1
        assert temperature.attributes == {"primaryTable": "INPUT_REGISTERS", "startingAddress": 0}

        kube = sync.kube

        async def synced(kind: type, name: str, edge_id: str | None, id_key: str = "edgeId") -> bool:
            obj = await cr(kube, kind, namespace, name)
            status = (obj or {}).get("status") or {}
            finalizers = (obj or {}).get("metadata", {}).get("finalizers") or []
            has_finalizer = kind.resource_type.finalizer in finalizers
            return bool(status.get("synced")) and status.get(id_key) == edge_id and has_finalizer

        await async_wait_for(lambda: synced(Device, dev, device.id), within=DEADLINE, what="device synced")
        await async_wait_for(lambda: synced(DeviceService, svc, service.id), within=DEADLINE)
        await async_wait_for(lambda: synced(DeviceProfile, prof, profile.id, "id"), within=DEADLINE)
        obj = await cr(kube, Device, namespace, dev)
        assert condition(obj, "DeviceSynced")["status"] == "True"
        assert condition(obj, "DeviceManaging")["status"] == "True"


@async_test(timeout=60)
async def test_edits_reach_edgex_and_never_reset_the_operating_state(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto
) -> None:
    svc, prof, dev = _names()
    async with (
        syncing(control_plane, namespace, edgex, mosquitto),
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        docs = [service_cr(svc), profile_cr(prof), device_cr(dev, svc, prof)]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)
        await async_wait_for(lambda: edgex_object(md, "Device", dev), within=DEADLINE)
        # The device service reports the device UP; no edit of ours may put it back to UNKNOWN.
        [result] = await md.update_devices([DeviceUpdate(name=dev, operating_state="UP")], bypass_validation=True)
        result.raise_for_status()

        protocols = {"modbus-tcp": {"Address": "127.0.0.2", "Port": "502", "UnitID": "7"}}
        edited_device = device_cr(dev, svc, prof, adminState="LOCKED", protocols=protocols, labels=["floor-2"])
        edited_profile = profile_cr(prof, description="edited")
        edited_profile["spec"]["deviceResources"][1]["properties"]["maximum"] = "35"
        docs = [service_cr(svc, adminState="LOCKED"), edited_profile, edited_device]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)

        async def device_edited() -> bool:
            device = await edgex_object(md, "Device", dev)
            locked = device.admin_state == "LOCKED"
            return bool(locked and device.protocols == protocols and device.labels == ["floor-2"])

        await async_wait_for(device_edited, within=DEADLINE, what="device edit in EdgeX")
        assert (await edgex_object(md, "Device", dev)).operating_state == "UP"

        async def profile_edited() -> bool:
            profile = await edgex_object(md, "DeviceProfile", prof)
            return bool(profile.description == "edited" and profile.device_resources[1].properties.maximum == 35)

        await async_wait_for(profile_edited, within=DEADLINE, what="profile edit in EdgeX")
        await async_wait_for(lambda: _with_admin_state(md, svc, "LOCKED"), within=DEADLINE, what="service edit")


async def _with_admin_state(md: CoreMetadataClient, name: str, state: str) -> bool:
    service = await edgex_object(md, "DeviceService", name)
    return bool(service is not None and service.admin_state == state)


@async_test(timeout=60)
async def test_deleting_the_crs_removes_them_from_edgex_and_releases_the_finalizers(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto
) -> None:
    svc, prof, dev = _names()
    async with (
        syncing(control_plane, namespace, edgex, mosquitto) as sync,
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        docs = [service_cr(svc), profile_cr(prof), device_cr(dev, svc, prof)]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)
        await async_wait_for(lambda: edgex_object(md, "Device", dev), within=DEADLINE)

        # All at once, service first: EdgeX refuses to delete a service or profile still in use (409), so the
        # controller must wait for the device to go.
        names = [f"deviceservice/{svc}", f"deviceprofile/{prof}", f"device/{dev}"]
        await kubectl(control_plane, "delete", "-n", namespace, "--wait=false", *names)

        kube: KubeClient = sync.kube
        for kind, name in ((Device, dev), (DeviceProfile, prof), (DeviceService, svc)):
            await async_wait_for(
                lambda kind=kind, name=name: _gone(kube, kind, namespace, name), within=DEADLINE, what=f"{name} gone"
            )
            assert await edgex_object(md, kind.resource_type.kind, name) is None


async def _gone(kube: KubeClient, kind: type, namespace: str, name: str) -> bool:
    return await cr(kube, kind, namespace, name) is None


@async_test(timeout=60)
async def test_a_cr_of_another_pool_is_never_touched(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto
) -> None:
    svc, prof, dev = _names()
    foreign = f"foreign-{dev}"
    async with (
        syncing(control_plane, namespace, edgex, mosquitto) as sync,
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        docs = [
            service_cr(svc),
            profile_cr(prof),
            device_cr(foreign, svc, prof, pool="beijing"),
            device_cr(dev, svc, prof),
        ]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)
        # Our device synced after the foreign one was applied: the controller has seen both.
        await async_wait_for(
            lambda: (
                condition(sync.informers["Device"].store.get(namespace, dev), "DeviceSynced").get("status") == "True"
            ),
            within=DEADLINE,
        )
        other = await cr(sync.kube, Device, namespace, foreign)
        assert other is not None
        assert not other["metadata"].get("finalizers")
        assert "status" not in other
        assert await edgex_object(md, "Device", foreign) is None


@async_test(timeout=60)
async def test_a_second_cr_for_the_same_edgex_object_is_told_it_is_a_duplicate(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto
) -> None:
    svc, prof, dev = _names()
    twin = device_cr(f"twin-{dev}", svc, prof, labels=["twin"])
    twin["metadata"]["labels"] = {"yurt-iot-dock/edgex-object.name": dev}  # maps to the same EdgeX name
    async with (
        syncing(control_plane, namespace, edgex, mosquitto) as sync,
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        docs = [service_cr(svc), profile_cr(prof), device_cr(dev, svc, prof)]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)
        await async_wait_for(lambda: edgex_object(md, "Device", dev), within=DEADLINE)
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=[twin])
        told = await async_wait_for(
            lambda: condition(sync.informers["Device"].store.get(namespace, f"twin-{dev}"), "DeviceSynced"),
            within=DEADLINE,
        )
        assert told["reason"] == "DuplicateEdgeXName" and dev in told["message"]
        assert (await edgex_object(md, "Device", dev)).labels is None  # the twin's labels never reached EdgeX


@async_test(timeout=60)
async def test_native_services_and_their_devices_are_left_to_the_native_backend(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto
) -> None:
    svc, prof, dev = _names()
    native_svc, native_dev = f"native-{svc}", f"native-{dev}"
    async with (
        syncing(control_plane, namespace, edgex, mosquitto) as sync,
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        docs = [
            device_cr(native_dev, native_svc, prof),  # before its service: the sync may meet it first
            service_cr(native_svc, baseAddress="native://hangzhou"),
            service_cr(svc),
            profile_cr(prof),
            device_cr(dev, svc, prof),
        ]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)
        await async_wait_for(lambda: edgex_object(md, "Device", dev), within=DEADLINE)

        async def released() -> bool:
            obj = await cr(sync.kube, Device, namespace, native_dev)
            return Device.resource_type.finalizer not in ((obj or {}).get("metadata", {}).get("finalizers") or [])

        assert await async_wait_for(released, within=DEADLINE, what="native device without the EdgeX finalizer")
        service = await cr(sync.kube, DeviceService, namespace, native_svc)
        assert service is not None and not service["metadata"].get("finalizers") and "status" not in service
        assert await edgex_object(md, "DeviceService", native_svc) is None
        assert await edgex_object(md, "Device", native_dev) is None
