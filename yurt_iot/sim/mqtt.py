"""An MQTT device simulator that speaks EdgeX device-mqtt's conventions, for tests, benchmarks and the demo.

Why a simulator on a real broker: the gateway's MQTT driver has to meet real subscriptions, real request and
response topics, and a broker that goes away; a fake transport would show none of it. The device:

* answers reads on ``<command topic>/<resource>/get/<uuid>`` with ``{"<resource>": value}`` on
  ``<response topic>/<uuid>``, and writes on ``.../<resource>/set/<uuid>`` (payload ``{"<resource>": value}``) by
  keeping the value and answering with it; a request for a resource it does not have gets ``{}``;
* pushes to ``<incoming topic>/<device>/<source>`` every `period` seconds, each `Push` as a JSON object of its
  resources or as a bare value; numeric resources that it pushes change before every push (integers by 1, floats
  by 0.5), the others keep what was written, so a test can tell fresh values from stale ones;
* can be told to stay `silent` (no answers, no pushes: a device that is switched off, for timeouts) or to leave
  requests for some resources `unanswered`, counts the requests it got (`requests`) and the messages it pushed
  (`pushed`), and can publish anything (`publish`) to provoke the driver with malformed messages.

It connects through the gateway's own `MqttClient`, so it reconnects with backoff and subscribes again after a
broker restart. As a process, for benchmarks and the demo::

    python -m yurt_iot.sim.mqtt --broker-port 1883 --device thermostat

prints one line once it is subscribed, then runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self

import paho.mqtt.client as mqtt

from yurt_iot.runtime.backoff import Backoff
from yurt_iot.runtime.mqttclient import MqttClient, MqttSettings
from yurt_iot.sim.process import until_signalled
from yurt_iot.testing.ports import LOOPBACK

__all__ = ["DEFAULT_INCOMING_TOPIC", "DEFAULT_RESPONSE_TOPIC", "DEFAULT_VALUES", "MqttDeviceSimulator", "Push"]

#: EdgeX device-mqtt's default prefixes of responses and of pushed values.
DEFAULT_RESPONSE_TOPIC: Final = "command/response"
DEFAULT_INCOMING_TOPIC: Final = "incoming/data"
#: The resources of a simulator that is given none.
DEFAULT_VALUES: Final[Mapping[str, Any]] = {"temperature": 20.0, "humidity": 50, "switch": False, "message": "hi"}

_READY_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class Push:
    """One source pushed every period: `resources` as a JSON object, or (`bare`) the one resource as a bare value.

    Without `resources` the source is itself the one resource.
    """

    source: str
    resources: tuple[str, ...] = ()
    bare: bool = False

    def __post_init__(self) -> None:
        if self.bare and len(self.names) != 1:
            raise ValueError(f"push {self.source!r}: a bare value needs exactly one resource")

    @property
    def names(self) -> tuple[str, ...]:
        return self.resources or (self.source,)


class MqttDeviceSimulator:
    """One simulated device on the broker at ``host:port``; see the module docstring.

    ``async with MqttDeviceSimulator("dev", port=broker.port) as sim:`` returns once it is subscribed to its
    command topic (default ``command/<device>``). `values` are its resources and their initial values (JSON values);
    `pushes` what it pushes every `period` seconds (None: only when `push_now` is called). Counters and state are
    plain attributes.
    """

    def __init__(
        self,
        device: str,
        *,
        port: int,
        host: str = LOOPBACK,
        values: Mapping[str, Any] | None = None,
        pushes: Iterable[Push] = (),
        period: float | None = 0.1,
        command_topic: str | None = None,
        response_topic: str = DEFAULT_RESPONSE_TOPIC,
        incoming_topic: str = DEFAULT_INCOMING_TOPIC,
        qos: Literal[0, 1] = 0,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if period is not None and period <= 0:
            raise ValueError("period must be positive, or None for pushes on demand only")
        self.device = device
        self.values: dict[str, Any] = dict(DEFAULT_VALUES if values is None else values)
        self.pushes = tuple(pushes)
        unknown = {name for push in self.pushes for name in push.names} - self.values.keys()
        if unknown:
            raise ValueError(f"pushes name resources the device does not have: {sorted(unknown)}")
        self.period = period
        self.command_topic = command_topic or f"command/{device}"
        self.response_topic = response_topic
        self.incoming_topic = incoming_topic
        self.qos: Literal[0, 1] = qos
        #: No answers and no pushes while set; requests are still counted.
        self.silent = False
        #: Resources whose requests get no answer (counted all the same).
        self.unanswered: set[str] = set()
        #: Requests received, by method ("get", "set", or "other" for topics it does not understand).
        self.requests: Counter[str] = Counter()
        #: Messages pushed (including `send` and `publish`).
        self.pushed = 0
        #: Push periods elapsed: how often the pushed numeric values have changed.
        self.tick = 0
        #: True while subscribed to the command topic on a live connection.
        self.subscribed = False
        self._client = MqttClient(
            MqttSettings(
                host=host,
                port=port,
                client_id=f"sim-{device}-{secrets.token_hex(4)}",
                qos=self.qos,
                username=username,
                password=password,
                backoff=Backoff(initial=0.05, cap=0.5),
                mqtt5=False,  # as most devices
            )
        )
        self._client.paho.on_message = self._on_message
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        return self._client.connected

    async def __aenter__(self) -> Self:
        self._tasks.append(asyncio.create_task(self._client.run(self._serve), name=f"mqtt sim {self.device}"))
        try:
            async with asyncio.timeout(_READY_TIMEOUT):
                await self._ready.wait()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        if self.period is not None:  # from now on: the first push is one period after the device is ready
            self._tasks.append(asyncio.create_task(self._tick(self.period), name=f"mqtt sim {self.device} pushes"))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await self._client.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- pushing ---------------------------------------------------------------------------------------

    def push_now(self) -> None:
        """Push every `Push` once, with the current values (unless silent)."""
        if self.silent:
            return
        for push in self.pushes:
            if push.bare:
                self.send(push.source, self.values[push.names[0]])
            else:
                self.send(push.source, {name: self.values[name] for name in push.names})

    def send(self, source: str, document: Any) -> None:
        """Push a JSON document for `source` of this device (whatever the resources are)."""
        self.publish(f"{self.incoming_topic}/{self.device}/{source}", json.dumps(document).encode())

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish any payload to any topic (dropped while not connected, as a device's would be)."""
        if self._client.paho.publish(topic, payload, self.qos).rc == mqtt.MQTT_ERR_SUCCESS:
            self.pushed += 1

    async def _tick(self, period: float) -> None:
        changing = [name for push in self.pushes for name in push.names]
        loop = asyncio.get_running_loop()
        next_push = loop.time()
        while True:
            next_push += period
            await asyncio.sleep(max(0.0, next_push - loop.time()))
            if self.silent:
                continue
            self.tick += 1
            for name in dict.fromkeys(changing):
                value = self.values[name]
                if type(value) is int or type(value) is float:
                    self.values[name] = value + (1 if type(value) is int else 0.5)
            self.push_now()

    # -- answering -------------------------------------------------------------------------------------

    async def _serve(self, lost: asyncio.Future[None]) -> None:
        await self._client.subscribe([f"{self.command_topic}/#"], self.qos)
        self.subscribed = True
        self._ready.set()
        try:
            await lost
        finally:
            self.subscribed = False

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.removeprefix(f"{self.command_topic}/").split("/")
        if len(parts) != 3 or parts[1] not in ("get", "set"):
            self.requests["other"] += 1
            return
        resource, method, request_id = parts
        self.requests[method] += 1
        if self.silent or resource in self.unanswered:
            return
        if method == "set":
            try:
                written = json.loads(message.payload)
            except ValueError:
                written = None
            if isinstance(written, dict) and resource in written and resource in self.values:
                self.values[resource] = written[resource]
        answer = {resource: self.values[resource]} if resource in self.values else {}
        client.publish(f"{self.response_topic}/{request_id}", json.dumps(answer).encode(), self.qos)


def _value(text: str) -> tuple[str, Any]:
    """``name=JSON`` -> (name, value); text that is not JSON is a string."""
    name, _, raw = text.partition("=")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def _push(text: str) -> Push:
    """``resource`` (a bare value) or ``source=r1,r2`` (a JSON object)."""
    source, _, resources = text.partition("=")
    return Push(source, tuple(resources.split(","))) if resources else Push(source, bare=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m yurt_iot.sim.mqtt",
        description="Simulate an EdgeX device-mqtt device on a broker; prints a line once subscribed, stops on "
        "SIGTERM/SIGINT.",
    )
    parser.add_argument("--broker-host", default=LOOPBACK, help="default %(default)s")
    parser.add_argument("--broker-port", type=int, required=True)
    parser.add_argument("--device", required=True, help="the device name (topic level of its pushes)")
    parser.add_argument("--command-topic", help="default command/<device>")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=0)
    parser.add_argument(
        "--value", type=_value, action="append", help="a resource and its initial JSON value, e.g. temperature=20.5"
    )
    parser.add_argument(
        "--push",
        type=_push,
        action="append",
        help="a resource pushed as a bare value (temperature), or a source pushed as a JSON object of resources "
        "(Climate=temperature,humidity); default: every numeric resource as a bare value and all as 'All'",
    )
    parser.add_argument("--period", type=float, default=1.0, help="seconds between pushes, 0 for none (default 1)")
    return parser.parse_args(argv)


async def _serve(simulator: MqttDeviceSimulator) -> None:
    async with simulator:
        print(f"{simulator.device}: answering on {simulator.command_topic}/#", flush=True)
        await until_signalled()
    requests = ", ".join(f"{n} {method}" for method, n in sorted(simulator.requests.items())) or "no requests"
    print(f"served {requests}, pushed {simulator.pushed} messages", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    values = dict(args.value) if args.value else dict(DEFAULT_VALUES)
    pushes = args.push or [
        *(Push(name, bare=True) for name, v in values.items() if type(v) in (int, float)),
        Push("All", tuple(values)),
    ]
    simulator = MqttDeviceSimulator(
        args.device,
        host=args.broker_host,
        port=args.broker_port,
        values=values,
        pushes=pushes,
        period=args.period or None,
        command_topic=args.command_topic,
        qos=args.qos,
    )
    asyncio.run(_serve(simulator))


if __name__ == "__main__":
    main()
