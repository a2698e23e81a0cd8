"""Benchmark the event spool with 1 KB payloads: ``python bench/spool.py``.

Prints the append rate alone, then the cost per event of the publisher's cycle (append, peek a batch
after the last id handed out, ack each), for a few batch sizes. Uses a temporary directory (page cache,
no fsync), so it measures the spool's CPU cost, not the disk.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from yurt_iot.runtime.spool import Spool

PAYLOAD = b"x" * 1024
TOPIC = "yurt/gateway-1/devices/plc-0042/readings"
EVENTS = 200_000


async def bench_append(directory: Path) -> None:
    async with Spool(directory, max_bytes=1 << 40) as spool:
        start = time.perf_counter()
        for _ in range(EVENTS):
            spool.append(TOPIC, PAYLOAD)
        elapsed = time.perf_counter() - start
    print(f"append only:            {EVENTS / elapsed:10,.0f} events/s  {elapsed / EVENTS * 1e6:6.2f} µs/event")


async def bench_cycle(directory: Path, batch: int) -> None:
    async with Spool(directory, max_bytes=1 << 30) as spool:
        after: int | None = None
        start = time.perf_counter()
        for _ in range(EVENTS // batch):
            for _ in range(batch):
                spool.append(TOPIC, PAYLOAD)
            events = spool.peek(batch, after)
            after = events[-1].id
            for event in events:
                spool.ack(event.id)
        elapsed = time.perf_counter() - start
        assert spool.depth == 0
    per_event = elapsed / (EVENTS // batch * batch) * 1e6
    print(f"append+peek+ack, batch {batch:4d}: {1e6 / per_event:10,.0f} events/s  {per_event:6.2f} µs/event")


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="spool-bench-") as tmp:
        await bench_append(Path(tmp) / "append")
        for batch in (1, 10, 100):
            await bench_cycle(Path(tmp) / f"cycle-{batch}", batch)


if __name__ == "__main__":
    asyncio.run(main())
