"""The built-in Modbus driver passes the conformance kit against the Modbus simulator (faults for the hang)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from yurt_iot.runtime.sdk import DeviceBinding, ResourceBinding, Value
from yurt_iot.sim.modbus import Fault, FaultMode, ModbusSimulator, discrete_input_value, input_register_value
from yurt_iot.testing.conformance import DriverConformance, Misconfiguration, Peer, device, resource

TABLE_SIZE = 300
UNIT = 1


class ModbusPeer(Peer):
    """The simulator, with input registers frozen so that reads are predictable."""

    def __init__(self) -> None:
        self.simulator = ModbusSimulator(units=[UNIT], update_period=None, table_size=TABLE_SIZE)
        self.port = self.simulator.port

    async def start(self) -> None:
        await self.simulator.start()

    async def stop(self) -> None:
        await self.simulator.stop()

    async def hang(self) -> None:
        self.simulator.faults.append(Fault(FaultMode.NO_RESPONSE))

    async def heal(self) -> None:
        self.simulator.faults.clear()

    def requests_received(self) -> int:
        return self.simulator.stats.requests()


RESOURCES = [
    resource("level", "Uint16", startingAddress=0, primaryTable="HOLDING_REGISTERS"),
    resource("total", "Int32", startingAddress=1, primaryTable="HOLDING_REGISTERS", isWordSwap=True),
    resource("ratio", "Float32", startingAddress=3, primaryTable="HOLDING_REGISTERS"),
    resource("label", "String", startingAddress=5, primaryTable="HOLDING_REGISTERS", stringRegisterSize=2),
    resource("pump", "Bool", startingAddress=4, primaryTable="COILS"),
    resource("door", "Bool", "R", startingAddress=3, primaryTable="DISCRETE_INPUTS"),
    resource("flow", "Uint16", "R", startingAddress=7, primaryTable="INPUT_REGISTERS"),
]


class TestModbusConformance(DriverConformance[ModbusPeer]):
    protocol = "modbus-tcp"

    def make_peer(self, request: pytest.FixtureRequest) -> ModbusPeer:
        return ModbusPeer()

    def device(self, peer: ModbusPeer) -> DeviceBinding:
        return device("plc", self.protocol, self.properties(peer), RESOURCES)

    def properties(self, peer: ModbusPeer, **extra: str) -> dict[str, str]:
        return {"Address": "127.0.0.1", "Port": str(peer.port), "UnitID": str(UNIT), "Timeout": str(self.timeout),
                **extra}  # fmt: skip

    def expected(self, peer: ModbusPeer) -> Mapping[str, Value]:
        return {"level": 0, "total": 0, "ratio": 0.0, "label": "", "pump": False,
                "door": discrete_input_value(UNIT, 3), "flow": input_register_value(UNIT, 7, 0)}  # fmt: skip

    def writes(self, peer: ModbusPeer) -> Mapping[str, Value]:
        return {"level": 0xBEEF, "total": -123456, "ratio": 2.5, "label": "ok", "pump": True}

    def invalid_resource(self, peer: ModbusPeer) -> ResourceBinding:
        return resource("beyond", "Uint16", "R", startingAddress=TABLE_SIZE + 100, primaryTable="INPUT_REGISTERS")

    def misconfigurations(self, peer: ModbusPeer) -> Sequence[Misconfiguration]:
        bad_address = resource("bad", "Uint16", startingAddress="0.1", primaryTable="HOLDING_REGISTERS")
        return [
            Misconfiguration(device("plc", self.protocol, self.properties(peer), [bad_address]), "'startingAddress'"),
            Misconfiguration(device("plc", self.protocol, self.properties(peer, UnitID="300"), RESOURCES), "UnitID"),
        ]
