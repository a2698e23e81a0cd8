"""The entry point: run_edgex_sync with leader election runs the sync while holding the pool's Lease, and
returns when asked to stop."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from yurt_iot.iot.edgex import CoreMetadataClient
from yurt_iot.iot.edgex.sync import EdgeXSyncOptions, run_edgex_sync
from yurt_iot.kube import LEASES, KubeClient
from yurt_iot.kube import NotFound as KubeNotFound
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.edgex import EdgeX
from yurt_iot.testing.waiting import async_test, async_wait_for

from .sync_helpers import DEADLINE, POOL, device_cr, edgex_object, kubectl, profile_cr, service_cr


@async_test(timeout=60)
async def test_the_leader_syncs_and_stops_when_asked(control_plane: ControlPlane, namespace: str, edgex: EdgeX) -> None:
    suffix = secrets.token_hex(3)
    svc, prof, dev = f"modbus-{suffix}", f"thermostat-{suffix}", f"room-{suffix}"
    options = EdgeXSyncOptions(
        pool=POOL, namespace=namespace, metadata_url=edgex.metadata_url, resync_period=1.0, leader_election=True
    )
    stop = asyncio.Event()
    async with (
        KubeClient.from_kubeconfig(control_plane.kubeconfig) as kube,
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        running = asyncio.create_task(run_edgex_sync(kube, options, stop))
        docs = [service_cr(svc), profile_cr(prof), device_cr(dev, svc, prof)]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)
        await async_wait_for(lambda: edgex_object(md, "Device", dev), within=DEADLINE, what="device in EdgeX")
        lease = await kube.resource(LEASES, namespace).get(f"yurt-iot-edgex-{POOL}")
        assert lease["spec"].get("holderIdentity")

        stop.set()
        async with asyncio.timeout(DEADLINE):
            await running
        try:  # released on the way out, so that a successor need not wait for it to expire
            released = await kube.resource(LEASES, namespace).get(f"yurt-iot-edgex-{POOL}")
            assert not released["spec"].get("holderIdentity")
        except KubeNotFound:
            pass


def test_bad_options_are_refused_naming_the_field() -> None:
    for field, kwargs in (
        ("resync_period", {"resync_period": 0}),
        ("workers", {"workers": 0}),
        ("metadata_url", {"metadata_url": "edgex-core-metadata:59881"}),
        ("command_url", {"command_url": "edgex-core-command:59882"}),
    ):
        with pytest.raises(ValueError, match=field):
            EdgeXSyncOptions(**{"pool": "p", "namespace": "n", "metadata_url": "http://x:1", **kwargs})
