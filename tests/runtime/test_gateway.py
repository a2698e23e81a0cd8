"""The device runtime end to end against the Modbus simulator: values, coalescing, outages and faults."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from yurt_iot.api.iot import AutoEvent, Device, DeviceProfile
from yurt_iot.runtime.gateway import Gateway
from yurt_iot.sim.modbus import Fault, FaultMode, ModbusSimulator
from yurt_iot.testing.waiting import async_test, async_wait_for


class Events:
    """The sink of a gateway under test: every event it produced, decoded."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, topic: str, payload: bytes) -> bool:
        self.items.append((topic, json.loads(payload)))
        return True

    def of(self, device: str) -> list[dict[str, Any]]:
        return [event for _, event in self.items if event["deviceName"] == device]


def profile(name: str, resources: list[dict[str, Any]], commands: list[dict[str, Any]] | None = None) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {"metadata": {"name": name}, "spec": {"deviceResources": resources, "deviceCommands": commands or []}}
    )


def resource(
    name: str, value_type: str, table: str, address: int | str, rw: str = "RW", **extra: Any
) -> dict[str, Any]:
    properties = {"valueType": value_type, "readWrite": rw}
    properties.update({k: v for k, v in extra.items() if k in ("scale", "offset", "minimum", "maximum", "units")})
    attributes = {"primaryTable": table, "startingAddress": address}
    attributes.update({k: v for k, v in extra.items() if k not in properties})
    return {"name": name, "description": name, "isHidden": False, "properties": properties, "attributes": attributes}


def command(name: str, resources: list[str]) -> dict[str, Any]:
    operations = [{"deviceResource": r, "defaultValue": ""} for r in resources]
    return {"name": name, "isHidden": False, "readWrite": "R", "resourceOperations": operations}


def device(name: str, prof: str, sim: ModbusSimulator, unit: int = 1, events: list[tuple[str, str]] = ()) -> Device:  # type: ignore[assignment]
    return Device.model_validate({
        "metadata": {"name": name},
        "spec": {
            "serviceName": "device-modbus", "profileName": prof, "notify": False,
            "protocols": {"modbus-tcp": {"Address": sim.host, "Port": str(sim.port), "UnitID": str(unit),
                                         "Timeout": "300ms"}},
            "autoEvents": [{"sourceName": source, "interval": interval} for source, interval in events],
        },
    })  # fmt: skip


H, C = "HOLDING_REGISTERS", "COILS"
ALL_TYPES = [
    resource("i8", "Int8", H, 0, rawType="INT16"),
    resource("u8", "Uint8", H, 1, rawType="UINT16"),
    resource("i16", "Int16", H, 2),
    resource("temp", "Float32", H, 3, rawType="INT16", scale="0.1", minimum="-50", maximum="150", units="degC"),
    resource("u16", "Uint16", H, 4),
    resource("i32", "Int32", H, 5, isWordSwap=True),
    resource("u32", "Uint32", H, 7, isByteSwap=True),
    resource("i64", "Int64", H, 9, isByteSwap=True, isWordSwap=True),
    resource("u64", "Uint64", H, 13, isWordSwap=True),
    resource("f32", "Float32", H, 17, isByteSwap=True, isWordSwap=True),
    resource("f64", "Float64", H, 19, isWordSwap=True, offset="10"),
    resource("coil", "Bool", C, 0),
    resource("bit", "Bool", H, "30.3"),
    resource("text", "String", H, 40, stringRegisterSize=4),
]
WRITTEN = {
    "i8": "-5", "u8": "250", "i16": "-300", "temp": "21.5", "u16": "65000", "i32": "-2000000000",
    "u32": "4000000000", "i64": "-9000000000000000000", "u64": "18000000000000000000", "f32": "3.14159",
    "f64": "110.25", "coil": "true", "bit": "true", "text": "hello",
}  # fmt: skip
# EdgeX's string forms of what is read back (floats in Go's %e form, Float32 at float32 precision)
READ_BACK = {**WRITTEN, "temp": "2.15e+01", "f32": "3.14159e+00", "f64": "1.1025e+02"}


@async_test(60)
async def test_every_value_type_is_written_and_read_with_scaling_and_swaps() -> None:
    events = Events()
    async with ModbusSimulator(table_size=100, update_period=None) as sim:
        gateway = Gateway(events)
        names = [r["name"] for r in ALL_TYPES]
        prof = profile("all-types", ALL_TYPES, [command("All", names)])
        runner = await gateway.apply(device("d1", "all-types", sim, events=[("All", "100ms")]), prof)
        try:
            await runner.write(WRITTEN)
            event = await async_wait_for(
                lambda: next((e for e in reversed(events.of("d1"))
                              if {r["resourceName"]: r["value"] for r in e["readings"]} == READ_BACK), None),
                within=3, what="an event with every written value",
            )  # fmt: skip
            temp = next(r for r in event["readings"] if r["resourceName"] == "temp")
            assert (temp["valueType"], temp["units"]) == ("Float32", "degC")
            assert events.items[-1][0] == "edgex/events/device/device-modbus/all-types/d1/All"

            # on the wire: swaps and scaling as the device holds them
            client = AsyncModbusTcpClient(sim.host, port=sim.port)
            await client.connect()
            registers = (await client.read_holding_registers(0, count=23, device_id=1)).registers
            client.close()
            assert registers[3] == 215  # 21.5 / scale 0.1
            assert registers[5:7] == [0x6C00, 0x88CA]  # -2000000000 = 0x88CA6C00, words swapped
            assert registers[7:9] == [0x6BEE, 0x0028]  # 4000000000 = 0xEE6B2800, bytes swapped in each word
            assert registers[19:23][::-1] == [0x4059, 0x1000, 0, 0]  # 100.25 as float64, words swapped
        finally:
            await gateway.close()


@async_test(60)
async def test_a_write_outside_the_limits_is_refused_before_reaching_the_device() -> None:
    async with ModbusSimulator(table_size=100, update_period=None) as sim:
        gateway = Gateway(Events())
        runner = await gateway.apply(device("d1", "all-types", sim), profile("all-types", ALL_TYPES))
        try:
            before = sim.stats.requests()
            for value, reason in (("151", "above the maximum 150"), ("-50.5", "below the minimum -50")):
                try:
                    await runner.write({"temp": value})
                except ValueError as error:
                    assert "temp" in str(error) and reason in str(error)
                else:
                    raise AssertionError(f"writing {value} was accepted")
            assert sim.stats.requests() == before
        finally:
            await gateway.close()


@async_test(60)
async def test_100_adjacent_registers_cost_one_request() -> None:
    block = [resource(f"r{i}", "Uint16", "INPUT_REGISTERS", i, rw="R") for i in range(100)]
    async with ModbusSimulator(table_size=200) as sim:
        events = Events()
        gateway = Gateway(events)
        dev = device("d1", "block", sim, events=[("Block", "100ms")])
        await gateway.apply(dev, profile("block", block, [command("Block", [r["name"] for r in block])]))
        try:
            await async_wait_for(lambda: len(events.of("d1")) >= 5, within=5, what="5 polls")
            await gateway.remove("d1")
            polls = len(events.of("d1"))
            assert all(len(e["readings"]) == 100 for e in events.of("d1"))
            assert sim.stats.requests(unit=1, function_code=4) == polls
            assert sim.stats.registers_read(unit=1) == 100 * polls
        finally:
            await gateway.close()


@async_test(60)
async def test_a_restarted_device_server_comes_back_within_a_second_and_the_state_follows() -> None:
    states: list[str] = []
    events = Events()
    block = [resource("r0", "Uint16", "INPUT_REGISTERS", 0, rw="R")]
    async with ModbusSimulator(table_size=10) as sim:
        gateway = Gateway(events, on_state=lambda name, state, reason: states.append(state))
        await gateway.apply(device("d1", "p", sim, events=[("r0", "100ms")]), profile("p", block))
        try:
            await async_wait_for(lambda: states == ["UP"] and events.of("d1"), within=3, what="first reading")
            await sim.stop()
            await async_wait_for(lambda: states[-1:] == ["DOWN"], within=3, what="device DOWN")
            stopped_at = len(events.of("d1"))
            await asyncio.sleep(1.5)  # an outage longer than the reconnect backoff's cap
            await sim.start()
            returned = time.monotonic()
            await async_wait_for(lambda: len(events.of("d1")) > stopped_at, within=3, what="readings resume")
            assert time.monotonic() - returned < 1.0
            assert states == ["UP", "DOWN", "UP"]
            runner = gateway.runner("d1")
            assert runner.state == "UP" and runner.last_connected_ms is not None
            reconnects = gateway.metrics.registry.get_sample_value("yurt_iot_device_reconnects_total", {"device": "d1"})
            assert reconnects == 1
        finally:
            await gateway.close()


@async_test(60)
async def test_faults_are_counted_and_other_devices_carry_on() -> None:
    events = Events()
    pair = [resource("good", "Uint16", "INPUT_REGISTERS", 0, rw="R"),
            resource("bad", "Uint16", "INPUT_REGISTERS", 50, rw="R")]  # fmt: skip
    prof = profile("p", pair, [command("Both", ["good", "bad"])])
    async with (
        ModbusSimulator(units=(1, 2), table_size=100) as shared,
        ModbusSimulator(table_size=100) as slow,
        ModbusSimulator(table_size=100) as garbled,
    ):
        gateway = Gateway(events)
        metric = gateway.metrics.registry.get_sample_value
        for name, sim, unit in (("excepting", shared, 1), ("healthy", shared, 2), ("timing-out", slow, 1),
                                ("malformed", garbled, 1)):  # fmt: skip
            await gateway.apply(device(name, "p", sim, unit, events=[("Both", "100ms")]), prof)
        try:
            shared.faults.append(Fault(FaultMode.EXCEPTION, units={1}, addresses=range(50, 51)))
            slow.faults.append(Fault(FaultMode.DELAY, delay=1.0))
            garbled.faults.append(Fault(FaultMode.MALFORMED))
            start = len(events.of("healthy"))

            def errors(device: str, kind: str) -> float:
                return metric("yurt_iot_poll_errors_total", {"device": device, "kind": kind}) or 0

            await async_wait_for(
                lambda: errors("excepting", "resource") >= 3 and errors("timing-out", "connection") >= 2
                and errors("malformed", "connection") >= 2 and len(events.of("healthy")) - start >= 10,
                within=10, what="every fault counted while the healthy device keeps polling",
            )  # fmt: skip
            # the excepting device still publishes the resource that worked; the healthy one everything
            assert {r["resourceName"] for r in events.of("excepting")[-1]["readings"]} == {"good"}
            assert all(len(e["readings"]) == 2 for e in events.of("healthy"))
            assert gateway.runner("healthy").state == "UP"
            assert gateway.runner("timing-out").state == "DOWN" and gateway.runner("malformed").state == "DOWN"

            slow.faults.clear()
            garbled.faults.clear()
            await async_wait_for(
                lambda: gateway.runner("timing-out").state == "UP" and gateway.runner("malformed").state == "UP",
                within=5, what="devices back UP after the faults healed",
            )  # fmt: skip
        finally:
            await gateway.close()


@async_test(60)
async def test_on_change_publishes_only_changed_values() -> None:
    events = Events()
    points = [resource("a", "Uint16", H, 0), resource("b", "Uint16", H, 1)]
    async with ModbusSimulator(table_size=10, update_period=None) as sim:
        gateway = Gateway(events)
        dev = device("d1", "p", sim)
        dev.spec.auto_events = [AutoEvent(source_name="Both", interval="50ms", on_change=True)]
        runner = await gateway.apply(dev, profile("p", points, [command("Both", ["a", "b"])]))
        try:
            await async_wait_for(lambda: events.of("d1"), within=3, what="the first event")
            polls = gateway.metrics.registry.get_sample_value
            before = polls("yurt_iot_device_requests_total", {"device": "d1"}) or 0
            await async_wait_for(
                lambda: (polls("yurt_iot_device_requests_total", {"device": "d1"}) or 0) >= before + 5,
                within=3, what="five more polls",
            )  # fmt: skip
            assert len(events.of("d1")) == 1  # nothing changed: nothing published
            await runner.write({"b": "7"})
            await async_wait_for(lambda: len(events.of("d1")) == 2, within=3, what="an event for the change")
            assert [(r["resourceName"], r["value"]) for r in events.of("d1")[1]["readings"]] == [("b", "7")]
        finally:
            await gateway.close()
