"""410 Gone: the informer lists again and emits what it missed, on a control plane without a watch cache.

kube-apiserver's watch cache would serve an old resourceVersion from memory, so a second control plane
runs with --watch-cache=false: watches then go to etcd, and once etcd has compacted the revision a
watch resumes from, the server answers 410 Gone, as after an apiserver restart or a long outage.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from yurt_iot.api.meta import ResourceType
from yurt_iot.kube import Informer, KubeClient, load_config
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.waiting import async_test, async_wait_for

from .helpers import client_for
from .netcut import CuttableLink
from .recorder import Recorder

CONFIGMAPS = ResourceType("", "v1", "ConfigMap", "configmaps")
NAMESPACES = ResourceType("", "v1", "Namespace", "namespaces", scope="Cluster")


@pytest.fixture(scope="module")
def uncached_control_plane(control_plane_bin_dir: Path) -> Iterator[ControlPlane]:
    with ControlPlane(control_plane_bin_dir, extra_apiserver_args=["--watch-cache=false"]) as cp:
        yield cp


async def compact_etcd(cp: ControlPlane) -> None:
    """Compact etcd up to its current revision (through etcd's JSON gateway), so older revisions are gone."""
    async with httpx.AsyncClient(base_url=cp.etcd_url, trust_env=False) as etcd:
        key = base64.b64encode(b"/").decode()
        header = (await etcd.post("/v3/kv/range", json={"key": key, "limit": 1})).json()["header"]
        answer = await etcd.post("/v3/kv/compaction", json={"revision": header["revision"], "physical": True})
        answer.raise_for_status()


@async_test(timeout=60)
async def test_after_410_gone_the_informer_relists_and_emits_what_it_missed(
    uncached_control_plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    cp = uncached_control_plane
    link = CuttableLink(cp.port)
    await link.start()
    config = load_config(cp.kubeconfig)
    config.host = link.url
    caplog.set_level(logging.INFO, logger="yurt_iot.kube.informer")
    try:
        async with KubeClient(config) as through_link, client_for(cp) as direct:
            await direct.resource(NAMESPACES).create({"metadata": {"name": "relist"}})
            maps = direct.resource(CONFIGMAPS, "relist")
            for name in ("kept", "dropped", "untouched"):
                await maps.create({"metadata": {"name": name}})
            recorder = Recorder()
            informer = Informer(through_link.resource(CONFIGMAPS, "relist"))
            informer.add_handler(recorder.handler())
            task = asyncio.create_task(informer.run())
            try:
                async with asyncio.timeout(10):
                    await informer.wait_synced()
                stale = informer.resource_version
                link.cut()
                await maps.patch("kept", {"data": {"k": "v"}})
                await maps.delete("dropped")
                await maps.create({"metadata": {"name": "new"}})
                await compact_etcd(cp)
                link.heal()

                await async_wait_for(lambda: informer.resource_version not in (None, stale), within=20, what="a relist")
                assert sorted(recorder.changes()[3:]) == [("add", "new"), ("delete", "dropped"), ("update", "kept")]
                assert sorted(o["metadata"]["name"] for o in informer.store.list()) == ["kept", "new", "untouched"]
                assert any("is gone" in r.getMessage() for r in caplog.records), "the 410 path was taken"
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await link.close()
