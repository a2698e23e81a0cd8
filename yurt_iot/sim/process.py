"""What the simulators share when run as processes (`python -m yurt_iot.sim.<protocol>`), and what their
parents (the demo, the benchmarks) use to start them."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A `preexec_fn`: Linux sends this child SIGTERM when its parent dies, even by SIGKILL, so that no simulator
    outlives the demo or benchmark that started it and keeps its port. Linux ties this to the thread that started
    the child: use it only from the main thread. Elsewhere it does nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def until_signalled() -> None:
    """Return once SIGINT or SIGTERM arrives: how a benchmark or the demo stops a simulator process."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
