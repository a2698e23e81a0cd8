"""Several Modbus simulators in one process, each on a port of its own: ``python bench/sim_cluster.py --endpoints 25``.

``python -m yurt_iot.sim.modbus`` serves all its units behind one port, so every device on it shares one gateway
connection, as devices behind a serial-to-Ethernet gateway do. Devices that are Modbus TCP servers of their own
(a PLC, a meter with its own address) each get a connection; on 127.0.0.1 that takes a port per device. This
starts `--endpoints` simulators (yurt_iot.sim.modbus.ModbusSimulator, `--units` units each) on one event loop,
prints their ports as one JSON list, and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

from yurt_iot.sim.modbus import ModbusSimulator


async def serve(endpoints: int, units: int, size: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    simulators = [ModbusSimulator(range(1, units + 1), table_size=size) for _ in range(endpoints)]
    async with contextlib.AsyncExitStack() as stack:
        for simulator in simulators:
            await stack.enter_async_context(simulator)
        print(json.dumps([s.port for s in simulators]), flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=1, help="simulators (ports) in this process")
    parser.add_argument("--units", type=int, default=1, help="unit ids 1..N behind each port")
    parser.add_argument("--size", type=int, default=256, help="entries in each table")
    args = parser.parse_args()
    asyncio.run(serve(args.endpoints, args.units, args.size))


if __name__ == "__main__":
    main()
