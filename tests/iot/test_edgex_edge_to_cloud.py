"""Edge to cloud: objects made or removed directly in EdgeX show up in the cluster, through the message bus within a
second, and through the periodic listing without it."""

from __future__ import annotations

import asyncio
import secrets
import time

from tests.edgex.helpers import device, profile, service
from yurt_iot.api.iot import EDGEX_OBJECT_NAME_LABEL, Device, DeviceProfile, DeviceService
from yurt_iot.iot.edgex import CoreMetadataClient
from yurt_iot.iot.edgex.dtos import DeviceUpdate
from yurt_iot.iot.edgex.mapping import cr_name
from yurt_iot.iot.edgex.sync import EdgeXSync, remove_edge_discovered
from yurt_iot.kube import KubeClient
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.edgex import EdgeX
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.waiting import async_test, async_wait_for

from .sync_helpers import (
    DEADLINE,
    POOL,
    condition,
    cr,
    device_cr,
    edgex_object,
    kubectl,
    profile_cr,
    service_cr,
    syncing,
    warm_up,
)


def _names() -> tuple[str, str, str]:
    suffix = secrets.token_hex(3)
    return f"Modbus_{suffix}", f"Thermostat_{suffix}", f"Room_{suffix}"


async def _add_in_edgex(md: CoreMetadataClient, svc: str, prof: str, dev: str) -> None:
    for results in (
        await md.add_device_services([service(svc)]),
        await md.add_device_profiles([profile(prof)]),
        await md.add_devices([device(dev, svc, prof)], bypass_validation=True),
    ):
        results[0].raise_for_status()


def _cached(sync: EdgeXSync, kind: str, name: str) -> dict | None:
    return sync.informers[kind].store.get(sync.scope.namespace, name)


@async_test(timeout=60)
async def test_objects_made_in_edgex_appear_as_crs_within_a_second_through_the_bus(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto
) -> None:
    svc, prof, dev = _names()
    async with (
        syncing(control_plane, namespace, edgex, mosquitto, resync_period=600) as sync,
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        await warm_up(sync.kube, namespace)
        await async_wait_for(lambda: sync.edge.reachable, within=DEADLINE, what="first listing")
        # The double publishes device events only: the service and profile are read when a device names them.
        await md.add_device_services([service(svc)])
        await md.add_device_profiles([profile(prof)])
        started = time.monotonic()
        await md.add_devices([device(dev, svc, prof, labels=["floor-1"])], bypass_validation=True)
        name = cr_name(POOL, dev)
        found = await async_wait_for(lambda: _cached(sync, "Device", name), within=1.0, what="Device CR")
        assert time.monotonic() - started < 1.0
        assert found["metadata"]["labels"][EDGEX_OBJECT_NAME_LABEL] == dev
        assert found["spec"]["managed"] is False and found["spec"]["nodePool"] == POOL
        assert found["spec"]["serviceName"] == svc and found["spec"]["labels"] == ["floor-1"]

        kube = sync.kube
        service_cr_ = await async_wait_for(lambda: cr(kube, DeviceService, namespace, cr_name(POOL, svc)), within=1.0)
        assert service_cr_["spec"]["managed"] is False
        assert await async_wait_for(lambda: cr(kube, DeviceProfile, namespace, cr_name(POOL, prof)), within=1.0)

        # Status follows EdgeX: operating state, and the CR marked synced.
        [result] = await md.update_devices([DeviceUpdate(name=dev, operating_state="UP")], bypass_validation=True)
        result.raise_for_status()
        synced = await async_wait_for(
            lambda: (_cached(sync, "Device", name) or {}).get("status", {}).get("operatingState") == "UP",
            within=1.0,
            what="operatingState UP",
        )
        assert synced
        status = _cached(sync, "Device", name)["status"]
        assert status["synced"] is True and status["edgeId"] == (await md.get_device(dev)).id
        assert condition(_cached(sync, "Device", name), "DeviceManaging")["reason"] == "NotManaged"

        # Removed in EdgeX: the mirror goes.
        await md.delete_device(dev)
        await async_wait_for(lambda: _cached(sync, "Device", name) is None, within=1.0, what="Device CR deleted")
        assert await cr(kube, Device, namespace, name) is None


@async_test(timeout=60)
async def test_without_the_bus_edgex_objects_appear_within_one_resync_period(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX
) -> None:
    svc, prof, dev = _names()
    period = 1.0
    async with (
        syncing(control_plane, namespace, edgex, None, resync_period=period) as sync,
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        await warm_up(sync.kube, namespace)
        await async_wait_for(lambda: sync.edge.reachable, within=DEADLINE, what="first listing")
        started = time.monotonic()
        await _add_in_edgex(md, svc, prof, dev)
        for kind, name in (("DeviceService", svc), ("DeviceProfile", prof), ("Device", dev)):
            await async_wait_for(lambda kind=kind, name=name: _cached(sync, kind, cr_name(POOL, name)), within=DEADLINE)
        # One period, plus what a listing and a create take on a busy 2-core machine.
        assert time.monotonic() - started < period + 0.5

        await md.delete_device(dev)
        await async_wait_for(
            lambda: _cached(sync, "Device", cr_name(POOL, dev)) is None, within=period + 0.5 + DEADLINE
        )


@async_test(timeout=90)
async def test_edgex_down_sets_a_condition_deletes_nothing_and_the_sync_recovers(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto
) -> None:
    suffix = secrets.token_hex(3)
    svc, prof, dev = f"modbus-{suffix}", f"thermostat-{suffix}", f"room-{suffix}"
    async with (
        syncing(control_plane, namespace, edgex, mosquitto, resync_period=1.0) as sync,
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        docs = [service_cr(svc), profile_cr(prof), device_cr(dev, svc, prof)]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)
        for kind, name in (("DeviceService", svc), ("DeviceProfile", prof), ("Device", dev)):
            await async_wait_for(
                lambda kind=kind, name=name: ((_cached(sync, kind, name) or {}).get("status") or {}).get("synced"),
                within=DEADLINE,
                what=f"{kind} synced",
            )

        await asyncio.to_thread(edgex.stop)
        try:
            down = await async_wait_for(
                lambda: condition(_cached(sync, "Device", dev), "DeviceSynced").get("reason") == "EdgeXUnreachable",
                within=DEADLINE,
                what="EdgeXUnreachable condition",
            )
            assert down
            await async_wait_for(
                lambda: condition(_cached(sync, "DeviceService", svc), "DeviceServiceSynced").get("status") == "False",
                within=DEADLINE,
                what="DeviceServiceSynced False",
            )
            # An edit made meanwhile waits; nothing is deleted, synced stays as it was.
            await kubectl(
                control_plane, "apply", "-n", namespace, "-f", "-", docs=[device_cr(dev, svc, prof, labels=["x"])]
            )
            for kind, name in (("DeviceService", svc), ("DeviceProfile", prof), ("Device", dev)):
                obj = _cached(sync, kind, name)
                assert obj is not None and obj["status"]["synced"] is True
        finally:
            await asyncio.to_thread(edgex.start)  # same ports, and (as a double) empty: everything must be pushed again

        device_back = await async_wait_for(lambda: edgex_object(md, "Device", dev), within=DEADLINE, what="device back")
        assert device_back.labels == ["x"]
        await async_wait_for(
            lambda: condition(_cached(sync, "Device", dev), "DeviceSynced").get("status") == "True", within=DEADLINE
        )


@async_test(timeout=60)
async def test_clean_up_removes_the_edge_discovered_crs_and_releases_the_others(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto
) -> None:
    svc, prof, dev = _names()
    mine = f"mine-{secrets.token_hex(3)}"
    async with (
        syncing(control_plane, namespace, edgex, mosquitto) as sync,
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        await _add_in_edgex(md, svc, prof, dev)
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=[device_cr(mine, svc, prof)])
        await async_wait_for(lambda: edgex_object(md, "Device", mine), within=DEADLINE)
        await async_wait_for(lambda: _cached(sync, "Device", cr_name(POOL, dev)), within=DEADLINE)
        scope = sync.scope

    async with KubeClient.from_kubeconfig(control_plane.kubeconfig) as kube:
        assert await remove_edge_discovered(kube, scope) == 3
        for kind, name in ((DeviceService, svc), (DeviceProfile, prof), (Device, dev)):
            assert await cr(kube, kind, namespace, cr_name(POOL, name)) is None
        kept = await cr(kube, Device, namespace, mine)
        assert kept is not None and not kept["metadata"].get("finalizers")
    async with CoreMetadataClient(edgex.metadata_url) as md:
        assert await edgex_object(md, "Device", dev) is not None  # EdgeX keeps its own objects


@async_test(timeout=90)
async def test_a_controller_started_while_edgex_is_down_says_so_and_catches_up(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto
) -> None:
    suffix = secrets.token_hex(3)
    svc, prof, dev = f"modbus-{suffix}", f"thermostat-{suffix}", f"room-{suffix}"
    await asyncio.to_thread(edgex.stop)
    async with syncing(control_plane, namespace, edgex, mosquitto, resync_period=1.0) as sync:
        docs = [service_cr(svc), profile_cr(prof), device_cr(dev, svc, prof)]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)
        down = await async_wait_for(
            lambda: condition(_cached(sync, "Device", dev), "DeviceSynced").get("reason") == "EdgeXUnreachable",
            within=DEADLINE,
            what="EdgeXUnreachable condition",
        )
        assert down
        await asyncio.to_thread(edgex.start)
        async with CoreMetadataClient(edgex.metadata_url) as md:
            await async_wait_for(lambda: edgex_object(md, "Device", dev), within=DEADLINE, what="device in EdgeX")
        await async_wait_for(
            lambda: condition(_cached(sync, "Device", dev), "DeviceSynced").get("status") == "True", within=DEADLINE
        )
