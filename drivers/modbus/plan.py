"""Coalescing: the resources of one read merged, table by table, into as few Modbus requests as possible.

A request reads one contiguous span: at most 125 registers (FC3/FC4) or 2000 bits (FC1/FC2). Neighbouring
resources join one span when the gap between them is at most `max_gap` registers, or ``16 * max_gap`` bits in the
bit tables, so that a bridged gap costs the same reply bytes in every table. The default of 8 registers (16 bytes)
is far cheaper than another request: on TCP a request costs a round trip and the device's turnaround, and on a
19200 baud line the frames, silent intervals and turnaround of one more request outweigh about ten registers.
The catch is a device whose register map has holes: a span that bridges a hole is refused as a whole
(exception 2, illegal data address). Such a device needs ``max_gap=0``, which merges only adjacent and
overlapping resources.

Spans are cut greedily in address order, which gives the fewest requests: a span only ends where the limit
or a gap forces it to. Each request precomputes its decoding (`RegisterRead`), so a poll packs the reply's
registers into bytes once and unpacks every value at its offset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol

from yurt_iot.runtime.sdk import Value

from .codec import Point, Table, register_struct

__all__ = ["DEFAULT_MAX_GAP", "BitRead", "ReadPlan", "ReadRequest", "RegisterRead", "Reply", "plan_reads"]

DEFAULT_MAX_GAP: Final = 8
"""Registers a read may bridge between two resources (16x as many bits in COILS and DISCRETE_INPUTS)."""

BITS_PER_REGISTER: Final = 16


class Reply(Protocol):
    """What a decoder needs of a read's reply (a pymodbus response PDU)."""

    registers: Sequence[int]
    bits: Sequence[bool]


@dataclass(frozen=True, slots=True)
class _Span:
    """One read request: `count` registers or bits of `table` from `address`, serving the resources `names`."""

    table: Table
    address: int
    count: int
    names: tuple[str, ...]

    @property
    def function_code(self) -> int:
        return self.table.read_function


class _Item(NamedTuple):
    """How one resource's value is taken from a register block."""

    name: str
    unpack: Callable[[bytes, int], tuple[Any, ...]]
    swapped: bool
    """Whether it is unpacked from the byte-swapped copy of the block."""
    offset: int
    """Byte offset in the block."""
    convert: Callable[[Any], Value] | None


@dataclass(frozen=True, slots=True)
class RegisterRead(_Span):
    """A read of holding or input registers, with each value's unpacker and byte offset worked out in advance."""

    items: tuple[_Item, ...] = ()
    _pack: Callable[..., bytes] = field(init=False, repr=False)
    _pack_swapped: Callable[..., bytes] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pack", register_struct(self.count).pack)
        swapped = any(item.swapped for item in self.items)
        object.__setattr__(self, "_pack_swapped", register_struct(self.count, True).pack if swapped else None)

    def complete(self, reply: Reply) -> bool:
        """Whether the reply carries exactly the registers asked for."""
        return len(reply.registers) == self.count

    def decode(self, reply: Reply, values: dict[str, Value]) -> None:
        """Add the raw value of every resource of the request to `values`."""
        registers = reply.registers
        block = self._pack(*registers)
        swapped = block if self._pack_swapped is None else self._pack_swapped(*registers)
        for name, unpack, use_swapped, offset, convert in self.items:
            raw = unpack(swapped if use_swapped else block, offset)[0]
            values[name] = raw if convert is None else convert(raw)


@dataclass(frozen=True, slots=True)
class BitRead(_Span):
    """A read of coils or discrete inputs."""

    offsets: tuple[tuple[str, int], ...] = ()
    """(resource, bit offset in the reply)."""

    def complete(self, reply: Reply) -> bool:
        """Whether the reply carries the bits asked for (pymodbus pads them to whole bytes)."""
        return len(reply.bits) >= self.count

    def decode(self, reply: Reply, values: dict[str, Value]) -> None:
        """Add the raw value of every resource of the request to `values`."""
        bits = reply.bits
        for name, offset in self.offsets:
            values[name] = bool(bits[offset])


ReadRequest = RegisterRead | BitRead


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """The requests of one read, and the names asked for that the device has no resource for."""

    requests: tuple[ReadRequest, ...]
    unknown: tuple[str, ...] = ()


def plan_reads(points: Mapping[str, Point], names: Iterable[str], max_gap: int = DEFAULT_MAX_GAP) -> ReadPlan:
    """Merge the points of `names` into requests (see the module docstring)."""
    wanted = list(dict.fromkeys(names))
    by_table: dict[Table, list[Point]] = {}
    for name in wanted:
        if name in points:
            point = points[name]
            by_table.setdefault(point.table, []).append(point)
    requests: list[ReadRequest] = []
    for table in Table:  # a fixed order of tables, so plans are deterministic
        if table in by_table:
            gap = max_gap * BITS_PER_REGISTER if table.holds_bits else max_gap
            requests.extend(_request(table, span) for span in _spans(by_table[table], gap, table.max_read))
    return ReadPlan(tuple(requests), tuple(name for name in wanted if name not in points))


def _spans(points: list[Point], max_gap: int, limit: int) -> list[list[Point]]:
    points = sorted(points, key=lambda p: (p.address, p.count))
    spans = [[points[0]]]
    start, end = points[0].address, points[0].address + points[0].count
    for point in points[1:]:
        stop = max(end, point.address + point.count)
        if point.address - end <= max_gap and stop - start <= limit:
            spans[-1].append(point)
            end = stop
        else:
            spans.append([point])
            start, end = point.address, point.address + point.count
    return spans


def _request(table: Table, span: list[Point]) -> ReadRequest:
    start = span[0].address
    count = max(p.address + p.count for p in span) - start
    names = tuple(p.name for p in span)
    if table.holds_bits:
        return BitRead(table, start, count, names, tuple((p.name, p.address - start) for p in span))
    items: list[_Item] = []
    for p in span:
        assert p.layout is not None  # every point of a register table has one
        items.append(_Item(p.name, p.layout.unpack_from, p.swapped, 2 * (p.address - start), p.convert))
    return RegisterRead(table, start, count, names, tuple(items))
