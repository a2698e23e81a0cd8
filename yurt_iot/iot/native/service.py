"""The native backend as a process: the pool's Device CRs driven by the device runtime, readings to MQTT.

    informers (Device, DeviceProfile, DeviceService) -> NativeController -> Gateway -> Spool -> MqttPublisher
                                                          ^ status, finalizers      ^ disk, survives outages

The same runtime pieces as the standalone gateway (`runtime.service`): only where devices come from differs
(CRs here, manifest files there). It serves /metrics, /healthz, /readyz (ready once the caches are synced)
and the devices API on the ops port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from yurt_iot.iot.native.controller import NativeController, NativeSettings
from yurt_iot.iot.pool import PoolScope, served_pool
from yurt_iot.kube import KubeClient, KubeMetrics
from yurt_iot.ops import OpsServer
from yurt_iot.runtime.deviceapi import DeviceApi
from yurt_iot.runtime.events import DEFAULT_TOPIC_PREFIX
from yurt_iot.runtime.metrics import RuntimeMetrics
from yurt_iot.runtime.publisher import MqttSettings
from yurt_iot.runtime.service import cancel_and_wait, delivery
from yurt_iot.runtime.spool import OverflowPolicy

__all__ = ["NativeOptions", "RunningNative", "native_backend", "run_native"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NativeOptions:
    """Everything the native backend is told on its command line."""

    namespace: str
    """Namespace of the pool's Device, DeviceProfile and DeviceService CRs."""
    mqtt: MqttSettings
    spool_dir: Path
    pool: str | None = None
    """The NodePool served; None: read from the `apps.openyurt.io/nodepool` label of `node_name`."""
    node_name: str | None = None
    kubeconfig: Path | None = None
    """None: the default kubeconfig, or the in-cluster service account."""
    spool_max_bytes: int = 1 << 30
    overflow: OverflowPolicy = OverflowPolicy.REJECT_NEW
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    ops_host: str = "127.0.0.1"
    ops_port: int = 9464
    driver_timeout: float = 1.0
    settings: NativeSettings = field(default_factory=NativeSettings)


@dataclass(frozen=True)
class RunningNative:
    """A started native backend: its controller (and through it the runtime's Gateway), its ops port, and the
    controller-core series of its /metrics, which other controllers of the process can add to."""

    controller: NativeController
    ops_port: int
    kube_metrics: KubeMetrics


@contextlib.asynccontextmanager
async def native_backend(options: NativeOptions, *, kube: KubeClient | None = None) -> AsyncIterator[RunningNative]:
    """Start the backend (PoolNotFound if the pool cannot be determined); everything stops when the block exits:
    devices first, then the publisher (what is spooled stays on disk for the next start).

    `kube` is a client to use instead of one from `options.kubeconfig`; it is left open.
    """
    async with contextlib.AsyncExitStack() as stack:
        if kube is None:
            kube = await stack.enter_async_context(KubeClient.from_kubeconfig(options.kubeconfig))
        pool = await served_pool(kube, options.pool, options.node_name)
        metrics = RuntimeMetrics()
        kube_metrics = KubeMetrics(metrics.registry)
        sink = await stack.enter_async_context(
            delivery(
                options.spool_dir, options.mqtt, metrics.registry,
                max_bytes=options.spool_max_bytes, overflow=options.overflow,
            )
        )  # fmt: skip
        controller = NativeController(
            kube,
            PoolScope(pool, options.namespace),
            sink,
            settings=options.settings,
            runtime_metrics=metrics,
            kube_metrics=kube_metrics,
            topic_prefix=options.topic_prefix,
            driver_timeout=options.driver_timeout,
        )
        ops = OpsServer(
            metrics.registry,
            host=options.ops_host,
            port=options.ops_port,
            ready=lambda: None if controller.has_synced else "waiting for the API server's Devices",
            api=DeviceApi(controller.gateway),
        )
        await ops.start()
        controlling = asyncio.create_task(controller.run(), name="native controller")
        try:
            logger.info("native backend of pool %s in %s, ops on %s:%d", pool, options.namespace, ops.host, ops.port)
            yield RunningNative(controller, ops.port, kube_metrics)
        finally:
            await cancel_and_wait(controlling)  # stops every device and closes the drivers, before delivery stops
            await ops.close()


async def run_native(options: NativeOptions, stop: asyncio.Event) -> None:
    """Run until `stop` is set."""
    async with native_backend(options):
        await stop.wait()
