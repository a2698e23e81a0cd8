"""The informer against the real kube-apiserver: it mirrors the server into its cache and tells handlers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from yurt_iot.api.iot import Device
from yurt_iot.api.meta import ResourceType
from yurt_iot.kube import EventHandler, Informer, KubeClient, by_field, by_namespace, load_config
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.waiting import async_test, async_wait_for

from .helpers import client_for, device
from .netcut import CuttableLink
from .recorder import Recorder

CONFIGMAPS = ResourceType("", "v1", "ConfigMap", "configmaps")


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Informer]:
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(10):
            await informer.wait_synced()
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def kubectl_apply(cp: ControlPlane, namespace: str, obj: dict[str, object]) -> None:
    result = cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
    assert result.returncode == 0, result.stderr


@async_test(timeout=60)
async def test_informer_sees_kubectl_changes_and_indexes_them(control_plane: ControlPlane, namespace: str) -> None:
    kubectl_apply(control_plane, namespace, device("before", pool="pool-a"))
    async with client_for(control_plane) as kube:
        recorder = Recorder()
        informer = Informer(
            kube.resource(Device, namespace),
            indexers={"pool": by_field("spec.nodePool"), "namespace": by_namespace},
        )
        informer.add_handler(recorder.handler())
        async with running(informer):
            assert recorder.changes() == [("add", "before")], "the initial list is handed out before has_synced"
            assert informer.store.get(namespace, "before") is not None

            await asyncio.to_thread(kubectl_apply, control_plane, namespace, device("after", pool="pool-b"))
            await asyncio.to_thread(control_plane.kubectl, "label", "device", "before", "room=b12", "-n", namespace)
            await asyncio.to_thread(control_plane.kubectl, "delete", "device", "before", "-n", namespace)
            await async_wait_for(lambda: ("delete", "before") in recorder.events, within=10)

            expected = [("add", "before"), ("add", "after"), ("update", "before"), ("delete", "before")]
            assert recorder.changes() == expected
            assert informer.store.get(namespace, "before") is None
            assert [d["metadata"]["name"] for d in informer.store.by_index("pool", "pool-b")] == ["after"]
            assert informer.store.by_index("pool", "pool-a") == []
            assert len(informer.store.by_index("namespace", namespace)) == 1
            with pytest.raises(KeyError, match="no index"):
                informer.store.by_index("colour", "red")


@async_test(timeout=60)
async def test_label_selector_restricts_the_cache_and_late_handlers_get_the_cache(
    control_plane: ControlPlane, namespace: str
) -> None:
    async with client_for(control_plane) as kube:
        devices = kube.resource(Device, namespace)
        await devices.create(device("mine", labels={"team": "edge"}))
        await devices.create(device("theirs", labels={"team": "cloud"}))
        informer = Informer(devices, label_selector="team=edge")
        async with running(informer):
            assert [d["metadata"]["name"] for d in informer.store.list()] == ["mine"]
            late = Recorder()
            informer.add_handler(late.handler())
            assert late.events == [("add", "mine")]
            await devices.patch("theirs", {"metadata": {"labels": {"team": "edge"}}})
            await async_wait_for(lambda: informer.store.get(namespace, "theirs"), within=10)
            assert late.events[-1] == ("add", "theirs"), "an object entering the selector is an add"


@async_test(timeout=60)
async def test_resync_re_emits_every_cached_object(control_plane: ControlPlane, namespace: str) -> None:
    async with client_for(control_plane) as kube:
        maps = kube.resource(CONFIGMAPS, namespace)
        await maps.create({"metadata": {"name": "a"}})
        await maps.create({"metadata": {"name": "b"}})
        recorder = Recorder()
        informer = Informer(maps, resync_period=0.2)
        informer.add_handler(recorder.handler())
        async with running(informer):
            await async_wait_for(
                lambda: {("resync", "a"), ("resync", "b")} <= set(recorder.events), within=10, what="a resync"
            )


@async_test(timeout=60)
async def test_watches_the_server_ends_are_resumed_without_losing_events(
    control_plane: ControlPlane, namespace: str
) -> None:
    async with client_for(control_plane) as kube:
        maps = kube.resource(CONFIGMAPS, namespace)
        recorder = Recorder()
        informer = Informer(maps, watch_timeout=1)  # the server ends each watch after 1-2 s
        informer.add_handler(recorder.handler())
        async with running(informer):
            for i in range(6):
                await maps.create({"metadata": {"name": f"cm-{i}"}})
                await async_wait_for(lambda i=i: informer.store.get(namespace, f"cm-{i}"), within=10)
                await asyncio.sleep(0.5)  # spread the changes over several watches
        assert recorder.changes() == [("add", f"cm-{i}") for i in range(6)]


@async_test(timeout=60)
async def test_a_network_outage_is_survived_without_losing_events(control_plane: ControlPlane, namespace: str) -> None:
    link = CuttableLink(control_plane.port)
    await link.start()
    config = load_config(control_plane.kubeconfig)
    config.host = link.url
    try:
        async with KubeClient(config) as through_link, client_for(control_plane) as direct:
            maps = direct.resource(CONFIGMAPS, namespace)
            await maps.create({"metadata": {"name": "kept"}})
            await maps.create({"metadata": {"name": "dropped"}})
            recorder = Recorder()
            informer = Informer(through_link.resource(CONFIGMAPS, namespace))
            informer.add_handler(recorder.handler())
            async with running(informer):
                link.cut()
                await maps.patch("kept", {"data": {"k": "v"}})
                await maps.delete("dropped")
                await maps.create({"metadata": {"name": "new"}})
                link.heal()
                await async_wait_for(lambda: informer.store.get(namespace, "new"), within=20)
                await async_wait_for(lambda: informer.store.get(namespace, "dropped") is None, within=10)
                assert (informer.store.get(namespace, "kept") or {}).get("data") == {"k": "v"}
            assert sorted(recorder.changes()[2:]) == [("add", "new"), ("delete", "dropped"), ("update", "kept")]
            assert link.connections >= 2, "the informer had to reconnect"
    finally:
        await link.close()


@async_test(timeout=60)
async def test_a_failing_handler_does_not_stop_the_informer_or_other_handlers(
    control_plane: ControlPlane, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(obj: dict[str, object]) -> None:
        raise RuntimeError("handler bug")

    async with client_for(control_plane) as kube:
        maps = kube.resource(CONFIGMAPS, namespace)
        recorder = Recorder()
        informer = Informer(maps)
        informer.add_handler(EventHandler(on_add=broken))
        informer.add_handler(recorder.handler())
        async with running(informer):
            await maps.create({"metadata": {"name": "a"}})
            await maps.create({"metadata": {"name": "b"}})
            await async_wait_for(lambda: recorder.changes() == [("add", "a"), ("add", "b")], within=10)
        assert sum("event handler" in r.getMessage() for r in caplog.records) == 2
