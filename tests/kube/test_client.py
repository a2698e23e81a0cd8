"""The async API client against the real kube-apiserver: CRUD on our CRDs and core kinds, typed errors, watch."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from yurt_iot.api.iot import Device
from yurt_iot.api.meta import ResourceType
from yurt_iot.kube import (
    AlreadyExists,
    Conflict,
    Gone,
    Invalid,
    KubeClient,
    NotFound,
    Unreachable,
    WatchEvent,
    load_config,
)
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.ports import free_port
from yurt_iot.testing.waiting import async_test

from .helpers import client_for, device

CONFIGMAPS = ResourceType("", "v1", "ConfigMap", "configmaps")
NAMESPACES = ResourceType("", "v1", "Namespace", "namespaces", scope="Cluster")


@async_test(timeout=30)
async def test_crud_of_a_custom_resource_by_model(control_plane: ControlPlane, namespace: str) -> None:
    async with client_for(control_plane) as kube:
        devices = kube.resource(Device, namespace)
        created = await devices.create(Device.model_validate(device("d1")))
        assert created["metadata"]["namespace"] == namespace

        fetched = await devices.get("d1")
        assert fetched["spec"]["nodePool"] == "pool-a"

        patched = await devices.patch("d1", {"metadata": {"labels": {"room": "b12"}}})
        assert patched["metadata"]["labels"] == {"room": "b12"}

        status = await devices.patch_status("d1", {"status": {"synced": True}, "spec": {"nodePool": "ignored"}})
        assert status["status"] == {"synced": True}
        assert status["spec"]["nodePool"] == "pool-a", "the status subresource never writes spec"

        fetched = await devices.get("d1")
        fetched["spec"]["description"] = "replaced"
        replaced = await devices.replace(fetched)
        assert replaced["spec"]["description"] == "replaced"

        await devices.delete("d1")
        with pytest.raises(NotFound) as missing:
            await devices.get("d1")
        assert (missing.value.status, missing.value.reason) == (404, "NotFound")


@async_test(timeout=30)
async def test_api_errors_are_typed(control_plane: ControlPlane, namespace: str) -> None:
    async with client_for(control_plane) as kube:
        devices = kube.resource(Device, namespace)
        first = await devices.create(device("d1"))

        with pytest.raises(AlreadyExists) as exists:
            await devices.create(device("d1"))
        assert exists.value.status == 409

        await devices.patch("d1", {"metadata": {"labels": {"x": "1"}}})
        with pytest.raises(Conflict) as stale:
            await devices.replace(first)  # first carries the resourceVersion from before the patch
        assert (stale.value.status, stale.value.reason) == (409, "Conflict")

        bad = device("d2")
        bad["spec"]["adminState"] = "SIDEWAYS"
        with pytest.raises(Invalid) as invalid:
            await devices.create(bad)
        assert invalid.value.status == 422 and "adminState" in invalid.value.message

        with pytest.raises(Gone) as gone:
            async with contextlib.aclosing(devices.watch(resource_version="1", timeout_seconds=5)) as events:
                async for _ in events:
                    pass
        assert gone.value.status == 410

        with pytest.raises(ValueError, match="namespace"):
            await kube.resource(Device).get("d1")


@async_test(timeout=30)
async def test_list_pages_through_everything_with_selectors(control_plane: ControlPlane, namespace: str) -> None:
    async with client_for(control_plane) as kube:
        maps = kube.resource(CONFIGMAPS, namespace)
        for i in range(7):
            await maps.create({"metadata": {"name": f"cm-{i}", "labels": {"parity": "odd" if i % 2 else "even"}}})

        everything = await maps.list(page_size=2)
        assert sorted(m["metadata"]["name"] for m in everything.items) == [f"cm-{i}" for i in range(7)]
        assert everything.resource_version
        assert all(m["kind"] == "ConfigMap" and m["apiVersion"] == "v1" for m in everything.items)

        odd = await maps.list(label_selector="parity=odd", page_size=2)
        assert sorted(m["metadata"]["name"] for m in odd.items) == ["cm-1", "cm-3", "cm-5"]
        named = await maps.list(field_selector="metadata.name=cm-4")
        assert [m["metadata"]["name"] for m in named.items] == ["cm-4"]

        cluster = await kube.resource(NAMESPACES).list(field_selector=f"metadata.name={namespace}")
        assert [n["metadata"]["name"] for n in cluster.items] == [namespace]


@async_test(timeout=30)
async def test_watch_streams_changes_after_a_resource_version(control_plane: ControlPlane, namespace: str) -> None:
    async with client_for(control_plane) as kube:
        devices = kube.resource(Device, namespace)
        start = (await devices.list()).resource_version
        seen: list[WatchEvent] = []

        async def watch() -> None:
            async with contextlib.aclosing(devices.watch(resource_version=start, timeout_seconds=30)) as events:
                async for event in events:
                    seen.append(event)
                    if event.type == "DELETED":
                        return

        watcher = asyncio.create_task(watch())
        await devices.create(device("d1"))
        await devices.patch("d1", {"spec": {"description": "new"}})
        await devices.delete("d1")
        await asyncio.wait_for(watcher, 20)
        changes = [(e.type, e.object["metadata"]["name"]) for e in seen if e.type != "BOOKMARK"]
        assert changes == [("ADDED", "d1"), ("MODIFIED", "d1"), ("DELETED", "d1")]


@async_test(timeout=30)
async def test_delete_preconditions_protect_a_newer_version(control_plane: ControlPlane, namespace: str) -> None:
    async with client_for(control_plane) as kube:
        devices = kube.resource(Device, namespace)
        old = await devices.create(device("d1"))
        await devices.patch("d1", {"spec": {"description": "newer"}})
        with pytest.raises(Conflict):
            await devices.delete("d1", resource_version=old["metadata"]["resourceVersion"])
        assert (await devices.get("d1"))["spec"]["description"] == "newer"


@async_test(timeout=30)
async def test_no_answer_is_unreachable_not_an_httpx_error(control_plane: ControlPlane) -> None:
    config = load_config(control_plane.kubeconfig)
    config.host = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    async with KubeClient(config) as kube:
        with pytest.raises(Unreachable, match="ConnectError"):
            await kube.resource(NAMESPACES).list()
