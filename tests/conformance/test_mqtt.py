"""The built-in MQTT driver passes the conformance kit: the peer is the session's Mosquitto and a device simulator.

A restart of the peer is a restart of the broker, which every MQTT device depends on; the simulator reconnects by
itself. Each check names its device and topics uniquely, since the broker is shared by the whole session.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Mapping, Sequence

import pytest

from yurt_iot.runtime.sdk import DeviceBinding, ResourceBinding, Value
from yurt_iot.sim.mqtt import MqttDeviceSimulator
from yurt_iot.testing.conformance import DriverConformance, Misconfiguration, Peer, device, resource
from yurt_iot.testing.mosquitto import Mosquitto

VALUES: Mapping[str, Value] = {"temperature": 20.5, "humidity": 50, "switch": False, "message": "hi"}


class MqttPeer(Peer):
    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.port = broker.port
        self.name = f"conformance-{secrets.token_hex(3)}"
        self.prefix = f"conformance/{self.name}"
        self.simulator = MqttDeviceSimulator(
            self.name, port=broker.port, values=VALUES, period=None,
            response_topic=f"{self.prefix}/response", incoming_topic=f"{self.prefix}/incoming",
        )  # fmt: skip
        self._entered = False
        self._pushes = itertools.count(1)

    async def start(self) -> None:
        if not self.broker.running:
            await asyncio.to_thread(self.broker.start)
        if not self._entered:
            await self.simulator.__aenter__()
            self._entered = True

    async def stop(self) -> None:
        await asyncio.to_thread(self.broker.stop)

    async def close(self) -> None:
        if self._entered:
            await self.simulator.__aexit__(None, None, None)
        if not self.broker.running:  # the broker is the session's: leave it running
            await asyncio.to_thread(self.broker.start)

    async def hang(self) -> None:
        self.simulator.silent = True

    async def heal(self) -> None:
        self.simulator.silent = False

    def requests_received(self) -> int:
        return self.simulator.requests.total()

    async def push(self) -> tuple[str, Mapping[str, Value]]:
        value = next(self._pushes) + 0.25
        self.simulator.send("temperature", value)
        return "temperature", {"temperature": value}


RESOURCES = [
    resource("temperature", "Float64", "R"),
    resource("humidity", "Int32", "R"),
    resource("switch", "Bool"),
    resource("message", "String"),
]


class TestMqttConformance(DriverConformance[MqttPeer]):
    protocol = "mqtt"

    def make_peer(self, request: pytest.FixtureRequest) -> MqttPeer:
        return MqttPeer(request.getfixturevalue("mosquitto"))

    def properties(self, peer: MqttPeer) -> dict[str, str]:
        return {
            "Broker": f"tcp://{peer.broker.host}:{peer.broker.port}", "CommandTopic": f"command/{peer.name}",
            "ResponseTopic": f"{peer.prefix}/response", "IncomingTopic": f"{peer.prefix}/incoming",
            "Timeout": str(self.timeout),
        }  # fmt: skip

    def device(self, peer: MqttPeer) -> DeviceBinding:
        return device(peer.name, self.protocol, self.properties(peer), RESOURCES)

    def expected(self, peer: MqttPeer) -> Mapping[str, Value]:
        return VALUES

    def writes(self, peer: MqttPeer) -> Mapping[str, Value]:
        return {"switch": True, "message": "written"}

    def invalid_resource(self, peer: MqttPeer) -> ResourceBinding:
        return resource("pressure", "Uint16", "R")  # the device answers {} for a resource it does not have

    def misconfigurations(self, peer: MqttPeer) -> Sequence[Misconfiguration]:
        not_a_topic_level = resource("temp/inside", "Float64")
        return [
            Misconfiguration(device(peer.name, self.protocol, self.properties(peer), [not_a_topic_level]),
                             "resource 'temp/inside'"),
            Misconfiguration(device(peer.name, self.protocol, {**self.properties(peer), "QoS": "2"}, RESOURCES),
                             "mqtt.QoS"),
        ]
