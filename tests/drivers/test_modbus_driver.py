"""The Modbus driver against the simulator over real sockets (and a pty pair for RTU over serial).

The driver is used only through the SDK (`add_device`, `read`, `write`, `close`), with bindings built from a
DeviceProfile as the runtime builds them. The simulator's request counters show how many requests a read took,
and /proc/net/tcp how many connections the driver holds. Every wait is for a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice
from yurt_iot_drivers.modbus import ModbusDriver

from yurt_iot.api.iot import Device, DeviceProfile
from yurt_iot.runtime.sdk import (
    ConfigurationError,
    ConnectionLost,
    DeviceBinding,
    ReadResult,
    ResourceBinding,
    ResourceFailure,
)
from yurt_iot.sim.modbus import Fault, FaultMode, ModbusSimulator, discrete_input_value, input_register_value
from yurt_iot.testing.waiting import async_test, async_wait_for

TEST_TIMEOUT = 30.0
DEADLINE = 10.0
SMALL = 300
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def connections_to(port: int) -> int:
    """Established TCP connections to `port` on this machine, counted at the client end."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        remote, state = line.split()[2:4]
        if state == "01" and int(remote.rpartition(":")[2], 16) == port:
            count += 1
    return count


def resource(
    name: str, value_type: str, table: str, address: int | str, read_write: str = "RW", **attributes: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"{value_type} at {table} {address}",
        "isHidden": False,
        "properties": {"valueType": value_type, "readWrite": read_write},
        "attributes": {"primaryTable": table, "startingAddress": address, **attributes},
    }


def bindings(resources: list[dict[str, Any]]) -> dict[str, ResourceBinding]:
    """The resources of a DeviceProfile, bound as the runtime binds them."""
    profile = DeviceProfile.model_validate(
        {
            "apiVersion": "iot.openyurt.io/v1alpha1",
            "kind": "DeviceProfile",
            "metadata": {"name": "test"},
            "spec": {"deviceResources": resources},
        }
    )
    return {r.name: ResourceBinding.from_resource(r) for r in profile.spec.device_resources or []}


def tcp(sim: ModbusSimulator, unit: int = 1, **properties: str) -> dict[str, str]:
    return {"Address": sim.host, "Port": str(sim.port), "UnitID": str(unit), **properties}


@contextlib.asynccontextmanager
async def modbus_driver(**options: Any) -> AsyncIterator[ModbusDriver]:
    driver = ModbusDriver(**options)
    try:
        yield driver
    finally:
        await driver.close()


def values_of(result: ReadResult) -> dict[str, Any]:
    assert not result.errors, result.errors
    return result.values


EVERY_TABLE = [
    resource("u16", "Uint16", "HOLDING_REGISTERS", 0),
    resource("i32", "Int32", "HOLDING_REGISTERS", 1, isWordSwap=True),
    resource("u64", "Uint64", "holding_registers", 3, isByteSwap="true", isWordSwap="true"),
    resource("f64", "Float64", "HOLDING_REGISTERS", 7),
    resource("temp", "Float32", "HOLDING_REGISTERS", 11, rawType="INT16"),
    resource("text", "String", "HOLDING_REGISTERS", 12, stringRegisterSize=3),
    resource("alarm", "Bool", "HOLDING_REGISTERS", "15.3"),
    *(resource(f"reg{a}", "Uint16", "HOLDING_REGISTERS", a, "R") for a in range(16)),  # the registers as sent
    resource("coil", "Bool", "COILS", 5),
    resource("di", "Bool", "DISCRETES_INPUT", 6, "R"),  # EdgeX's legacy spelling
    resource("di2", "Bool", "DISCRETE_INPUTS", 7, "R"),
    resource("ir", "Uint16", "INPUT_REGISTERS", 2, "R"),
    resource("ir_temp", "Float32", "INPUT_REGISTERS", 3, "R", rawType="INT16"),
]


@async_test(TEST_TIMEOUT)
async def test_reads_and_writes_every_table() -> None:
    async with ModbusSimulator(units=[1], update_period=None, table_size=SMALL) as sim, modbus_driver() as driver:
        await driver.add_device(DeviceBinding("plc", "modbus-tcp", tcp(sim), bindings(EVERY_TABLE)))
        await driver.write(
            "plc",
            {"u16": 0xBEEF, "i32": 0x01020304, "u64": 0x0102030405060708, "f64": -2.25, "temp": 215.0,
             "text": "ok!", "alarm": True, "coil": True},
        )  # fmt: skip
        result = await driver.read("plc", [r["name"] for r in EVERY_TABLE])
        assert result.requests == 4  # one per table: 29 resources
        values = values_of(result)

        assert {name: values[name] for name in ("u16", "i32", "u64", "f64", "temp", "text", "alarm", "coil")} == {
            "u16": 0xBEEF, "i32": 0x01020304, "u64": 0x0102030405060708, "f64": -2.25, "temp": 215.0, "text": "ok!",
            "alarm": True, "coil": True,
        }  # fmt: skip
        wire = [values[f"reg{a}"] for a in range(16)]
        assert wire[1:3] == [0x0304, 0x0102]  # word swap: low word first
        assert wire[3:7] == [0x0807, 0x0605, 0x0403, 0x0201]  # both swaps on 64 bits: every byte reversed
        assert wire[7:11] == [0xC002, 0, 0, 0]
        assert wire[11:15] == [215, 0x6F6B, 0x2100, 0]
        assert wire[15] == 0b1000  # bit 3; the other bits were 0 and stay 0
        assert (values["di"], values["di2"]) == (discrete_input_value(1, 6), discrete_input_value(1, 7))
        assert (values["ir"], values["ir_temp"]) == (
            input_register_value(1, 2, 0),
            float(input_register_value(1, 3, 0)),
        )


@async_test(TEST_TIMEOUT)
async def test_a_register_bit_is_written_by_read_modify_write() -> None:
    profile = bindings(
        [resource("word", "Uint16", "HOLDING_REGISTERS", 4), resource("bit9", "Bool", "HOLDING_REGISTERS", "4.9")]
    )
    async with ModbusSimulator(units=[1], update_period=None, table_size=SMALL) as sim, modbus_driver() as driver:
        await driver.add_device(DeviceBinding("plc", "modbus-tcp", tcp(sim), profile))
        await driver.write("plc", {"word": 0x00FF})
        sim.stats.reset()
        await driver.write("plc", {"bit9": True})
        assert (sim.stats.requests(function_code=3), sim.stats.requests(function_code=6)) == (1, 1)
        assert values_of(await driver.read("plc", ["word", "bit9"])) == {"word": 0x02FF, "bit9": True}
        await driver.write("plc", {"bit9": False})
        assert values_of(await driver.read("plc", ["word"])) == {"word": 0x00FF}


@async_test(TEST_TIMEOUT)
async def test_writes_refused_before_anything_is_sent() -> None:
    async with ModbusSimulator(units=[1], update_period=None, table_size=SMALL) as sim, modbus_driver() as driver:
        await driver.add_device(DeviceBinding("plc", "modbus-tcp", tcp(sim), bindings(EVERY_TABLE)))
        for values, reason in [
            ({"u16": 1, "ir": 5}, "INPUT_REGISTERS is read-only"),
            ({"u16": 1, "di": True}, "DISCRETE_INPUTS is read-only"),
            ({"u16": 1, "temp": 40000.0}, "does not fit INT16"),
            ({"u16": 1, "text": "too long"}, "its 3 registers hold 6"),
            ({"u16": 1, "coil": 1}, "is not a Bool"),
            ({"u16": 1, "nothing": 1}, "has no resource 'nothing'"),
        ]:
            with pytest.raises(ResourceFailure, match=reason):
                await driver.write("plc", values)
        assert sim.stats.requests() == 0


@async_test(TEST_TIMEOUT)
async def test_one_hundred_adjacent_registers_take_one_request() -> None:
    profile = bindings([resource(f"r{a}", "Uint16", "INPUT_REGISTERS", 1000 + a, "R") for a in range(100)])
    async with ModbusSimulator(units=[7], update_period=None) as sim, modbus_driver() as driver:
        await driver.add_device(DeviceBinding("meter", "modbus-tcp", tcp(sim, 7), profile))
        for _ in range(3):  # the plan is cached: every poll is the same one request
            result = await driver.read("meter", list(profile))
            assert values_of(result) == {f"r{a}": input_register_value(7, 1000 + a, 0) for a in range(100)}
            assert result.requests == 1
        assert sim.stats.requests(unit=7, function_code=4) == 3
        assert sim.stats.registers_read(unit=7) == 300


@async_test(TEST_TIMEOUT)
async def test_units_behind_one_endpoint_share_one_connection() -> None:
    profile = bindings([resource("u16", "Uint16", "HOLDING_REGISTERS", 0)])
    async with ModbusSimulator(units=[1, 2], update_period=None, table_size=SMALL) as sim, modbus_driver() as driver:
        await driver.add_device(DeviceBinding("a", "modbus-tcp", tcp(sim, 1), profile))
        await driver.add_device(DeviceBinding("b", "modbus-tcp", tcp(sim, 2, Timeout="2s"), profile))
        assert connections_to(sim.port) == 0  # connected lazily
        await driver.write("a", {"u16": 1})
        await driver.write("b", {"u16": 2})
        reads = await asyncio.gather(*(driver.read(name, ["u16"]) for name in ["a", "b"] * 10))
        assert [values_of(r)["u16"] for r in reads] == [1, 2] * 10
        assert sim.stats.requests(unit=1) == sim.stats.requests(unit=2) == 11
        assert connections_to(sim.port) == 1

        await driver.remove_device("a")
        assert connections_to(sim.port) == 1  # b still uses it
        await driver.remove_device("b")

        async def closed() -> bool:
            return connections_to(sim.port) == 0

        await async_wait_for(closed, within=DEADLINE, what="the last device's removal to close the connection")


@async_test(TEST_TIMEOUT)
async def test_an_exception_response_fails_only_the_resources_of_its_request() -> None:
    profile = bindings([
        resource("low", "Uint16", "HOLDING_REGISTERS", 0), resource("low2", "Uint16", "HOLDING_REGISTERS", 1),
        resource("high", "Uint16", "HOLDING_REGISTERS", 100), resource("high2", "Int32", "HOLDING_REGISTERS", 101),
        resource("coil", "Bool", "COILS", 100),
    ])  # fmt: skip
    async with ModbusSimulator(units=[1], update_period=None, table_size=SMALL) as sim, modbus_driver() as driver:
        await driver.add_device(DeviceBinding("plc", "modbus-tcp", tcp(sim), profile))
        await driver.write("plc", {"low": 11, "low2": 12})
        sim.faults.append(
            Fault(FaultMode.EXCEPTION, function_codes={3, 6}, addresses=range(100, 101), exception_code=2)
        )

        result = await driver.read("plc", list(profile))
        assert result.requests == 3
        assert result.values == {"low": 11, "low2": 12, "coil": False}
        assert set(result.errors) == {"high", "high2"}
        assert all(isinstance(e, ResourceFailure) for e in result.errors.values())
        assert "Modbus exception 2 (illegal data address)" in str(result.errors["high"])
        assert "HOLDING_REGISTERS 100-102" in str(result.errors["high"])

        with pytest.raises(ResourceFailure, match="writing 'high' at HOLDING_REGISTERS 100: Modbus exception 2"):
            await driver.write("plc", {"high": 5})
        assert values_of(await driver.read("plc", ["low"])) == {"low": 11}  # the connection stayed up
        assert connections_to(sim.port) == 1


@async_test(TEST_TIMEOUT)
async def test_a_timeout_is_connection_lost_and_the_next_read_after_healing_succeeds() -> None:
    profile = bindings([resource("u16", "Uint16", "HOLDING_REGISTERS", 0)])
    async with ModbusSimulator(units=[1], update_period=None, table_size=SMALL) as sim, modbus_driver() as driver:
        await driver.add_device(DeviceBinding("plc", "modbus-tcp", tcp(sim, Timeout="300ms"), profile))
        await driver.write("plc", {"u16": 3})
        sim.faults.append(Fault(FaultMode.DELAY, delay=5.0))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ConnectionLost, match=r"timed out after 0\.3 s waiting for the reply"):
            await driver.read("plc", ["u16"])
        assert loop.time() - started >= 0.3
        sim.faults.clear()
        assert values_of(await driver.read("plc", ["u16"])) == {"u16": 3}


@pytest.mark.parametrize("mode", [FaultMode.MALFORMED, FaultMode.DISCONNECT])
@async_test(TEST_TIMEOUT)
async def test_a_broken_reply_is_connection_lost_at_once_then_it_recovers(mode: FaultMode) -> None:
    profile = bindings([resource("block", "Uint64", "HOLDING_REGISTERS", 0)])
    async with ModbusSimulator(units=[1], update_period=None, table_size=SMALL) as sim, modbus_driver() as driver:
        await driver.add_device(DeviceBinding("plc", "modbus-tcp", tcp(sim, Timeout="60"), profile))
        await driver.write("plc", {"block": 42})
        sim.faults.append(Fault(mode))
        with pytest.raises(ConnectionLost, match="the connection was closed"):
            # the connection's end, not the 60 s timeout, ends the wait
            await asyncio.wait_for(driver.read("plc", ["block"]), DEADLINE)
        sim.faults.clear()
        assert values_of(await driver.read("plc", ["block"])) == {"block": 42}


@async_test(TEST_TIMEOUT)
async def test_rtu_over_tcp() -> None:
    profile = bindings(
        [
            resource("i32", "Int32", "HOLDING_REGISTERS", 0),
            resource("ir", "Uint16", "INPUT_REGISTERS", 9, "R"),
            resource("coil", "Bool", "COILS", 2),
        ]
    )
    async with (
        ModbusSimulator(units=[5, 6], framer=FramerType.RTU, update_period=None, table_size=SMALL) as sim,
        modbus_driver() as driver,
    ):
        for unit in (5, 6):
            await driver.add_device(DeviceBinding(f"d{unit}", "modbus-tcp", tcp(sim, unit, Framer="rtu"), profile))
            await driver.write(f"d{unit}", {"i32": -unit, "coil": True})
        for unit in (5, 6):
            values = values_of(await driver.read(f"d{unit}", list(profile)))
            assert values == {"i32": -unit, "ir": input_register_value(unit, 9, 0), "coil": True}
        assert connections_to(sim.port) == 1

        # no length field in RTU: a frame cut short is a reply that never ends, i.e. a timeout
        await driver.add_device(DeviceBinding("d5", "modbus-tcp", tcp(sim, 5, Framer="RTU", Timeout="0.3"), profile))
        sim.faults.append(Fault(FaultMode.MALFORMED))
        with pytest.raises(ConnectionLost, match=r"timed out after 0\.3 s"):
            await driver.read("d5", ["i32"])
        sim.faults.clear()
        assert values_of(await driver.read("d5", ["i32"])) == {"i32": -5}


@async_test(TEST_TIMEOUT)
async def test_a_stopped_device_is_connection_lost_and_reads_resume_within_a_second_of_its_restart() -> None:
    profile = bindings([resource("u16", "Uint16", "HOLDING_REGISTERS", 0)])
    async with ModbusSimulator(units=[1], update_period=None, table_size=SMALL) as sim, modbus_driver() as driver:
        await driver.add_device(DeviceBinding("plc", "modbus-tcp", tcp(sim), profile))
        await driver.write("plc", {"u16": 77})
        await sim.stop()
        for _ in range(20):  # refused, then backing off: every read fails, none hangs
            with pytest.raises(ConnectionLost):
                await driver.read("plc", ["u16"])
        await sim.start()
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def read_succeeds() -> bool:
            try:
                return values_of(await driver.read("plc", ["u16"])) == {"u16": 77}
            except ConnectionLost:
                return False

        await async_wait_for(read_succeeds, within=DEADLINE, what="a read after the restart")
        assert loop.time() - started < 1.0


@async_test(TEST_TIMEOUT)
async def test_a_hundred_devices_behind_a_dead_endpoint_do_not_hammer_it() -> None:
    accepted = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    profile = bindings([resource("u16", "Uint16", "HOLDING_REGISTERS", 0)])
    try:
        async with modbus_driver() as driver:
            for unit in range(1, 101):
                properties = {"Address": "127.0.0.1", "Port": str(port), "UnitID": str(unit)}
                await driver.add_device(DeviceBinding(f"d{unit}", "modbus-tcp", properties, profile))
            results = await asyncio.gather(
                *(driver.read(f"d{u}", ["u16"]) for u in range(1, 101)), return_exceptions=True
            )
            assert all(isinstance(r, ConnectionLost) for r in results), results
            assert accepted == 1
            assert sum("next connection attempt" in str(r) for r in results) == 99
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("framer", [FramerType.SOCKET, FramerType.RTU])
@async_test(TEST_TIMEOUT)
async def test_a_read_cancelled_in_flight_leaves_no_stale_reply_behind(framer: FramerType) -> None:
    profile = bindings(
        [resource("a", "Uint16", "HOLDING_REGISTERS", 0), resource("b", "Uint16", "HOLDING_REGISTERS", 50)]
    )
    properties = {"Framer": framer.value, "Timeout": "5s"}
    async with (
        ModbusSimulator(units=[1], framer=framer, update_period=None, table_size=SMALL) as sim,
        modbus_driver() as driver,
    ):
        await driver.add_device(DeviceBinding("plc", "modbus-tcp", tcp(sim, **properties), profile))
        await driver.write("plc", {"a": 1, "b": 2})
        sim.faults.append(Fault(FaultMode.DELAY, delay=0.5))
        sent = sim.stats.requests(function_code=3)
        read = asyncio.create_task(driver.read("plc", ["a"]))

        async def in_flight() -> bool:
            return sim.stats.requests(function_code=3) > sent

        await async_wait_for(in_flight, within=DEADLINE, what="the read to reach the device")
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read

        async def dropped() -> bool:
            return connections_to(sim.port) == 0

        await async_wait_for(dropped, within=DEADLINE, what="the connection with a reply outstanding to be closed")
        sim.faults.clear()
        # the late reply to "a" (same function code and size) would be taken for these on the old connection
        assert values_of(await driver.read("plc", ["b"])) == {"b": 2}
        assert values_of(await driver.read("plc", ["a"])) == {"a": 1}


@async_test(TEST_TIMEOUT)
async def test_the_example_thermostat_reads_from_the_simulator() -> None:
    documents = list(yaml.safe_load_all((EXAMPLES / "iot" / "modbus-thermostat.yaml").read_text()))
    profile = DeviceProfile.model_validate(next(d for d in documents if d["kind"] == "DeviceProfile"))
    device = Device.model_validate(next(d for d in documents if d["kind"] == "Device"))
    resources = {r.name: ResourceBinding.from_resource(r) for r in profile.spec.device_resources or []}
    async with ModbusSimulator(units=[1], update_period=None, table_size=SMALL) as sim, modbus_driver() as driver:
        properties = {**(device.spec.protocols or {})["modbus-tcp"], "Port": str(sim.port)}
        await driver.add_device(DeviceBinding("thermostat-1", "modbus-tcp", properties, resources))
        await driver.write("thermostat-1", {"SetPoint": resources["SetPoint"].spec.to_raw("21.5")})
        result = await driver.read("thermostat-1", list(resources))
        assert resources["SetPoint"].spec.to_value(values_of(result)["SetPoint"]) == 21.5
        assert result.requests == 3  # coils, holding registers 0-3, input registers 0-1


# --- RTU over a serial line ----------------------------------------------------------------------------------


def serial_unit(unit: int) -> SimDevice:
    return SimDevice(
        unit,
        simdata=(
            [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
            [SimData(0, values=[a % 2 == 1 for a in range(16)], datatype=DataType.BITS)],
            [SimData(0, values=[0] * 16, datatype=DataType.REGISTERS)],
            [SimData(0, values=[100 * unit + a for a in range(16)], datatype=DataType.REGISTERS)],
        ),
    )


@pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat to link two ptys (apt-get install socat)")
@pytest.mark.skipif(importlib.util.find_spec("serial") is None, reason="needs pyserial (pymodbus[serial])")
@async_test(TEST_TIMEOUT)
async def test_rtu_over_a_serial_line(tmp_path: Path) -> None:
    """Two units on one line, behind a pty pair: pymodbus's serial server at one end, the driver at the other."""
    server_end, driver_end = tmp_path / "device", tmp_path / "gateway"
    socat = await asyncio.create_subprocess_exec(
        "socat", f"pty,raw,echo=0,link={server_end}", f"pty,raw,echo=0,link={driver_end}",
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    profile = bindings(
        [
            resource("word", "Int32", "HOLDING_REGISTERS", 2, isWordSwap=True),
            resource("ir", "Uint16", "INPUT_REGISTERS", 4, "R"),
            resource("coil", "Bool", "COILS", 1),
            resource("di", "Bool", "DISCRETE_INPUTS", 3, "R"),
            resource("beyond", "Uint16", "HOLDING_REGISTERS", 40),
        ]
    )
    line = {"Address": str(driver_end), "BaudRate": "19200", "DataBits": "8", "StopBits": "1", "Parity": "N"}
    try:

        async def linked() -> bool:
            return server_end.exists() and driver_end.exists()

        await async_wait_for(linked, within=DEADLINE, what="socat to create the pty pair")
        server = ModbusSerialServer([serial_unit(3), serial_unit(4)], port=str(server_end), baudrate=19200)
        await server.serve_forever(background=True)
        try:
            async with modbus_driver() as driver:
                for unit in (3, 4):
                    properties = {**line, "UnitID": str(unit)}
                    await driver.add_device(DeviceBinding(f"s{unit}", "modbus-rtu", properties, profile))
                    await driver.write(f"s{unit}", {"word": -unit, "coil": True})
                for unit in (3, 4):
                    result = await driver.read(f"s{unit}", list(profile))
                    assert result.values == {"word": -unit, "ir": 100 * unit + 4, "coil": True, "di": True}
                    assert set(result.errors) == {"beyond"}  # past the device's table: exception 2
                other_speed = {**line, "UnitID": "5", "BaudRate": "9600"}
                with pytest.raises(ConfigurationError, match="every device on a serial port must use the same"):
                    await driver.add_device(DeviceBinding("s5", "modbus-rtu", other_speed, profile))
        finally:
            await server.shutdown()
    finally:
        socat.terminate()
        await socat.wait()


@pytest.mark.skipif(importlib.util.find_spec("serial") is None, reason="needs pyserial (pymodbus[serial])")
@async_test(TEST_TIMEOUT)
async def test_a_missing_serial_port_is_connection_lost(tmp_path: Path) -> None:
    properties = {"Address": str(tmp_path / "ttyUSB9"), "UnitID": "1", "BaudRate": "9600", "DataBits": "8",
                  "StopBits": "1", "Parity": "N"}  # fmt: skip
    async with modbus_driver() as driver:
        await driver.add_device(DeviceBinding("s", "modbus-rtu", properties, bindings(EVERY_TABLE[:1])))
        with pytest.raises(ConnectionLost, match=r"ttyUSB9 \(9600 8N1\): cannot connect"):
            await driver.read("s", ["u16"])


# --- Configuration --------------------------------------------------------------------------------------------

TCP_OK = {"Address": "127.0.0.1", "Port": "1502", "UnitID": "1"}
RTU_OK = {
    "Address": "/dev/ttyUSB0",
    "UnitID": "1",
    "BaudRate": "19200",
    "DataBits": "8",
    "StopBits": "1",
    "Parity": "N",
}


@pytest.mark.parametrize(
    ("protocol", "properties", "message"),
    [
        ("modbus-tcp", {**TCP_OK, "Address": ""}, "modbus-tcp.Address = '' is required"),
        ("modbus-tcp", {"Address": "h", "UnitID": "1"}, "modbus-tcp.Port is required"),
        ("modbus-tcp", {**TCP_OK, "Port": "70000"}, "modbus-tcp.Port = '70000' is not an integer 1-65535"),
        ("modbus-tcp", {"Address": "h", "Port": "502"}, "modbus-tcp.UnitID is required"),
        ("modbus-tcp", {**TCP_OK, "UnitID": "256"}, "modbus-tcp.UnitID = '256' is not an integer 0-255"),
        ("modbus-tcp", {**TCP_OK, "UnitID": "one"}, "UnitID = 'one' is not an integer"),
        ("modbus-tcp", {**TCP_OK, "Timeout": "fast"}, "Timeout = 'fast' is not a positive number of seconds"),
        ("modbus-tcp", {**TCP_OK, "Timeout": "0"}, "Timeout = '0' is not a positive"),
        ("modbus-tcp", {**TCP_OK, "Framer": "ascii"}, "Framer = 'ascii' is none of socket, rtu"),
        ("modbus-rtu", {**RTU_OK, "BaudRate": ""}, "modbus-rtu.BaudRate = '' is required"),
        ("modbus-rtu", {**RTU_OK, "DataBits": "9"}, "DataBits = '9' is not an integer 5-8"),
        ("modbus-rtu", {**RTU_OK, "StopBits": "1.5"}, "StopBits = '1.5' is not an integer 1-2"),
        ("modbus-rtu", {**RTU_OK, "Parity": "X"}, "Parity = 'X' is none of N, O, E"),
        ("modbus-ascii", TCP_OK, "protocol 'modbus-ascii' is none of"),
    ],
)
@async_test(TEST_TIMEOUT)
async def test_bad_protocol_properties_name_the_device_and_property(
    protocol: str, properties: dict[str, str], message: str
) -> None:
    async with modbus_driver() as driver:
        with pytest.raises(ConfigurationError, match=r"^device 'dev': ") as error:
            await driver.add_device(DeviceBinding("dev", protocol, properties, {}))
        assert message in str(error.value)


@pytest.mark.parametrize(
    ("protocol", "properties"),
    [
        ("modbus-tcp", {**TCP_OK, "UnitID": "0", "Timeout": "5", "IdleTimeout": "5"}),  # EdgeX's sample device
        ("modbus-tcp", {**TCP_OK, "UnitID": "0xFF", "Timeout": "1m30s", "Framer": "RTU"}),
        ("modbus-rtu", {**RTU_OK, "Parity": "e", "StopBits": "2", "Timeout": "0.25"}),
    ],
)
@async_test(TEST_TIMEOUT)
async def test_good_protocol_properties(protocol: str, properties: dict[str, str]) -> None:
    async with modbus_driver() as driver:
        await driver.add_device(DeviceBinding("dev", protocol, properties, {}))


@async_test(TEST_TIMEOUT)
async def test_bad_attributes_fail_add_device() -> None:
    profile = bindings(
        [resource("ok", "Int16", "HOLDING_REGISTERS", 0), resource("bad", "Int16", "HOLDING_REGISTERS", "0.1")]
    )
    async with modbus_driver() as driver:
        with pytest.raises(ConfigurationError, match=r"^device 'dev' resource 'bad': attribute 'startingAddress'"):
            await driver.add_device(DeviceBinding("dev", "modbus-tcp", TCP_OK, profile))
        with pytest.raises(ConfigurationError, match="device 'dev' has not been added"):
            await driver.read("dev", ["ok"])
