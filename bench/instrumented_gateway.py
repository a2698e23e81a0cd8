"""``yurt-iot`` with bench-only instrumentation: ``python bench/instrumented_gateway.py [OPTIONS] gateway ...``.

Everything after the options below is ``yurt-iot``'s own command line. bench/telemetry.py uses it for:

``--profile OUT``
    cProfile, switched on by SIGUSR1 and off by SIGUSR2, which also writes the profile to OUT (pstats format):
    the profile covers a steady-state window, not the imports and the start-up.
``--tracemalloc OUT``
    tracemalloc from the start (slow: for memory runs only); SIGUSR2 writes the top allocation sites still
    live, by line and by file, to OUT as text.
``--phases aligned|GROUPS``
    A what-if, not the product: the phase within its period at which each device polls. The product spreads
    devices by a phase from their name (``yurt_iot.runtime.scheduler.phase_of``); ``aligned`` gives every
    device the same phase (all poll at the same instant, as before the spreading), GROUPS rounds each phase up
    to one of GROUPS evenly spaced ones, so that devices poll in smaller bursts that share event-loop
    wakeups and MQTT writes.
"""

from __future__ import annotations

import argparse
import cProfile
import math
import signal
import sys
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from yurt_iot.cli import app
from yurt_iot.runtime import scheduler


def _phases(mode: str) -> None:
    original = scheduler.Schedule.__init__
    groups = 0 if mode == "aligned" else int(mode)

    def init(self: scheduler.Schedule, sources: Sequence[scheduler.Source], now: float, phase: float = 1.0) -> None:
        phase = 1.0 if not groups else max(1, math.ceil(phase * groups)) / groups
        original(self, sources, now, phase)

    scheduler.Schedule.__init__ = init  # type: ignore[method-assign]


def _profile(out: Path) -> None:
    profiler = cProfile.Profile()

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def _tracemalloc(out: Path) -> None:
    tracemalloc.start(1)

    def dump(signum: int, frame: FrameType | None) -> None:
        snapshot = tracemalloc.take_snapshot()
        total = sum(s.size for s in snapshot.statistics("filename"))
        lines = [f"traced Python allocations still live: {total / 1e6:.1f} MB", "", "by file:"]
        lines += [f"  {s.size / 1e6:7.2f} MB {s.count:9d} blocks  {s.traceback[0].filename}"
                  for s in snapshot.statistics("filename")[:25]]  # fmt: skip
        lines += ["", "by line:"]
        lines += [f"  {s.size / 1e6:7.2f} MB {s.count:9d} blocks  {s.traceback[0].filename}:{s.traceback[0].lineno}"
                  for s in snapshot.statistics("lineno")[:40]]  # fmt: skip
        out.write_text("\n".join(lines) + "\n")

    signal.signal(signal.SIGUSR2, dump)


def main() -> None:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--tracemalloc", type=Path)
    parser.add_argument("--phases")
    options, rest = parser.parse_known_args()
    if options.phases:
        _phases(options.phases)
    if options.profile:
        _profile(options.profile)
    if options.tracemalloc:
        _tracemalloc(options.tracemalloc)
    sys.argv[1:] = rest
    app(prog_name="yurt-iot")


if __name__ == "__main__":
    main()
