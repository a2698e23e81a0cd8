"""A Modbus TCP device simulator on pymodbus's own server, for tests, benchmarks and the demo.

Why pymodbus's server and not a fake: the gateway's Modbus driver has to meet real framing (MBAP, or RTU frames
with CRC carried over TCP), real exception responses and real sockets. On top of that server this adds what
tests of the gateway need to see and provoke:

* several unit ids behind one endpoint, each with coils, discrete inputs, holding and input registers;
* input registers that move with a tick advanced every ``update_period`` along a known function
  (:func:`input_register_value`), while holding registers and coils keep what clients write;
* request counters (:class:`RequestStats`), so a test can prove that 100 adjacent registers took one request;
* faults (:class:`Fault`): exception responses, late, missing or malformed replies, dropped connections; and
  :meth:`ModbusSimulator.stop` / :meth:`ModbusSimulator.start` on the same port, tables kept.

It listens on 127.0.0.1 only. As a process, for benchmarks and the demo::

    python -m yurt_iot.sim.modbus --units 1-100

prints the port on stdout, then serves until SIGTERM or SIGINT.

Requests on one connection must not be pipelined (send the next after the reply, as pymodbus's client and
every Modbus master do): pymodbus's server loses a request that arrives before the previous one is answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import ReadWriteMultipleRegistersRequest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimAction, SimData, SimDevice

from yurt_iot.sim.process import until_signalled
from yurt_iot.testing.ports import LOOPBACK, stable_free_port

__all__ = [
    "DEFAULT_TABLE_SIZE",
    "Fault",
    "FaultMode",
    "ModbusSimulator",
    "RequestStats",
    "Waveform",
    "discrete_input_value",
    "input_register_value",
]

#: Entries per table (coils, discrete inputs, holding registers, input registers) unless configured.
DEFAULT_TABLE_SIZE = 10_000
#: Unit ids a simulator may serve: the Modbus serial addresses, as a TCP-to-RTU gateway would route them.
UNIT_IDS = range(1, 248)
#: Requests for any other unit are answered like a gateway whose target does not respond.
UNKNOWN_UNIT_EXCEPTION = ExcCodes.GATEWAY_NO_RESPONSE

SINE_AMPLITUDE = 1000
#: Ticks per period of the sine waveform: 10 s at the default update period.
SINE_TICKS = 100

_READ_INPUT_REGISTERS = 4
_READ_REGISTERS = frozenset({3, 4})
#: Function codes whose request carries an address (and a count, 0 meaning one): read/write bits and registers.
_ADDRESSED = frozenset({1, 2, 3, 4, 5, 6, 15, 16, 22})
_MBAP_HEADER = 7


class Waveform(StrEnum):
    """How input registers change from one tick to the next."""

    COUNTER = "counter"
    SINE = "sine"


def input_register_value(unit: int, address: int, tick: int, waveform: Waveform = Waveform.COUNTER) -> int:
    """What input register `address` of `unit` reads while `tick` is the simulator's tick.

    The phase ``tick + address + unit`` makes neighbouring registers and units differ, and a test can recover the
    tick from any value it read. COUNTER is the phase modulo 2**16; SINE is ``round(1000 * sin(2*pi*phase/100))``
    as a 16-bit two's complement (an INT16 register).
    """
    phase = tick + address + unit
    if waveform is Waveform.SINE:
        return round(SINE_AMPLITUDE * math.sin(2 * math.pi * phase / SINE_TICKS)) & 0xFFFF
    return phase & 0xFFFF


def discrete_input_value(unit: int, address: int) -> bool:
    """Discrete inputs are fixed: on where ``address + unit`` is odd, so that units read differently."""
    return (address + unit) % 2 == 1


class FaultMode(StrEnum):
    """What happens to a request that a :class:`Fault` matches."""

    #: Not executed; answered with the Modbus exception ``Fault.exception_code``.
    EXCEPTION = "exception"
    #: Executed; the reply is sent ``Fault.delay`` seconds late (later requests are not held up by it).
    DELAY = "delay"
    #: Executed; no reply.
    NO_RESPONSE = "no-response"
    #: Executed; the reply is cut short. With MBAP framing the header's length is fixed up, so the client gets a
    #: complete frame whose PDU cannot be decoded; RTU and ASCII frames have no length field, so a client sees an
    #: unfinished frame (and times out).
    MALFORMED = "malformed"
    #: Executed; the connection is closed instead of replying.
    DISCONNECT = "disconnect"


@dataclass(frozen=True)
class Fault:
    """A misbehaviour for the requests it matches: append it to ``ModbusSimulator.faults``, remove it to heal.

    A request matches when its unit is in `units`, its function code in `function_codes` and its address span
    overlaps `addresses` (a step-1 range); None matches anything, and a request that carries no address (say a
    diagnostic, FC 8) never matches an `addresses` range. Only EXCEPTION keeps a request from executing: the other
    modes model a reply lost or mangled on the way, after a write took effect. Requests for unit ids the simulator
    does not serve get exception 0x0B regardless of faults.
    """

    mode: FaultMode
    units: Collection[int] | None = None
    function_codes: Collection[int] | None = None
    addresses: range | None = None
    exception_code: int = ExcCodes.DEVICE_FAILURE
    delay: float = 1.0

    def matches(self, request: ModbusPDU) -> bool:
        if self.units is not None and request.dev_id not in self.units:
            return False
        if self.function_codes is not None and request.function_code not in self.function_codes:
            return False
        wanted = self.addresses
        return wanted is None or any(
            span.start < wanted.stop and wanted.start < span.stop for span in _address_spans(request)
        )


def _address_spans(request: ModbusPDU) -> list[range]:
    if isinstance(request, ReadWriteMultipleRegistersRequest):
        return [
            range(request.read_address, request.read_address + request.read_count),
            range(request.write_address, request.write_address + request.write_count),
        ]
    if request.function_code in _ADDRESSED:
        return [range(request.address, request.address + max(request.count, 1))]
    return []


class RequestStats:
    """The requests a simulator has received, counted as they are decoded (before any fault applies)."""

    def __init__(self) -> None:
        self._requests: Counter[tuple[int, int]] = Counter()
        self._registers_read: Counter[int] = Counter()

    def requests(self, unit: int | None = None, function_code: int | None = None) -> int:
        """Requests for `unit` with `function_code`; None counts every unit or function code."""
        return sum(
            n
            for (request_unit, request_function), n in self._requests.items()
            if unit in (None, request_unit) and function_code in (None, request_function)
        )

    def registers_read(self, unit: int | None = None) -> int:
        """Holding and input registers requested for reading (FC 3, 4 and the read part of 23)."""
        return self._registers_read[unit] if unit is not None else self._registers_read.total()

    def reset(self) -> None:
        self._requests.clear()
        self._registers_read.clear()

    def _record(self, request: ModbusPDU) -> None:
        self._requests[request.dev_id, request.function_code] += 1
        if isinstance(request, ReadWriteMultipleRegistersRequest):
            self._registers_read[request.dev_id] += request.read_count
        elif request.function_code in _READ_REGISTERS:
            self._registers_read[request.dev_id] += request.count


class _Refusal(ModbusPDU):
    """Stands in for a request that is answered with an exception instead of being executed."""

    def __init__(self, request: ModbusPDU, exception_code: int) -> None:
        super().__init__(dev_id=request.dev_id, transaction_id=request.transaction_id)
        self.function_code = request.function_code
        self.exception_code = exception_code

    async def datastore_update(self, context: ModbusServerContext, device_id: int) -> ModbusPDU:
        return ExceptionResponse(self.function_code, self.exception_code)


class _Connection:
    """The simulator's hooks on one client connection of the pymodbus server.

    pymodbus's trace hooks are not told which connection a frame belongs to, but a late reply has to be written
    to the right socket later, so every connection's request handler gets its own hooks. A fault found for a
    request is held until that request's reply goes out: pymodbus answers a connection's requests one at a time.
    """

    def __init__(self, simulator: ModbusSimulator, handler: Any) -> None:
        self._simulator = simulator
        self._handler = handler
        self._pending: Fault | None = None
        self._late_replies: set[asyncio.TimerHandle] = set()
        handler.trace_pdu = self._on_pdu
        handler.trace_packet = self._on_frame
        handler.trace_connect = self._on_connect

    def _on_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending:
            return pdu
        simulator = self._simulator
        simulator.stats._record(pdu)
        if pdu.dev_id not in simulator.units:
            return _Refusal(pdu, UNKNOWN_UNIT_EXCEPTION)
        fault = next((fault for fault in simulator.faults if fault.matches(pdu)), None)
        if fault is not None and fault.mode is FaultMode.EXCEPTION:
            return _Refusal(pdu, fault.exception_code)
        self._pending = fault
        return pdu

    def _on_frame(self, sending: bool, frame: bytes) -> bytes:
        if not sending or self._pending is None:
            return frame
        fault, self._pending = self._pending, None
        if fault.mode is FaultMode.DELAY:
            self._reply_later(fault.delay, frame)
        elif fault.mode is FaultMode.MALFORMED:
            return _cut_short(frame, self._simulator.framer)
        elif fault.mode is FaultMode.DISCONNECT:
            self._handler.transport.close()
        return b""  # pymodbus writes nothing for an empty frame

    def _on_connect(self, connected: bool) -> None:
        if not connected:
            for late in self._late_replies:
                late.cancel()
            self._late_replies.clear()

    def _reply_later(self, delay: float, frame: bytes) -> None:
        def reply() -> None:
            self._late_replies.discard(late)
            if self._handler.transport is not None:
                self._handler.transport.write(frame)

        late = asyncio.get_running_loop().call_later(delay, reply)
        self._late_replies.add(late)


def _cut_short(frame: bytes, framer: FramerType) -> bytes:
    if framer is not FramerType.SOCKET:
        return frame[: len(frame) // 2]
    header, pdu = frame[:_MBAP_HEADER], frame[_MBAP_HEADER:]
    pdu = pdu[: max(1, len(pdu) // 2)]
    length = (len(pdu) + 1).to_bytes(2, "big")  # the MBAP length counts the unit id byte and the PDU
    return header[:4] + length + header[6:] + pdu


class _Server(ModbusTcpServer):
    """pymodbus's TCP server, with the simulator's hooks installed on every connection it accepts."""

    def __init__(self, simulator: ModbusSimulator, devices: list[SimDevice]) -> None:
        super().__init__(devices, framer=simulator.framer, address=(simulator.host, simulator.port))
        self._simulator = simulator

    def callback_new_connection(self) -> Any:
        handler = super().callback_new_connection()  # type: ignore[no-untyped-call]
        _Connection(self._simulator, handler)
        return handler


class ModbusSimulator:
    """Modbus devices (`units`) behind one TCP endpoint on 127.0.0.1, with counters and faults.

    ``async with ModbusSimulator(units=[1, 2]) as sim:`` serves at ``sim.host``:``sim.port``. `framer` is
    ``FramerType.SOCKET`` (Modbus TCP) or ``FramerType.RTU`` (RTU frames over TCP, as serial-to-Ethernet converters
    forward them); ASCII works too. Each unit has four tables of `table_size` entries from address 0: holding
    registers 0, coils off, discrete inputs per :func:`discrete_input_value`, input registers per
    :func:`input_register_value` (frozen at tick 0 when `update_period` is None). pymodbus keeps coils and discrete
    inputs in 16-bit words, so those two tables are rounded up to a multiple of 16.

    Without `port`, a free port below the kernel's ephemeral range is chosen, which no outgoing connection can
    take while the simulator is stopped (see :mod:`yurt_iot.testing.ports`). The tables survive stop/start.
    """

    def __init__(
        self,
        units: Iterable[int] = (1,),
        *,
        port: int | None = None,
        framer: FramerType = FramerType.SOCKET,
        table_size: int = DEFAULT_TABLE_SIZE,
        update_period: float | None = 0.1,
        waveform: Waveform = Waveform.COUNTER,
    ) -> None:
        self.units = frozenset(units)
        if not self.units or not self.units <= set(UNIT_IDS):
            raise ValueError(f"units must be a non-empty set of unit ids 1..247, got {sorted(self.units)}")
        if not 1 <= table_size <= 65536:
            raise ValueError(f"table_size must be 1..65536, got {table_size}")
        self.table_size = table_size
        self.framer = FramerType(framer)
        if self.framer is FramerType.TLS:
            raise ValueError("TLS framing is not simulated")
        if update_period is not None and update_period <= 0:
            raise ValueError("update_period must be positive, or None to freeze the input registers")
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"port must be 1..65535, or None for a free one; got {port}")
        self.host = LOOPBACK
        self.port = stable_free_port(LOOPBACK) if port is None else port
        self.update_period = update_period
        self.waveform = waveform
        #: Active faults; the first one that matches a request applies to it.
        self.faults: list[Fault] = []
        self.stats = RequestStats()
        self._tick = 0
        self._server: _Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def tick(self) -> int:
        """How many update periods the input registers have advanced; the tick stands still while stopped."""
        return self._tick

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.is_active()

    async def start(self) -> None:
        """Listen on ``host:port``; the first start builds the tables (about 65 ms per unit at the default size)."""
        if self.running:
            raise RuntimeError("the simulator is already running")
        if self._server is None:
            self._server = _Server(self, [self._device(unit) for unit in sorted(self.units)])
        try:
            await self._server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus's way of saying that listen() failed; it logs the OSError
            raise OSError(f"the Modbus simulator cannot listen on {self.host}:{self.port}") from exc
        if self.update_period is not None:
            self._ticker = asyncio.create_task(self._advance(self.update_period), name="modbus-sim-ticker")

    async def stop(self) -> None:
        """Close the listening socket and every connection, as a device that is switched off."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._server is not None:
            self._server.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _advance(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            self._tick += 1

    def _device(self, unit: int) -> SimDevice:
        # Whole value lists, not SimData(count=n): pymodbus 3.16 multiplies by count twice while validating,
        # which makes count=10_000 cost 10**8 list entries.
        size = self.table_size
        return SimDevice(
            unit,
            simdata=(
                [SimData(0, values=[False] * size, datatype=DataType.BITS)],
                [SimData(0, values=[discrete_input_value(unit, a) for a in range(size)], datatype=DataType.BITS)],
                [SimData(0, values=[0] * size, datatype=DataType.REGISTERS)],
                [SimData(0, values=[0] * size, datatype=DataType.REGISTERS)],
            ),
            action=self._input_register_action(unit),
        )

    def _input_register_action(self, unit: int) -> SimAction:
        """pymodbus calls this before every table access; a read of input registers gets the current values."""

        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            if function_code == _READ_INPUT_REGISTERS:
                first = address - start_address
                registers[first : first + count] = [
                    input_register_value(unit, a, self._tick, self.waveform) for a in range(address, address + count)
                ]
            return None

        return action


def _parse_units(text: str) -> list[int]:
    """``1-100``, ``1,5,7-9`` -> unit ids."""
    units: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        units.extend(range(int(first), int(last or first) + 1))
    return units


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m yurt_iot.sim.modbus",
        description="Serve simulated Modbus devices on 127.0.0.1; prints the port on stdout, stops on SIGTERM/SIGINT.",
    )
    parser.add_argument("--port", type=int, help="TCP port (default: a free one)")
    parser.add_argument("--units", type=_parse_units, default=[1], help="unit ids, e.g. 1-100 or 1,3,7-9 (default 1)")
    parser.add_argument(
        "--framer",
        choices=[FramerType.SOCKET.value, FramerType.RTU.value, FramerType.ASCII.value],
        default=FramerType.SOCKET.value,
        help="socket = Modbus TCP (MBAP); rtu = RTU frames over TCP (default socket)",
    )
    parser.add_argument(
        "--size", type=int, default=DEFAULT_TABLE_SIZE, help="entries in each of the four tables (default %(default)s)"
    )
    parser.add_argument(
        "--update-period",
        type=float,
        default=0.1,
        help="seconds per input register tick, 0 freezes them (default %(default)s)",
    )
    parser.add_argument("--waveform", choices=[w.value for w in Waveform], default=Waveform.COUNTER.value)
    return parser.parse_args(argv)


async def _serve(simulator: ModbusSimulator) -> None:
    async with simulator:
        print(simulator.port, flush=True)
        await until_signalled()
    stats = simulator.stats
    print(f"served {stats.requests()} requests, {stats.registers_read()} registers read", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    simulator = ModbusSimulator(
        args.units,
        port=args.port,
        framer=FramerType(args.framer),
        table_size=args.size,
        update_period=args.update_period or None,
        waveform=Waveform(args.waveform),
    )
    asyncio.run(_serve(simulator))


if __name__ == "__main__":
    main()
