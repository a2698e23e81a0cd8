"""The built-in OPC-UA driver passes the conformance kit against the OPC-UA simulator (in a thread of its own)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import pytest

from yurt_iot.runtime.sdk import DeviceBinding, ResourceBinding, Value
from yurt_iot.sim.opcua import OpcUaSimulator, SimulatorThread, numeric_node, string_node
from yurt_iot.testing.conformance import DriverConformance, Misconfiguration, Peer, device, resource

HANG = 3.0
"""Seconds the simulator holds each Read while hanging: well beyond the kit's timeout."""
TYPES = {"Boolean": "Bool", "Int16": "Int16", "UInt32": "Uint32", "Double": "Float64", "String": "String"}
PUSHED = numeric_node("Double")


class OpcUaPeer(Peer):
    def __init__(self) -> None:
        self.simulator = OpcUaSimulator(update_period=None)
        self.port = self.simulator.port
        self._thread = SimulatorThread(self.simulator)
        self._spawned = False
        self._pushes = itertools.count(1)

    async def start(self) -> None:
        if self._spawned:
            await self._thread.call(self.simulator.start())
        else:
            await self._thread.__aenter__()
            self._spawned = True

    async def stop(self) -> None:
        await self._thread.call(self.simulator.stop())

    async def close(self) -> None:
        if self._spawned:
            await self._thread.__aexit__(None, None, None)

    async def hang(self) -> None:
        self.simulator.read_delay = HANG

    async def heal(self) -> None:
        self.simulator.read_delay = 0.0

    def requests_received(self) -> int:
        return self.simulator.stats.read_requests

    async def push(self) -> tuple[str, Mapping[str, Value]]:
        value = next(self._pushes) * 1.5
        await self._thread.call(self.simulator.set_value(PUSHED, value))
        return "level", {"level": value}


RESOURCES = [
    *(resource(t.lower(), value_type, nodeId=string_node(t)) for t, value_type in TYPES.items()),
    resource("level", "Float64", "R", nodeId=PUSHED, subscribe=True),
]


class TestOpcUaConformance(DriverConformance[OpcUaPeer]):
    protocol = "opcua"

    def make_peer(self, request: pytest.FixtureRequest) -> OpcUaPeer:
        return OpcUaPeer()

    def properties(self, peer: OpcUaPeer) -> dict[str, str]:
        return {"Endpoint": peer.simulator.endpoint, "Timeout": str(self.timeout)}

    def device(self, peer: OpcUaPeer) -> DeviceBinding:
        return device("plc", self.protocol, self.properties(peer), RESOURCES)

    def expected(self, peer: OpcUaPeer) -> Mapping[str, Value]:
        values: dict[str, Value] = {t.lower(): peer.simulator.value(string_node(t)) for t in TYPES}
        return values | {"level": peer.simulator.value(PUSHED)}

    def writes(self, peer: OpcUaPeer) -> Mapping[str, Value]:
        return {"boolean": not peer.simulator.value(string_node("Boolean")), "int16": -1234, "uint32": 4_000_000_000,
                "double": -0.5, "string": "written"}  # fmt: skip

    def invalid_resource(self, peer: OpcUaPeer) -> ResourceBinding:
        return resource("missing", "Int32", "R", nodeId="ns=2;s=NoSuchNode")

    def misconfigurations(self, peer: OpcUaPeer) -> Sequence[Misconfiguration]:
        bad_node = resource("bad", "Int16", nodeId="ns=2;x=1")
        bad_timeout = {**self.properties(peer), "Timeout": "soon"}
        return [
            Misconfiguration(device("plc", self.protocol, self.properties(peer), [bad_node]), "'nodeId'"),
            Misconfiguration(device("plc", self.protocol, bad_timeout, RESOURCES), "opcua.Timeout"),
        ]
