"""The baseline for bench/telemetry.py: what a straightforward Python Modbus -> MQTT gateway does.

The code one would write first with the usual libraries, with none of yurt-iot's work on the hot path:

* pymodbus's AsyncModbusTcpClient, one connection per device (so it is not held back by sharing one);
* ``--mode per-register``: one request per register; ``--mode wide``: one read of all registers per device;
* per reading, an EdgeX-shaped event dict (uuid4 ids, wall-clock origin in ns) through ``json.dumps``;
* per reading, ``paho.publish(..., qos=1)`` with paho's network thread (``loop_start``), 256 messages in flight
  (our gateway's window; paho's default is 20) and paho's unbounded in-memory queue: no spool.

Each device polls at a fixed rate and skips slots it is too late for, as ours does. Prints ``ready`` once
connected to the broker; on SIGUSR1 prints its counters as a JSON line; SIGTERM ends it.

    python bench/baseline_naive.py --mqtt-port P --devices devices.json --registers 50 --period 0.1 --mode wide

devices.json is a list of [name, port, unit] (simulators on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

LOOPBACK = "127.0.0.1"
PROFILE = "bench"
SERVICE = "device-modbus"


class Counters:
    def __init__(self) -> None:
        self.polls = 0
        self.requests = 0
        self.readings = 0
        self.late = 0
        self.errors = 0


def publish(client: mqtt.Client, device: str, resource: str, value: int, origin: int) -> None:
    event = {
        "apiVersion": "v3",
        "id": str(uuid.uuid4()),
        "deviceName": device,
        "profileName": PROFILE,
        "sourceName": resource,
        "origin": origin,
        "readings": [
            {
                "id": str(uuid.uuid4()),
                "origin": origin,
                "deviceName": device,
                "resourceName": resource,
                "profileName": PROFILE,
                "valueType": "Uint16",
                "value": str(value),
            }
        ],
    }
    client.publish(f"edgex/events/device/{SERVICE}/{PROFILE}/{device}/{resource}", json.dumps(event), qos=1)


async def poll_device(
    name: str, port: int, unit: int, registers: int, period: float, mode: str, mqttc: mqtt.Client, n: Counters
) -> None:
    client = AsyncModbusTcpClient(LOOPBACK, port=port, timeout=1)
    await client.connect()
    loop = asyncio.get_running_loop()
    due = loop.time() + period
    try:
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            behind = int((loop.time() - due) // period)
            n.late += behind
            due += (behind + 1) * period
            try:
                if mode == "wide":
                    origin = time.time_ns()
                    reply = await client.read_input_registers(0, count=registers, device_id=unit)
                    n.requests += 1
                    if reply.isError():
                        n.errors += 1
                        continue
                    for address, value in enumerate(reply.registers):
                        publish(mqttc, name, f"r{address:03d}", value, origin)
                        n.readings += 1
                else:
                    for address in range(registers):
                        origin = time.time_ns()
                        reply = await client.read_input_registers(address, count=1, device_id=unit)
                        n.requests += 1
                        if reply.isError():
                            n.errors += 1
                            continue
                        publish(mqttc, name, f"r{address:03d}", reply.registers[0], origin)
                        n.readings += 1
                n.polls += 1
            except ModbusException:
                n.errors += 1
                if not client.connected:
                    await client.connect()
    finally:
        client.close()


async def run(args: argparse.Namespace, devices: list[list[Any]]) -> None:
    connected = threading.Event()
    mqttc = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"baseline-{uuid.uuid4().hex[:8]}")
    mqttc.max_inflight_messages_set(256)
    mqttc.on_connect = lambda client, userdata, flags, reason, properties: connected.set()
    mqttc.connect(LOOPBACK, args.mqtt_port)
    mqttc.loop_start()
    counters = Counters()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps(vars(counters)), flush=True))
    if not await asyncio.to_thread(connected.wait, 15):
        raise SystemExit("not connected to the broker within 15 s")
    tasks = [
        asyncio.create_task(poll_device(name, port, unit, args.registers, args.period, args.mode, mqttc, counters))
        for name, port, unit in devices
    ]
    print("ready", flush=True)
    # No graceful stop, as a naive gateway has none: SIGTERM's default action ends the process at once (a
    # graceful paho loop_stop() would first try to send a backlog of maybe a million queued messages).
    await asyncio.gather(*tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--devices", required=True, help="JSON file: [[name, port, unit], ...]")
    parser.add_argument("--registers", type=int, required=True)
    parser.add_argument("--period", type=float, required=True)
    parser.add_argument("--mode", choices=["wide", "per-register"], default="wide")
    args = parser.parse_args()
    asyncio.run(run(args, json.loads(Path(args.devices).read_text())))


if __name__ == "__main__":
    main()
