"""What the simulators share when run as processes (`python -m yurt_iot.sim.<protocol>`)."""

from __future__ import annotations

import asyncio
import signal


async def until_signalled() -> None:
    """Return once SIGINT or SIGTERM arrives: how a benchmark or the demo stops a simulator process."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
