"""The SCPI driver passes yurt-iot's driver conformance kit against the package's simulator.

This is all a driver author writes to run the kit: a `Peer` around their simulator, and a `DriverConformance`
subclass that says which device to add and what it should read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from yurt_iot_driver_scpi.simulator import ScpiSimulator

from yurt_iot.runtime.sdk import DeviceBinding, ResourceBinding, Value
from yurt_iot.testing.conformance import DriverConformance, Misconfiguration, Peer, device, resource
from yurt_iot.testing.ports import stable_free_port

SETTINGS = {"MEAS:TEMP": "+2.150000E+01", "MEAS:CURR": "12", "SOUR:VOLT": "3.3", "OUTP": "0", "SYST:NAME": '"bench"'}


class ScpiPeer(Peer):
    def __init__(self) -> None:
        self.simulator = ScpiSimulator(SETTINGS, port=stable_free_port(), read_only={"MEAS:TEMP", "MEAS:CURR"})
        self.port = self.simulator.port

    async def start(self) -> None:
        await self.simulator.start()

    async def stop(self) -> None:
        await self.simulator.stop()

    async def hang(self) -> None:
        self.simulator.silent = True

    async def heal(self) -> None:
        self.simulator.silent = False

    def requests_received(self) -> int:
        return self.simulator.requests


RESOURCES = [
    resource("temperature", "Float64", "R", command="MEAS:TEMP"),
    resource("current", "Int32", "R", command="MEAS:CURR"),
    resource("voltage", "Float32", command="SOUR:VOLT"),
    resource("output", "Bool", command="OUTP"),
    resource("name", "String", command="SYST:NAME"),
]


class TestScpiDriverConformance(DriverConformance[ScpiPeer]):
    protocol = "scpi"

    def make_peer(self, request: pytest.FixtureRequest) -> ScpiPeer:
        return ScpiPeer()

    def properties(self, peer: ScpiPeer) -> dict[str, str]:
        return {"Address": "127.0.0.1", "Port": str(peer.port), "Timeout": str(self.timeout)}

    def device(self, peer: ScpiPeer) -> DeviceBinding:
        return device("psu", self.protocol, self.properties(peer), RESOURCES)

    def expected(self, peer: ScpiPeer) -> Mapping[str, Value]:
        return {"temperature": 21.5, "current": 12, "voltage": 3.3, "output": False, "name": "bench"}

    def writes(self, peer: ScpiPeer) -> Mapping[str, Value]:
        return {"voltage": 5.25, "output": True, "name": 'say "hi"'}

    def invalid_resource(self, peer: ScpiPeer) -> ResourceBinding:
        return resource("power", "Float64", "R", command="MEAS:POW")

    def misconfigurations(self, peer: ScpiPeer) -> Sequence[Misconfiguration]:
        def psu(properties: Mapping[str, str], *resources: ResourceBinding) -> DeviceBinding:
            return device("psu", self.protocol, properties, resources)

        good = self.properties(peer)
        return [
            Misconfiguration(psu(good, resource("x", "Float64")), "resource 'x': attribute 'command' = None"),
            Misconfiguration(psu(good, resource("b", "Binary", command="X")), "valueType Binary is not served"),
            Misconfiguration(psu({**good, "Port": "0"}, *RESOURCES), "protocol property scpi.Port = '0'"),
            Misconfiguration(psu({**good, "Timeout": "soon"}, *RESOURCES), "scpi.Timeout = 'soon'"),
        ]
