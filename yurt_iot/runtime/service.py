"""The gateway process: devices from manifests, polled by the runtime, events spooled to disk and published.

    manifests -> Gateway (drivers, schedules) -> Spool (disk, bounded) -> MqttPublisher -> broker
                                                       ^ survives broker outages and kill -9

It also serves /metrics, /healthz and /readyz. The per-pool controller (for clusters) feeds the same
Gateway from the CRDs instead of files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from yurt_iot.ops import OpsServer
from yurt_iot.runtime.events import DEFAULT_TOPIC_PREFIX
from yurt_iot.runtime.gateway import Gateway
from yurt_iot.runtime.manifests import device_profiles, load_manifests
from yurt_iot.runtime.metrics import RuntimeMetrics
from yurt_iot.runtime.publisher import MqttPublisher, MqttSettings
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


class _TelemetryCollector(Collector):
    """Spool and publisher figures, read when Prometheus scrapes (nothing to update on the hot path)."""

    def __init__(self, spool: Spool, publisher: MqttPublisher) -> None:
        self._spool, self._publisher = spool, publisher

    def collect(self) -> Iterator[Metric]:
        s, p = self._spool, self._publisher
        yield GaugeMetricFamily("yurt_iot_spool_depth", "Events waiting in the spool", value=s.depth)
        yield GaugeMetricFamily("yurt_iot_spool_bytes", "Bytes of events waiting in the spool", value=s.size_bytes)
        for name, help_text, value in (
            ("yurt_iot_spool_rejected", "Events refused because the spool was full", s.rejected),
            ("yurt_iot_spool_dropped", "Oldest events evicted because the spool was full", s.dropped),
            ("yurt_iot_mqtt_published", "MQTT publishes sent, re-sends included", p.published),
            ("yurt_iot_mqtt_acked", "Events acknowledged by the broker and removed from the spool", p.acked),
            ("yurt_iot_mqtt_refused", "Events the broker refused for good (removed, logged)", p.refused),
            ("yurt_iot_mqtt_reconnects", "MQTT connections re-established", p.reconnects),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        yield GaugeMetricFamily("yurt_iot_mqtt_connected", "1 while connected to the broker", value=int(p.connected))


async def run_gateway(options: GatewayOptions, stop: asyncio.Event) -> None:
    """Run until `stop` is set; a device that cannot start is logged and skipped, the others run."""
    pairs = device_profiles(load_manifests(options.manifests))
    metrics = RuntimeMetrics()
    async with Spool(options.spool_dir, max_bytes=options.spool_max_bytes, policy=options.overflow) as spool:
        publisher = MqttPublisher(spool, options.mqtt)
        metrics.registry.register(_TelemetryCollector(spool, publisher))
        gateway = Gateway(
            lambda topic, payload: spool.append(topic, payload) is not None,
            metrics=metrics,
            topic_prefix=options.topic_prefix,
            driver_timeout=options.driver_timeout,
        )
        started = False
        ops = OpsServer(
            metrics.registry,
            host=options.ops_host,
            port=options.ops_port,
            ready=lambda: None if started else "starting devices",
        )
        await ops.start()
        publishing = asyncio.create_task(publisher.run(), name="mqtt publisher")
        try:
            for device, profile in pairs:
                try:
                    await gateway.apply(device, profile)
                except Exception:
                    logger.exception("device %s not started", device.metadata.name)
            started = True
            logger.info(
                "gateway running: %d devices, ops on %s:%d, publishing to %s:%d",
                len(gateway.devices), options.ops_host, ops.port, options.mqtt.host, options.mqtt.port,
            )  # fmt: skip
            await stop.wait()
        finally:
            await gateway.close()
            await publisher.close()
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
            await ops.close()
