"""The operations endpoint: metrics a Prometheus server can scrape, health a kubelet can probe."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import CollectorRegistry, Counter

from yurt_iot.ops import OpsServer


def test_metrics_and_health_over_http() -> None:
    async def scenario() -> None:
        registry = CollectorRegistry()
        Counter("yurt_iot_test_events", "test counter", registry=registry).inc(3)
        problem: list[str] = []
        server = OpsServer(registry, ready=lambda: problem[0] if problem else None)
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                metrics = await client.get("/metrics")
                assert metrics.status_code == 200
                assert "yurt_iot_test_events_total 3.0" in metrics.text
                assert (await client.get("/healthz")).text == "ok\n"
                assert (await client.get("/readyz")).status_code == 200
                problem.append("spool not open")
                not_ready = await client.get("/readyz")
                assert (not_ready.status_code, not_ready.text) == (503, "spool not open\n")
                assert (await client.get("/nope")).status_code == 404
        finally:
            await server.close()

    asyncio.run(scenario())
