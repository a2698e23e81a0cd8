"""Many EdgeX device-mqtt devices pushing, in one process: ``python bench/mqtt_devices.py --broker-port P``.

``python -m yurt_iot.sim.mqtt`` is one device per process; a hundred of them would take more memory and start-up
time than the benchmark can spare. This runs `--devices` `MqttDeviceSimulator`s (``dev-<first>`` ...) on one event
loop, each with a connection of its own, as real devices have. Each pushes a JSON object of `--values` Float64
resources (``v00``, ``v01``, ...) to ``incoming/data/<device>/All`` every `--period` seconds, QoS 0 as EdgeX's
default, the values changing before every push. The devices start `--period` / `--devices` apart, so that their
pushes are spread over the period instead of arriving in one burst: devices are not synchronised.

Prints ``ready`` once every device is connected, then pushes until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from yurt_iot.sim.mqtt import MqttDeviceSimulator, Push
from yurt_iot.sim.process import until_signalled

SOURCE = "All"


def resource_names(values: int) -> list[str]:
    """The resources each device pushes; bench/telemetry.py writes the profile from the same names."""
    return [f"v{k:02d}" for k in range(values)]


async def serve(port: int, names: list[str], values: int, period: float) -> None:
    resources = {name: float(k) for k, name in enumerate(resource_names(values))}
    push = Push(SOURCE, tuple(resources))
    async with contextlib.AsyncExitStack() as stack:
        for name in names:
            await stack.enter_async_context(
                MqttDeviceSimulator(name, port=port, values=resources, pushes=[push], period=period)
            )
            await asyncio.sleep(period / len(names))  # its first push is one period after it is ready
        print("ready", flush=True)
        await until_signalled()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker-port", type=int, required=True, help="Mosquitto on 127.0.0.1")
    parser.add_argument("--first", type=int, default=0, help="number of the first device, dev-<first>")
    parser.add_argument("--devices", type=int, default=1, help="devices in this process")
    parser.add_argument("--values", type=int, default=10, help="resources in each push")
    parser.add_argument("--period", type=float, default=1.0, help="seconds between a device's pushes")
    args = parser.parse_args()
    names = [f"dev-{i:03d}" for i in range(args.first, args.first + args.devices)]
    asyncio.run(serve(args.broker_port, names, args.values, args.period))


if __name__ == "__main__":
    main()
