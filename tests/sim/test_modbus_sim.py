"""The Modbus simulator, driven over real sockets by pymodbus's async client (the gateway's own client library).

Every wait is for a condition with a deadline; the only timing assertions are lower bounds (a delayed reply
is not early) and client timeouts that the fault under test makes certain.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.pdu import ModbusPDU

from yurt_iot.sim.modbus import (
    Fault,
    FaultMode,
    ModbusSimulator,
    Waveform,
    discrete_input_value,
    input_register_value,
)
from yurt_iot.testing.waiting import async_test, async_wait_for

TEST_TIMEOUT = 30.0
DEADLINE = 10.0
#: Small tables start in a few milliseconds; tests that need the default size say so.
SMALL = 200


@contextlib.asynccontextmanager
async def modbus_client(
    sim: ModbusSimulator, *, reply_timeout: float = 2.0, received: list[bytes] | None = None
) -> AsyncIterator[AsyncModbusTcpClient]:
    """A connected client with the simulator's framing, no retries and no automatic reconnect.

    `received` collects the client's receive buffer each time bytes arrive (for looking at raw frames).
    """

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending and received is not None:
            received.append(data)
        return data

    client = AsyncModbusTcpClient(
        sim.host,
        port=sim.port,
        framer=sim.framer,
        timeout=reply_timeout,
        retries=0,
        reconnect_delay=0,
        trace_packet=trace,
    )
    assert await client.connect(), f"cannot connect to the simulator at {sim.host}:{sim.port}"
    try:
        yield client
    finally:
        client.close()


def disconnected(client: AsyncModbusTcpClient) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not client.connected

    return check


def exception_code(response: ModbusPDU) -> int:
    assert response.isError(), f"expected an exception response, got {response}"
    return response.exception_code


@async_test(TEST_TIMEOUT)
async def test_every_table_reads_and_keeps_writes() -> None:
    async with ModbusSimulator(units=[1], update_period=None) as sim, modbus_client(sim) as client:
        assert not (await client.write_register(5, 0xBEEF, device_id=1)).isError()  # FC 6
        assert not (await client.write_registers(10, [1, 2, 3], device_id=1)).isError()  # FC 16
        holding = await client.read_holding_registers(4, count=9, device_id=1)  # FC 3
        assert holding.registers == [0, 0xBEEF, 0, 0, 0, 0, 1, 2, 3]

        assert not (await client.write_coil(3, True, device_id=1)).isError()  # FC 5
        assert not (await client.write_coils(20, [True, False, True], device_id=1)).isError()  # FC 15
        assert not (await client.write_coil(21, False, device_id=1)).isError()
        coils = await client.read_coils(0, count=24, device_id=1)  # FC 1
        assert [a for a, on in enumerate(coils.bits[:24]) if on] == [3, 20, 22]

        inputs = await client.read_discrete_inputs(0, count=16, device_id=1)  # FC 2
        assert inputs.bits[:16] == [discrete_input_value(1, a) for a in range(16)]

        # the default tables hold 10,000 entries: the last 125-register block reads, one more register does not
        last_block = await client.read_input_registers(9875, count=125, device_id=1)  # FC 4
        assert last_block.registers == [input_register_value(1, a, 0) for a in range(9875, 10000)]
        past_end = await client.read_input_registers(9876, count=125, device_id=1)
        assert exception_code(past_end) == ExcCodes.ILLEGAL_ADDRESS


async def read_tick(client: AsyncModbusTcpClient, sim: ModbusSimulator, unit: int) -> int:
    """Read input registers 0-9 of `unit` and return the tick their values belong to."""
    before = sim.tick
    registers = (await client.read_input_registers(0, count=10, device_id=unit)).registers
    after = sim.tick
    for tick in range(before, after + 1):
        if registers == [input_register_value(unit, a, tick, sim.waveform) for a in range(10)]:
            return tick
    pytest.fail(f"input registers {registers} match no tick in {before}..{after}")


@pytest.mark.parametrize("waveform", list(Waveform))
@async_test(TEST_TIMEOUT)
async def test_input_registers_follow_the_tick(waveform: Waveform) -> None:
    async with (
        ModbusSimulator(units=[3], update_period=0.02, waveform=waveform, table_size=SMALL) as sim,
        modbus_client(sim) as client,
    ):
        first = await read_tick(client, sim, 3)

        async def advanced() -> bool:
            return await read_tick(client, sim, 3) >= first + 2

        await async_wait_for(advanced, within=DEADLINE, what="the input registers to move on by two ticks")


@async_test(TEST_TIMEOUT)
async def test_input_registers_stay_at_tick_0_without_an_update_period() -> None:
    async with ModbusSimulator(units=[3], update_period=None, table_size=SMALL) as sim, modbus_client(sim) as client:
        for _ in range(3):
            assert await read_tick(client, sim, 3) == 0


@async_test(TEST_TIMEOUT)
async def test_one_request_reads_100_adjacent_registers() -> None:
    async with ModbusSimulator(units=[1, 2], table_size=SMALL) as sim, modbus_client(sim) as client:
        assert len((await client.read_holding_registers(0, count=100, device_id=1)).registers) == 100
        assert sim.stats.requests() == 1
        assert sim.stats.requests(unit=1, function_code=3) == 1
        assert sim.stats.registers_read(unit=1) == 100

        await client.read_input_registers(0, count=125, device_id=2)
        await client.write_register(0, 1, device_id=2)
        assert sim.stats.requests(unit=2) == 2
        assert sim.stats.requests(function_code=4) == 1
        assert sim.stats.requests(unit=2, function_code=6) == 1
        assert sim.stats.registers_read() == 225

        sim.stats.reset()
        assert sim.stats.requests() == sim.stats.registers_read() == 0


@async_test(TEST_TIMEOUT)
async def test_several_units_share_one_endpoint() -> None:
    units = [1, 2, 247]
    async with ModbusSimulator(units=units, table_size=SMALL) as sim, modbus_client(sim) as client:
        for unit in units:
            await client.write_register(0, 100 + unit, device_id=unit)
        for unit in units:
            assert (await client.read_holding_registers(0, count=1, device_id=unit)).registers == [100 + unit]
            inputs = await client.read_discrete_inputs(0, count=8, device_id=unit)
            assert inputs.bits[:8] == [discrete_input_value(unit, a) for a in range(8)]
            assert sim.stats.requests(unit=unit) == 3

        # a unit nobody serves: answered like a Modbus gateway whose target does not respond
        unknown = await client.read_holding_registers(0, count=1, device_id=9)
        assert exception_code(unknown) == ExcCodes.GATEWAY_NO_RESPONSE
        assert sim.stats.requests(unit=9) == 1


@async_test(TEST_TIMEOUT)
async def test_exception_faults_match_unit_function_and_address_range() -> None:
    async with ModbusSimulator(units=[1, 2], table_size=SMALL) as sim, modbus_client(sim) as client:
        sim.faults.append(
            Fault(
                FaultMode.EXCEPTION,
                units={1},
                function_codes={3, 6, 16},
                addresses=range(100, 110),
                exception_code=ExcCodes.ILLEGAL_ADDRESS,
            )
        )
        overlapping = await client.read_holding_registers(95, count=10, device_id=1)
        assert exception_code(overlapping) == ExcCodes.ILLEGAL_ADDRESS
        assert not (await client.read_holding_registers(90, count=10, device_id=1)).isError()  # 90-99
        assert not (await client.read_holding_registers(95, count=10, device_id=2)).isError()  # other unit
        assert not (await client.read_input_registers(95, count=10, device_id=1)).isError()  # other table
        assert exception_code(await client.write_register(105, 7, device_id=1)) == ExcCodes.ILLEGAL_ADDRESS

        sim.faults.clear()
        # the refused write was not executed
        assert (await client.read_holding_registers(105, count=1, device_id=1)).registers == [0]

        # "device failure" on demand, for every unit and function
        sim.faults.append(Fault(FaultMode.EXCEPTION))
        for unit in (1, 2):
            failed = await client.read_coils(0, count=1, device_id=unit)
            assert exception_code(failed) == ExcCodes.DEVICE_FAILURE
        sim.faults.clear()
        assert not (await client.read_coils(0, count=1, device_id=1)).isError()


@async_test(TEST_TIMEOUT)
async def test_bit_address_ranges_are_exact() -> None:
    async with ModbusSimulator(units=[1], table_size=SMALL) as sim, modbus_client(sim) as client:
        sim.faults.append(Fault(FaultMode.EXCEPTION, function_codes={1}, addresses=range(5, 6)))
        assert exception_code(await client.read_coils(5, count=1, device_id=1)) == ExcCodes.DEVICE_FAILURE
        assert exception_code(await client.read_coils(0, count=6, device_id=1)) == ExcCodes.DEVICE_FAILURE
        assert not (await client.read_coils(0, count=5, device_id=1)).isError()
        assert not (await client.read_coils(6, count=1, device_id=1)).isError()  # same 16-bit word, other coil


@async_test(TEST_TIMEOUT)
async def test_delayed_replies_arrive_late_and_time_out_impatient_clients() -> None:
    delay = 0.5
    async with (
        ModbusSimulator(units=[1], table_size=SMALL) as sim,
        modbus_client(sim, reply_timeout=5.0) as patient,
        modbus_client(sim, reply_timeout=0.1) as hasty,
    ):
        await patient.write_register(0, 11, device_id=1)
        sim.faults.append(Fault(FaultMode.DELAY, delay=delay))
        loop = asyncio.get_running_loop()
        started = loop.time()
        late = await patient.read_holding_registers(0, count=1, device_id=1)
        assert loop.time() - started >= delay
        assert late.registers == [11]

        with pytest.raises(ModbusIOException):
            await hasty.read_holding_registers(0, count=1, device_id=1)

        sim.faults.clear()
        # the same connection goes on with correct answers; the late reply does not get mixed up with them
        assert not (await hasty.write_register(1, 42, device_id=1)).isError()
        assert (await hasty.read_holding_registers(1, count=1, device_id=1)).registers == [42]


@async_test(TEST_TIMEOUT)
async def test_lost_replies_time_out_but_writes_take_effect() -> None:
    async with ModbusSimulator(units=[1], table_size=SMALL) as sim, modbus_client(sim, reply_timeout=0.2) as client:
        sim.faults.append(Fault(FaultMode.NO_RESPONSE, units={1}))
        with pytest.raises(ModbusIOException):
            await client.write_register(3, 33, device_id=1)
        sim.faults.clear()
        assert client.connected
        assert (await client.read_holding_registers(3, count=1, device_id=1)).registers == [33]


@async_test(TEST_TIMEOUT)
async def test_malformed_reply_is_a_complete_frame_that_cannot_be_decoded() -> None:
    received: list[bytes] = []
    async with (
        ModbusSimulator(units=[1], table_size=SMALL) as sim,
        modbus_client(sim, reply_timeout=0.5, received=received) as client,
    ):
        sim.faults.append(Fault(FaultMode.MALFORMED))
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0, count=10, device_id=1)
        frame = received[-1]
        # MBAP header whose length matches what follows, then FC 3 announcing 20 bytes but carrying 9
        assert int.from_bytes(frame[4:6], "big") == len(frame) - 6
        assert (frame[6], frame[7], frame[8]) == (1, 3, 20)
        assert len(frame[9:]) == 9
        await async_wait_for(
            disconnected(client), within=DEADLINE, what="pymodbus to give up a connection it cannot decode"
        )

        sim.faults.clear()
        assert await client.connect()
        assert not (await client.read_holding_registers(0, count=10, device_id=1)).isError()


@async_test(TEST_TIMEOUT)
async def test_disconnect_fault_closes_the_connection() -> None:
    async with ModbusSimulator(units=[1], table_size=SMALL) as sim, modbus_client(sim, reply_timeout=0.5) as client:
        sim.faults.append(Fault(FaultMode.DISCONNECT))
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0, count=1, device_id=1)
        await async_wait_for(disconnected(client), within=DEADLINE, what="the client to see the connection closed")
        sim.faults.clear()
        assert await client.connect()
        assert not (await client.read_holding_registers(0, count=1, device_id=1)).isError()


@async_test(TEST_TIMEOUT)
async def test_restart_on_the_same_port_keeps_the_tables() -> None:
    async with ModbusSimulator(units=[1], table_size=SMALL) as sim, modbus_client(sim) as client:
        port = sim.port
        await client.write_register(0, 1234, device_id=1)
        await sim.stop()
        assert not sim.running
        await async_wait_for(disconnected(client), within=DEADLINE, what="the client to notice the stop")
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(sim.host, port)
        assert not await client.connect()

        await sim.start()
        assert sim.port == port
        assert await client.connect()
        assert (await client.read_holding_registers(0, count=1, device_id=1)).registers == [1234]


@async_test(TEST_TIMEOUT)
async def test_start_on_a_busy_port_raises_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        sim = ModbusSimulator(units=[1], port=taken.getsockname()[1], table_size=SMALL)
        with pytest.raises(OSError, match="cannot listen"):
            await sim.start()
        assert not sim.running


@async_test(TEST_TIMEOUT)
async def test_rtu_framing_over_tcp() -> None:
    received: list[bytes] = []
    async with (
        ModbusSimulator(units=[5], framer=FramerType.RTU, update_period=None, table_size=SMALL) as sim,
        modbus_client(sim, received=received) as client,
    ):
        assert not (await client.write_registers(0, [7, 8], device_id=5)).isError()
        assert (await client.read_holding_registers(0, count=2, device_id=5)).registers == [7, 8]
        inputs = await client.read_input_registers(0, count=3, device_id=5)
        assert inputs.registers == [input_register_value(5, a, 0) for a in range(3)]
        # an RTU frame (unit id, FC 4, byte count, data, CRC), no MBAP header
        frame = received[-1]
        assert frame[:3] == bytes([5, 4, 6])
        assert FramerRTU.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big"))


@pytest.mark.parametrize("units", [[], [0], [248]])
def test_rejects_unit_ids_outside_1_to_247(units: list[int]) -> None:
    with pytest.raises(ValueError, match="unit ids"):
        ModbusSimulator(units=units)


def test_runs_as_a_process_that_prints_its_port() -> None:
    command = [sys.executable, "-m", "yurt_iot.sim.modbus", "--units", "1-3", "--size", "200", "--framer", "rtu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip().isdigit(), f"no port on stdout: {line!r}"
        port = int(line)

        async def read_unit_3() -> list[int]:
            client = AsyncModbusTcpClient("127.0.0.1", port=port, framer=FramerType.RTU, timeout=2.0, retries=0)
            assert await client.connect()
            try:
                return list((await client.read_holding_registers(0, count=2, device_id=3)).registers)
            finally:
                client.close()

        assert asyncio.run(read_unit_3()) == [0, 0]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0, stderr
    assert "served 1 requests, 2 registers read" in stderr
