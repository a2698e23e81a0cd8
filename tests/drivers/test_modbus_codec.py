"""Modbus registers and bits <-> raw values, attribute checks and read planning, without a device.

Register lists are written out by hand (what a device holds, first register first), not computed the way the
codec computes them, so a table row is a statement about Modbus and not about the code under test.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest
from yurt_iot_drivers.modbus.codec import Point, Table, compile_point
from yurt_iot_drivers.modbus.plan import BitRead, RegisterRead, plan_reads

from yurt_iot.api.iot import DeviceResource
from yurt_iot.runtime.sdk import ConfigurationError, ResourceBinding, ResourceFailure
from yurt_iot.runtime.values import Value


def point(value_type: str, name: str = "r", **attributes: Any) -> Point:
    resource = DeviceResource.model_validate(
        {
            "name": name,
            "description": "",
            "isHidden": False,
            "properties": {"valueType": value_type, "readWrite": "RW"},
            "attributes": attributes,
        }
    )
    return compile_point("dev", ResourceBinding.from_resource(resource))


def holding(value_type: str, address: int | float | str = 0, name: str = "r", **attributes: Any) -> Point:
    return point(value_type, name, primaryTable="HOLDING_REGISTERS", startingAddress=address, **attributes)


@dataclass
class Reply:
    registers: list[int] = field(default_factory=list)
    bits: list[bool] = field(default_factory=list)


def decode(p: Point, registers: list[int]) -> Value:
    [request] = plan_reads({p.name: p}, [p.name]).requests
    assert isinstance(request, RegisterRead) and request.count == len(registers)
    values: dict[str, Value] = {}
    request.decode(Reply(registers=registers), values)
    return values[p.name]


def f32(bits: int) -> float:
    value: float = struct.unpack(">f", bits.to_bytes(4, "big"))[0]
    return value


def f64(bits: int) -> float:
    value: float = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    return value


NO_SWAP: dict[str, Any] = {}
BYTE = {"isByteSwap": True}
WORD = {"isWordSwap": True}
BOTH = {"isByteSwap": True, "isWordSwap": True}
PI32, PI64 = f32(0x40490FDB), f64(0x400921FB54442D18)

# (valueType, attributes, registers as the device holds them, raw value)
ROUND_TRIPS: list[tuple[str, dict[str, Any], list[int], Value]] = [
    ("Int16", NO_SWAP, [0xFFFE], -2),
    ("Int16", BYTE, [0xFFFE], -2),  # 16-bit values ignore swaps, as in EdgeX
    ("Int16", WORD, [0xFFFE], -2),
    ("Uint16", NO_SWAP, [0x1234], 0x1234),
    ("Uint16", BYTE, [0x1234], 0x1234),
    ("Uint16", BOTH, [0x1234], 0x1234),
    ("Int32", NO_SWAP, [0x0102, 0x0304], 0x01020304),
    ("Int32", BYTE, [0x0201, 0x0403], 0x01020304),
    ("Int32", WORD, [0x0304, 0x0102], 0x01020304),
    ("Int32", BOTH, [0x0403, 0x0201], 0x01020304),
    ("Int32", NO_SWAP, [0xFFFF, 0xFFFE], -2),
    ("Int32", WORD, [0xFFFE, 0xFFFF], -2),
    ("Uint32", NO_SWAP, [0xDEAD, 0xBEEF], 0xDEADBEEF),
    ("Uint32", BYTE, [0xADDE, 0xEFBE], 0xDEADBEEF),
    ("Uint32", WORD, [0xBEEF, 0xDEAD], 0xDEADBEEF),
    ("Uint32", BOTH, [0xEFBE, 0xADDE], 0xDEADBEEF),
    ("Int64", NO_SWAP, [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    ("Int64", BYTE, [0x0201, 0x0403, 0x0605, 0x0807], 0x0102030405060708),
    ("Int64", WORD, [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
    ("Int64", BOTH, [0x0807, 0x0605, 0x0403, 0x0201], 0x0102030405060708),
    ("Int64", WORD, [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF], -2),
    ("Uint64", NO_SWAP, [0xFEDC, 0xBA98, 0x7654, 0x3210], 0xFEDCBA9876543210),
    ("Uint64", BYTE, [0xDCFE, 0x98BA, 0x5476, 0x1032], 0xFEDCBA9876543210),
    ("Uint64", WORD, [0x3210, 0x7654, 0xBA98, 0xFEDC], 0xFEDCBA9876543210),
    ("Uint64", BOTH, [0x1032, 0x5476, 0x98BA, 0xDCFE], 0xFEDCBA9876543210),
    ("Float32", NO_SWAP, [0x4049, 0x0FDB], PI32),
    ("Float32", BYTE, [0x4940, 0xDB0F], PI32),
    ("Float32", WORD, [0x0FDB, 0x4049], PI32),
    ("Float32", BOTH, [0xDB0F, 0x4940], PI32),
    ("Float64", NO_SWAP, [0x4009, 0x21FB, 0x5444, 0x2D18], PI64),
    ("Float64", BYTE, [0x0940, 0xFB21, 0x4454, 0x182D], PI64),
    ("Float64", WORD, [0x2D18, 0x5444, 0x21FB, 0x4009], PI64),
    ("Float64", BOTH, [0x182D, 0x4454, 0xFB21, 0x0940], PI64),
    # swaps given as EdgeX's strings
    ("Int32", {"isByteSwap": "false", "isWordSwap": "TRUE"}, [0x0304, 0x0102], 0x01020304),
    # rawType: the registers hold another type than the valueType
    ("Float32", {"rawType": "INT16"}, [0xFF9C], -100.0),
    ("Float32", {"rawType": "Int16"}, [0x00EB], 235.0),  # EdgeX's sample profile spells it so
    ("Float32", {"rawType": "UINT16"}, [0xFF9C], 65436.0),
    ("Float64", {"rawType": "INT32"}, [0xFFFF, 0xFF9C], -100.0),
    ("Float64", {"rawType": "INT32", "isWordSwap": True}, [0xFF9C, 0xFFFF], -100.0),
    ("Float64", {"rawType": "UINT64"}, [0, 0, 0x0001, 0x0000], 65536.0),
    ("Float32", {"rawType": "FLOAT64"}, [0x4009, 0x21FB, 0x5444, 0x2D18], PI64),  # the runtime rounds to float32
    ("Int32", {"rawType": "UINT16"}, [0xFFFF], 0xFFFF),
    ("Int64", {"rawType": "UINT32", "isWordSwap": True}, [0xBEEF, 0xDEAD], 0xDEADBEEF),
    ("Int8", {"rawType": "INT16"}, [0xFFFB], -5),
    # strings: UTF-8, NUL padded
    ("String", {"stringRegisterSize": 3}, [0x6869, 0x2100, 0x0000], "hi!"),
    ("String", {"stringRegisterSize": 2}, [0x6162, 0x6364], "abcd"),
    ("String", {"stringRegisterSize": "1"}, [0xC3A9], "é"),
    ("String", {"stringRegisterSize": 2, "isByteSwap": True}, [0x6869, 0x0000], "hi"),  # swaps ignored, as in EdgeX
]


def _id(row: tuple[str, dict[str, Any], list[int], Value]) -> str:
    value_type, attributes, _, _ = row
    return value_type + "".join(f"-{k}={v}" for k, v in attributes.items())


@pytest.mark.parametrize("row", ROUND_TRIPS, ids=[_id(row) for row in ROUND_TRIPS])
def test_registers_decode_to_the_raw_value_and_it_encodes_back(
    row: tuple[str, dict[str, Any], list[int], Value],
) -> None:
    value_type, attributes, registers, value = row
    p = holding(value_type, 0, **attributes)
    assert p.count == len(registers)
    decoded = decode(p, registers)
    assert decoded == value and type(decoded) is type(value)
    assert p.encode(value) == registers


@pytest.mark.parametrize(
    ("value_type", "registers", "value"),
    [
        ("String", [0x0000, 0x6162, 0x0000], "ab"),  # NULs stripped from both ends, as EdgeX trims
        ("String", [0xFF61], "\ufffda"),  # invalid UTF-8 becomes U+FFFD, as in EdgeX's JSON
        ("Float32", [0x7FC0, 0x0000], math.nan),  # NaN is the runtime's to report
    ],
)
def test_decoding_only(value_type: str, registers: list[int], value: Value) -> None:
    p = holding(value_type, 0, stringRegisterSize=len(registers))
    decoded = decode(p, registers)
    assert decoded == value or (decoded != decoded and value != value)  # NaN


@pytest.mark.parametrize(
    ("attributes", "value", "registers"),
    [
        ({"rawType": "INT16"}, 234.99999999999997, [235]),  # 23.5 / 0.1 in float arithmetic
        ({"rawType": "INT16"}, 2.5, [2]),  # ties to even, as the runtime rounds integer writes
        ({"rawType": "INT16"}, -1.5, [0xFFFE]),
        ({"rawType": "UINT16"}, 7, [7]),
    ],
)
def test_writing_a_float_to_integer_registers_rounds_to_nearest(
    attributes: dict[str, Any], value: Value, registers: list[int]
) -> None:
    assert holding("Float32", 0, **attributes).encode(value) == registers


@pytest.mark.parametrize(
    ("value_type", "attributes", "value", "reason"),
    [
        ("Int16", {}, 40000, "does not fit INT16"),
        ("Uint16", {}, -1, "does not fit UINT16"),
        ("Uint32", {}, 1 << 32, "does not fit UINT32"),
        ("Int64", {}, 1 << 63, "does not fit INT64"),
        ("Float32", {}, 1e39, "does not fit FLOAT32"),
        ("Float32", {"rawType": "INT16"}, 40000.0, "does not fit INT16"),
        ("Float32", {"rawType": "INT16"}, math.inf, "does not fit INT16"),
        ("Float32", {"rawType": "INT16"}, math.nan, "does not fit INT16"),
        ("Int16", {}, True, "is not a number"),
        ("Int16", {}, "7", "is not a number"),
        ("String", {"stringRegisterSize": 2}, "hello", "is 5 bytes long; its 2 registers hold 4"),
        ("String", {"stringRegisterSize": 1}, "éé", "is 4 bytes long"),
        ("String", {"stringRegisterSize": 1}, 7, "is not a String"),
    ],
)
def test_values_that_do_not_fit_are_refused(
    value_type: str, attributes: dict[str, Any], value: Value, reason: str
) -> None:
    with pytest.raises(ResourceFailure, match=f"resource 'r': cannot write .*: it {reason}"):
        holding(value_type, 0, **attributes).encode(value)


# --- Bits ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "register", "value"),
    [("5.0", 0x0001, True), ("5.0", 0xFFFE, False), ("5.15", 0x8000, True), ("5.3", 0x0008, True),
     ("5.3", 0xFFF7, False), (5, 0x0003, True), (5, 0x0002, False)],
)  # fmt: skip
def test_a_bool_reads_one_bit_of_a_register(address: str | int, register: int, value: bool) -> None:
    p = holding("Bool", address)
    assert (p.address, p.count) == (5, 1)
    assert decode(p, [register]) is value


def test_setting_a_register_bit_keeps_the_other_bits() -> None:
    p = holding("Bool", "0.3")
    assert p.set_bit(0xF0F0, True) == 0xF0F8
    assert p.set_bit(0xFFFF, False) == 0xFFF7
    assert p.encode_bool(True) is True
    with pytest.raises(ResourceFailure, match="is not a Bool"):
        p.encode_bool(1)


@pytest.mark.parametrize(
    ("table", "address"),
    [("COILS", 3), ("coils", "3"), ("DISCRETE_INPUTS", 3), ("discretes_input", 3), ("Discrete_Inputs", "0x3")],
)
def test_bools_in_bit_tables(table: str, address: int | str) -> None:
    p = point("Bool", primaryTable=table, startingAddress=address)
    assert (p.address, p.count, p.bit) == (3, 1, None)
    [request] = plan_reads({"r": p}, ["r"]).requests
    assert isinstance(request, BitRead) and (request.address, request.count) == (3, 1)
    values: dict[str, Value] = {}
    request.decode(Reply(bits=[True, False, False, False, False, False, False, False]), values)
    assert values == {"r": True}


@pytest.mark.parametrize(
    ("address", "expected"),
    [(10, (10, 0)), ("10", (10, 0)), ("0x10", (16, 0)), ("10.10", (10, 10)), (10.10, (10, 10)), (10.1, (10, 10)),
     (10.01, (10, 1)), (" 7.2 ", (7, 2)), (65535, (65535, 0))],
)  # fmt: skip
def test_starting_address_forms(address: int | float | str, expected: tuple[int, int]) -> None:
    """EdgeX reads a float address through %.2f: the YAML 10.10 of its sample profile is bit 10."""
    p = holding("Bool", address)
    assert (p.address, p.bit) == expected


# --- Attribute errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value_type", "attributes", "message"),
    [
        ("Int16", {"startingAddress": 0}, "attribute 'primaryTable' is required"),
        (
            "Int16",
            {"primaryTable": "REGISTERS", "startingAddress": 0},
            "attribute 'primaryTable' = 'REGISTERS' is none of",
        ),
        ("Int16", {"primaryTable": "HOLDING_REGISTERS"}, "attribute 'startingAddress' is required"),
        ("Int16", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": "x1"}, "'startingAddress' = 'x1' is not an"),
        ("Int16", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": -1}, "'startingAddress' = -1 is not an"),
        ("Int16", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": True}, "'startingAddress' = True is not"),
        ("Int16", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 65536}, "is beyond 65535"),
        ("Int32", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 65535}, "leaves no room for the 2"),
        ("Int16", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": "1.2"}, "only a Bool resource can"),
        ("Bool", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": "1.16"}, "selects a bit beyond 15"),
        ("Bool", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": "1.2.3"}, "is not an address"),
        ("Bool", {"primaryTable": "COILS", "startingAddress": "1.2"}, "COILS already holds single bits"),
        ("Bool", {"primaryTable": "COILS", "startingAddress": 1, "rawType": "INT16"}, "'rawType' = 'INT16' does not"),
        ("Int16", {"primaryTable": "COILS", "startingAddress": 1}, "'primaryTable' = 'COILS' holds bits"),
        (
            "Int16",
            {"primaryTable": "INPUT_REGISTERS", "startingAddress": 1, "rawType": "INT8"},
            "'rawType' = 'INT8' is",
        ),
        (
            "Int16",
            {"primaryTable": "INPUT_REGISTERS", "startingAddress": 1, "isByteSwap": "yes"},
            "'isByteSwap' = 'yes'",
        ),
        (
            "Int16",
            {"primaryTable": "INPUT_REGISTERS", "startingAddress": 1, "isWordSwap": 1},
            "'isWordSwap' = 1 is not",
        ),
        ("String", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1}, "'stringRegisterSize' is required"),
        ("String", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1, "stringRegisterSize": 0}, "1-123"),
        ("String", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1, "stringRegisterSize": 124}, "1-123"),
        ("String", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1, "stringRegisterSize": "4x"}, "1-123"),
        ("Binary", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1}, "valueType Binary is not supported"),
        ("Int16Array", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1}, "valueType Int16Array is not"),
        ("Uint8", {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 1}, "valueType Uint8 needs a rawType"),
    ],
)
def test_bad_attributes_name_the_device_resource_and_attribute(
    value_type: str, attributes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"^device 'dev' resource 'r': ") as error:
        point(value_type, **attributes)
    assert message in str(error.value)


# --- Planning -----------------------------------------------------------------------------------------------


def spans(points: list[Point], max_gap: int = 8) -> list[tuple[Table, int, int, tuple[str, ...]]]:
    plan = plan_reads({p.name: p for p in points}, [p.name for p in points], max_gap)
    return [(r.table, r.address, r.count, r.names) for r in plan.requests]


def registers_at(*addresses: int, value_type: str = "Uint16", table: str = "HOLDING_REGISTERS") -> list[Point]:
    return [point(value_type, f"{table}-{a}", primaryTable=table, startingAddress=a) for a in addresses]


HR, IR, CO, DI = Table.HOLDING_REGISTERS, Table.INPUT_REGISTERS, Table.COILS, Table.DISCRETE_INPUTS


def test_one_hundred_adjacent_registers_are_one_request() -> None:
    [(table, address, count, names)] = spans(registers_at(*range(100)))
    assert (table, address, count, len(names)) == (HR, 0, 100, 100)


def test_requests_stop_at_125_registers_and_2000_bits() -> None:
    assert [s[1:3] for s in spans(registers_at(*range(300)))] == [(0, 125), (125, 125), (250, 50)]
    assert [s[1:3] for s in spans(registers_at(*range(2001), value_type="Bool", table="COILS"))] == [
        (0, 2000),
        (2000, 1),
    ]
    # a value is never split: the Int64 at 122-125 does not fit after 122 registers
    points = [*registers_at(*range(122)), holding("Int64", 122, "wide")]
    assert [s[1:3] for s in spans(points)] == [(0, 122), (122, 4)]


def test_gaps_up_to_max_gap_are_bridged() -> None:
    assert [s[1:3] for s in spans(registers_at(0, 9))] == [(0, 10)]  # 8 registers between them
    assert [s[1:3] for s in spans(registers_at(0, 10))] == [(0, 1), (10, 1)]  # 9 between them
    assert [s[1:3] for s in spans(registers_at(0, 1, 3), max_gap=0)] == [(0, 2), (3, 1)]
    assert [s[1:3] for s in spans(registers_at(0, 3), max_gap=2)] == [(0, 4)]
    # bit tables bridge 16 bits per register of max_gap: the same reply bytes
    coils = registers_at(0, 129, 259, value_type="Bool", table="COILS")
    assert [s[1:3] for s in spans(coils)] == [(0, 130), (259, 1)]


def test_tables_are_planned_separately_and_in_a_fixed_order() -> None:
    points = [
        *registers_at(1, value_type="Bool", table="DISCRETE_INPUTS"),
        *registers_at(0, table="INPUT_REGISTERS"),
        *registers_at(0),
        *registers_at(0, value_type="Bool", table="COILS"),
    ]
    assert [(s[0], s[1]) for s in spans(points)] == [(CO, 0), (DI, 1), (HR, 0), (IR, 0)]


def test_overlapping_resources_share_a_span() -> None:
    [(_, address, count, names)] = spans(
        [holding("Bool", "4.0"), holding("Bool", "4.7", "b7"), holding("Uint32", 3, "u32")]
    )
    assert (address, count, set(names)) == (3, 2, {"r", "b7", "u32"})


def test_values_decode_at_their_offsets_in_a_coalesced_block() -> None:
    points = {
        "low": holding("Uint16", 10, "low"),
        "pair": holding("Int32", 12, "pair", isWordSwap=True),
        "bit": holding("Bool", "15.1", "bit"),
    }
    [request] = plan_reads(points, ["pair", "bit", "low"]).requests
    assert (request.address, request.count) == (10, 6)
    values: dict[str, Value] = {}
    request.decode(Reply(registers=[7, 0, 0xFFFE, 0xFFFF, 0, 0x0002]), values)
    assert values == {"low": 7, "pair": -2, "bit": True}


def test_unknown_names_are_reported_and_duplicates_read_once() -> None:
    p = holding("Uint16", 0)
    plan = plan_reads({"r": p}, ["r", "nope", "r"])
    assert plan.unknown == ("nope",)
    assert [r.names for r in plan.requests] == [("r",)]
