"""Pool scope: which objects a controller owns, and how it finds its pool from its node's label."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from yurt_iot.api.iot import Device
from yurt_iot.iot.pool import (
    NODEPOOL_LABEL,
    NODES,
    PODS,
    POOL_INDEX,
    PoolNotFound,
    PoolScope,
    discover_pool,
    discover_pool_of_pod,
    own_pod,
    served_pool,
)
from yurt_iot.kube import Informer, KubeClient
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.waiting import async_test


def _device(name: str, pool: str | None) -> dict[str, object]:
    spec: dict[str, object] = {"serviceName": "modbus", "profileName": "thermometer", "notify": False}
    if pool is not None:
        spec["nodePool"] = pool
    return {"apiVersion": "iot.openyurt.io/v1alpha1", "kind": "Device", "metadata": {"name": name}, "spec": spec}


def test_a_scope_owns_only_objects_of_its_pool_and_namespace() -> None:
    scope = PoolScope("hangzhou", "iot")
    mine = {"metadata": {"name": "a", "namespace": "iot"}, "spec": {"nodePool": "hangzhou"}}
    assert scope.owns(mine)
    assert not scope.owns({**mine, "spec": {"nodePool": "beijing"}})
    assert not scope.owns({**mine, "spec": {}})
    assert not scope.owns({**mine, "metadata": {"name": "a", "namespace": "other"}})


def test_an_empty_pool_or_namespace_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="pool"):
        PoolScope("", "iot")
    with pytest.raises(ValueError, match="namespace"):
        PoolScope("hangzhou", "")


@async_test(timeout=30)
async def test_the_pool_is_read_from_the_node_label(control_plane: ControlPlane) -> None:
    async with KubeClient.from_kubeconfig(control_plane.kubeconfig) as kube:
        nodes = kube.resource(NODES)
        labelled, bare = f"edge-{secrets.token_hex(3)}", f"bare-{secrets.token_hex(3)}"
        await nodes.create({"metadata": {"name": labelled, "labels": {NODEPOOL_LABEL: "hangzhou"}}})
        await nodes.create({"metadata": {"name": bare}})

        assert await discover_pool(kube, labelled) == "hangzhou"
        with pytest.raises(PoolNotFound, match=f"{bare}.*{NODEPOOL_LABEL}"):
            await discover_pool(kube, bare)
        with pytest.raises(PoolNotFound, match="does not exist"):
            await discover_pool(kube, "no-such-node")


@async_test(timeout=30)
async def test_without_a_pool_or_node_the_pool_is_that_of_its_own_pods_node(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As OpenYurt's dock finds it in a PlatformAdmin's Deployment, which gives it neither: its pod (hostname and
    service account namespace), that pod's node, the node's pool label."""
    (tmp_path / "namespace").write_text(namespace + "\n")
    monkeypatch.setenv("HOSTNAME", "dock-7f9c")
    assert own_pod(tmp_path / "namespace") == ("dock-7f9c", namespace)
    assert own_pod(tmp_path / "absent") is None  # not in a pod

    async with KubeClient.from_kubeconfig(control_plane.kubeconfig) as kube:
        node = f"edge-{secrets.token_hex(3)}"
        await kube.resource(NODES).create({"metadata": {"name": node, "labels": {NODEPOOL_LABEL: "hangzhou"}}})
        pods = kube.resource(PODS, namespace)
        container = {"name": "dock", "image": "yurt-iot:0.1.0"}
        await pods.create({"metadata": {"name": "dock-7f9c"}, "spec": {"nodeName": node, "containers": [container]}})
        await pods.create({"metadata": {"name": "pending"}, "spec": {"containers": [container]}})

        assert await discover_pool_of_pod(kube, "dock-7f9c", namespace) == "hangzhou"
        assert await served_pool(kube, None, None, ("dock-7f9c", namespace)) == "hangzhou"
        assert await served_pool(kube, "beijing", node, ("dock-7f9c", namespace)) == "beijing"  # a flag wins
        with pytest.raises(PoolNotFound, match="not scheduled"):
            await discover_pool_of_pod(kube, "pending", namespace)
        with pytest.raises(PoolNotFound, match=f"{namespace}/gone does not exist"):
            await discover_pool_of_pod(kube, "gone", namespace)


@async_test(timeout=30)
async def test_the_pool_index_finds_the_pools_objects_in_the_cache(control_plane: ControlPlane, namespace: str) -> None:
    scope = PoolScope("hangzhou", namespace)
    async with KubeClient.from_kubeconfig(control_plane.kubeconfig) as kube:
        devices = kube.resource(Device, namespace)
        for name, pool in (("mine", "hangzhou"), ("theirs", "beijing"), ("nobodys", None)):
            await devices.create(_device(name, pool))
        informer = Informer(devices, indexers=scope.indexers)
        task = asyncio.create_task(informer.run())
        try:
            async with asyncio.timeout(10):
                await informer.wait_synced()
            found = informer.store.by_index(POOL_INDEX, scope.pool)
            assert [d["metadata"]["name"] for d in found] == ["mine"]
            assert all(scope.owns(d) for d in found)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
