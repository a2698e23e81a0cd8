"""The gateway process: devices from manifests, polled by the runtime, events spooled to disk and published.

    manifests -> Gateway (drivers, schedules) -> Spool (disk, bounded) -> MqttPublisher -> broker
        ^ reloaded live                                ^ survives broker outages and kill -9

It also serves /metrics, /healthz, /readyz and the devices API (`deviceapi`). The per-pool controller (for
clusters) feeds the same Gateway from the CRDs instead of files; the demo runs this service in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from yurt_iot.ops import OpsServer
from yurt_iot.runtime.device import EventSink
from yurt_iot.runtime.deviceapi import DeviceApi
from yurt_iot.runtime.events import DEFAULT_TOPIC_PREFIX
from yurt_iot.runtime.gateway import Gateway
from yurt_iot.runtime.metrics import RuntimeMetrics
from yurt_iot.runtime.publisher import MqttPublisher, MqttSettings, TelemetryCollector
from yurt_iot.runtime.reload import ManifestReloader
from yurt_iot.runtime.spool import OverflowPolicy, Spool

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayOptions:
    """Everything `yurt-iot gateway` is told on its command line."""

    manifests: tuple[Path, ...]
    mqtt: MqttSettings
    spool_dir: Path
    spool_max_bytes: int = 1 << 30
    overflow: OverflowPolicy = OverflowPolicy.REJECT_NEW
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    ops_host: str = "127.0.0.1"
    ops_port: int = 9464
    driver_timeout: float = 1.0
    reload_interval: float | None = 0.5
    """Seconds between looks at the manifest files for changes; None reads them once."""


@dataclass(frozen=True)
class RunningGateway:
    """A started gateway service: its runtime, its devices API and the port the ops endpoint listens on."""

    gateway: Gateway
    api: DeviceApi
    reloader: ManifestReloader
    ops_port: int


@contextlib.asynccontextmanager
async def delivery(
    spool_dir: Path,
    mqtt: MqttSettings,
    registry: CollectorRegistry,
    *,
    max_bytes: int = 1 << 30,
    overflow: OverflowPolicy = OverflowPolicy.REJECT_NEW,
) -> AsyncIterator[EventSink]:
    """The disk spool and the MQTT publisher draining it, as the event sink of a device runtime: what the sink
    accepts is delivered, across broker outages and restarts. Leaving the block stops the publisher (what is
    still spooled waits on disk for the next start); stop the devices first."""
    async with Spool(spool_dir, max_bytes=max_bytes, policy=overflow) as spool:
        publisher = MqttPublisher(spool, mqtt)
        registry.register(TelemetryCollector(spool, publisher))
        publishing = asyncio.create_task(publisher.run(), name="mqtt publisher")
        try:
            yield lambda topic, payload: spool.append(topic, payload) is not None
        finally:
            await publisher.close()
            await cancel_and_wait(publishing)


@contextlib.asynccontextmanager
async def gateway_service(options: GatewayOptions) -> AsyncIterator[RunningGateway]:
    """Start the gateway: ManifestError (before anything starts) if the manifests cannot be used; a device
    that cannot start is logged and skipped, the others run. Everything stops when the block exits."""
    metrics = RuntimeMetrics()
    spooling = delivery(
        options.spool_dir, options.mqtt, metrics.registry, max_bytes=options.spool_max_bytes, overflow=options.overflow
    )
    async with spooling as sink:
        gateway = Gateway(
            sink, metrics=metrics, topic_prefix=options.topic_prefix, driver_timeout=options.driver_timeout
        )
        reloader = ManifestReloader(gateway, options.manifests, interval=options.reload_interval or 0.5)
        desired = await reloader.load()
        started = False
        api = DeviceApi(gateway)
        ops = OpsServer(
            metrics.registry,
            host=options.ops_host,
            port=options.ops_port,
            ready=lambda: None if started else "starting devices",
            api=api,
        )
        await ops.start()
        watching: asyncio.Task[None] | None = None
        try:
            await reloader.apply(desired)
            started = True
            if options.reload_interval is not None:
                watching = asyncio.create_task(reloader.watch(), name="manifest reloader")
            logger.info(
                "gateway running: %d devices, ops on %s:%d, publishing to %s:%d",
                len(gateway.devices), options.ops_host, ops.port, options.mqtt.host, options.mqtt.port,
            )  # fmt: skip
            yield RunningGateway(gateway, api, reloader, ops.port)
        finally:
            await cancel_and_wait(watching)  # before the devices stop, so that no reload starts one again
            await gateway.close()
            await ops.close()


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel a service's task and wait until it has ended (None: nothing to do)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_gateway(options: GatewayOptions, stop: asyncio.Event) -> None:
    """Run until `stop` is set."""
    async with gateway_service(options):
        await stop.wait()
