"""`yurt-iot demo`: the broker, the simulators and the gateway of the manifests, with a live table of readings.

    manifests (examples/iot) --plan--> broker + simulators (child processes, ports from the manifests)
                             --------> gateway service (in this process: devices API on the ops port, live reload)
                                       --> rich Live table, refreshed from the devices API's summaries

The broker is Mosquitto when it is installed, else the built-in one (`yurt_iot.demo.broker`), which speaks both
MQTT versions the demo's clients use: 5 for the gateway's telemetry publisher, 3.1.1 for the MQTT driver and the
MQTT device simulators. Everything stops on Ctrl-C, SIGTERM, SIGHUP (the terminal closed) or after `duration`:
the gateway first, then the simulators and the broker. Should the demo itself be killed, Linux stops the
simulators and the built-in broker with it (`die_with_parent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.text import Text

from yurt_iot.api.iot import Device
from yurt_iot.demo.children import BrokerChoice, Child, builtin_broker, check_port_free, choose_broker
from yurt_iot.demo.plan import DemoError, Plan, plan
from yurt_iot.demo.table import devices_table
from yurt_iot.runtime.deviceapi import DeviceApi
from yurt_iot.runtime.manifests import ManifestError, load_manifests
from yurt_iot.runtime.publisher import MqttSettings
from yurt_iot.runtime.service import GatewayOptions, gateway_service
from yurt_iot.testing.mosquitto import Mosquitto, MosquittoError

_REFRESH = 0.5
_RATE_WINDOW = 3.0


@dataclass(frozen=True)
class DemoOptions:
    manifests: Path
    duration: float | None = None
    """Seconds to run; None runs until Ctrl-C."""
    mqtt_port: int = 1883
    """The broker the gateway publishes telemetry to (started by the demo)."""
    ops_port: int = 9464
    broker: BrokerChoice = BrokerChoice.auto
    """Mosquitto when installed (auto), or the built-in broker (`yurt_iot.demo.broker`)."""


class Rates:
    """Readings per second of each device over the last few seconds, from its running count."""

    def __init__(self) -> None:
        self._history: dict[str, deque[tuple[float, int]]] = {}

    def update(self, counts: dict[str, int], now: float) -> dict[str, float]:
        rates = {}
        for name, count in counts.items():
            history = self._history.setdefault(name, deque())
            history.append((now, count))
            while now - history[0][0] > _RATE_WINDOW:
                history.popleft()
            (t0, c0), (t1, c1) = history[0], history[-1]
            rates[name] = (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0
        return rates


def _view(api: DeviceApi, rates: Rates, footer: str) -> Group:
    devices = api.summaries()
    rate = rates.update({d["name"]: d["readings"] for d in devices}, time.monotonic())
    total = f"{sum(rate.values()):.1f}"
    title = Text.assemble(("yurt-iot demo", "bold"), f"  {len(devices)} devices, ", (total, "bold"), " readings/s")
    return Group(title, devices_table(devices, rate), Text(footer, style="dim"))


@contextlib.asynccontextmanager
async def _started(the_plan: Plan, broker: BrokerChoice, workdir: Path, console: Console) -> AsyncIterator[None]:
    """The brokers, then the simulators; all stopped in the reverse order when the block exits, whatever
    happened."""
    binary = choose_broker(broker)
    async with contextlib.AsyncExitStack() as stack:
        for port in sorted(the_plan.brokers):
            if binary is None:
                child = builtin_broker(port, workdir)
                stack.push_async_callback(child.stop)
                await child.start()
                why = ", mosquitto not installed" if broker == BrokerChoice.auto else ""
                console.print(f"MQTT broker (built-in{why}) on 127.0.0.1:{port}")
            else:
                mosquitto = Mosquitto(binary, port=port)
                stack.push_async_callback(asyncio.to_thread, mosquitto.close)
                try:
                    await asyncio.to_thread(mosquitto.start)
                except MosquittoError as error:
                    raise DemoError(f"{error}\n(--broker builtin runs the demo's own broker instead)") from None
                console.print(f"MQTT broker (mosquitto) on 127.0.0.1:{port}")
        children = [Child(s.purpose, s.argv, workdir / f"sim-{i}.log") for i, s in enumerate(the_plan.simulators)]
        stack.push_async_callback(_stop_all, children)
        for child, line in zip(children, await asyncio.gather(*(c.start() for c in children)), strict=True):
            console.print(f"{child.purpose}: {line}")
        yield


async def _stop_all(children: Sequence[Child]) -> None:
    await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)


def _check_ports(the_plan: Plan, ops_port: int) -> None:
    check_port_free(ops_port, "the gateway's ops and devices API")
    for port in sorted(the_plan.brokers):
        check_port_free(port, "the MQTT broker")
    for simulator in the_plan.simulators:
        if simulator.listens:
            check_port_free(simulator.port, simulator.purpose)


async def run_demo(options: DemoOptions, console: Console | None = None) -> None:
    """Run the demo until Ctrl-C, SIGTERM, SIGHUP or `options.duration`; DemoError if it cannot start."""
    console = console or Console()
    logging.basicConfig(
        level="WARNING", format="%(name)s: %(message)s", force=True,
        handlers=[RichHandler(console=console, show_path=False)],
    )  # fmt: skip
    try:
        devices = [o for o in load_manifests([options.manifests]) if isinstance(o, Device)]
    except ManifestError as error:
        raise DemoError(f"the manifests in {options.manifests} cannot be used:\n{error}") from None
    the_plan = plan(devices, options.mqtt_port)
    for reason in the_plan.unsimulated:
        console.print(f"[yellow]not simulated[/]: {reason}")
    _check_ports(the_plan, options.ops_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    with tempfile.TemporaryDirectory(prefix="yurt-iot-demo-") as workdir:
        gateway_options = GatewayOptions(
            manifests=(options.manifests,),
            mqtt=MqttSettings(host="127.0.0.1", port=options.mqtt_port),
            spool_dir=Path(workdir) / "spool",
            ops_port=options.ops_port,
        )
        started = _started(the_plan, options.broker, Path(workdir), console)
        async with started, gateway_service(gateway_options) as running:
            footer = (
                f"Ctrl-C stops the demo. Edit {options.manifests}/*.yaml: the gateway applies it live. "
                f"In another terminal: yurt-iot devices ls --gateway http://127.0.0.1:{running.ops_port}"
            )
            rates = Rates()
            with Live(_view(running.api, rates, footer), console=console, refresh_per_second=4) as live:
                deadline = None if options.duration is None else loop.time() + options.duration
                while not stop.is_set() and (deadline is None or loop.time() < deadline):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), _REFRESH)
                    live.update(_view(running.api, rates, footer))
            # a Ctrl-C reaches mosquitto too (it shares the terminal): its going away is no news while stopping
            logging.getLogger().setLevel(logging.ERROR)
    if not console.is_terminal:  # Live leaves its last frame without a line end when it is not on a terminal
        console.line()
    console.print("demo stopped: gateway, simulators and broker are down")


def default_manifests(candidates: Sequence[Path]) -> Path:
    """The first directory of `candidates` that exists; DemoError naming them all if none does."""
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DemoError(f"no example manifests at {', '.join(map(str, candidates))}; pass a directory with --manifests")
