"""EdgeX value semantics: reads, writes, bounds, overflow and the string forms of readings.

Float formatting and float32 parsing vectors come from Go 1.26 `strconv` (FormatFloat(v, 'e', -1, bits) and
ParseFloat(s, 32)), the functions EdgeX uses for reading values.
"""

from __future__ import annotations

import struct
from typing import Any, cast, get_args

import pytest

from yurt_iot.api.iot import DeviceResource, ResourceProperties, ValueType
from yurt_iot.runtime.values import (
    VALUE_TYPES,
    NaNReadingError,
    OverflowReadingError,
    ProfileError,
    ReadingError,
    Value,
    ValueSpec,
    WriteRefusedError,
    bits,
    format_float,
    int_range,
    is_integer,
    parse_float32,
    round_f32,
)


def spec(value_type: ValueType, **properties: str) -> ValueSpec:
    """A read-write resource named SetPoint with the given properties (as strings, as in a profile)."""
    props = ResourceProperties.model_validate({"valueType": value_type, "readWrite": "RW", **properties})
    return ValueSpec.from_properties("SetPoint", props)


def f32(word: int) -> float:
    """The float32 with these IEEE bits."""
    value: float = struct.unpack("<f", word.to_bytes(4, "little"))[0]
    return value


STATUS = {"mask": "0xFF00", "shift": "-8"}  # the high byte of a 16-bit status register
THERMO = {"scale": "0.1", "minimum": "5", "maximum": "35"}  # an Int16 register in tenths of a degree


# --- Reads: raw -> reading value -> EdgeX string -----------------------------------------------------------

READS: list[tuple[str, ValueType, dict[str, str], object, object, str]] = [
    ("bool", "Bool", {}, True, True, "true"),
    ("bool from a coil bit", "Bool", {}, 0, False, "false"),
    ("bool from its string", "Bool", {}, "true", True, "true"),
    ("int8 minimum", "Int8", {}, -128, -128, "-128"),
    ("int16 scale+offset", "Int16", {"scale": "10", "offset": "5"}, -12, -115, "-115"),
    ("int32 offset", "Int32", {"offset": "-40"}, 100, 60, "60"),
    ("int32 fractional scale is exact", "Int32", {"scale": "0.1"}, 30, 3, "3"),
    ("int64 stays exact beyond 2**53", "Int64", {"scale": "2"}, 2**60 + 1, 2**61 + 2, "2305843009213693954"),
    ("int from a string payload", "Int16", {}, "-5", -5, "-5"),
    ("uint8 maximum", "Uint8", {}, 255, 255, "255"),
    ("uint16 scale", "Uint16", {"scale": "0.5"}, 300, 150, "150"),
    ("uint32 offset", "Uint32", {"offset": "1000"}, 5, 1005, "1005"),
    ("uint64 maximum", "Uint64", {}, 2**64 - 1, 2**64 - 1, "18446744073709551615"),
    ("status register high byte", "Uint16", STATUS, 0xAB12, 0xAB, "171"),
    ("status register low nibble", "Uint16", {"mask": "15"}, 0xAB12, 2, "2"),
    ("left shift drops bits past the width", "Uint8", {"shift": "4"}, 0x1F, 0xF0, "240"),
    ("mask is ignored on signed types", "Int16", {"mask": "0x0F"}, -1, -1, "-1"),
    ("base", "Uint8", {"base": "2"}, 7, 128, "128"),
    ("float64 base", "Float64", {"base": "10"}, 3.0, 1000.0, "1e+03"),
    ("float32 base, negative power", "Float32", {"base": "10"}, -1, round_f32(0.1), "1e-01"),
    ("float32 from an int16 register", "Float32", THERMO, 215, 21.5, "2.15e+01"),
    ("float32 negative tenths", "Float32", THERMO, -35, -3.5, "-3.5e+00"),
    ("float32 inexact tenths", "Float32", THERMO, 213, round_f32(21.3), "2.13e+01"),
    ("float32 rounds a float64", "Float32", {}, 0.1, round_f32(0.1), "1e-01"),
    ("float64 scale+offset", "Float64", {"scale": "0.01", "offset": "-40"}, 6500, 25.0, "2.5e+01"),
    ("float64 keeps its precision", "Float64", {}, 0.1, 0.1, "1e-01"),
    ("float64 infinity with no transform", "Float64", {}, float("inf"), float("inf"), "+Inf"),
    ("string", "String", {}, "hello", "hello", "hello"),
    ("string from utf-8 bytes", "String", {}, "café".encode(), "café", "café"),
    ("binary", "Binary", {}, b"\x00\xff", b"\x00\xff", "AP8="),
    ("object", "Object", {}, {"b": [1, 2], "a": "x"}, {"b": [1, 2], "a": "x"}, '{"a":"x","b":[1,2]}'),
    ("uint16 array", "Uint16Array", {}, [1, 2], [1, 2], "[1, 2]"),
    ("float32 array", "Float32Array", {}, [23.5, 0.1], [23.5, round_f32(0.1)], "[2.35e+01, 1e-01]"),
    ("bool array from its string", "BoolArray", {}, "[true, false]", [True, False], "[true, false]"),
    ("string array", "StringArray", {}, ["a", "b"], ["a", "b"], "[a, b]"),
]


@pytest.mark.parametrize(
    ("value_type", "props", "raw", "value", "text"), [r[1:] for r in READS], ids=[r[0] for r in READS]
)
def test_read(value_type: ValueType, props: dict[str, str], raw: object, value: object, text: str) -> None:
    s = spec(value_type, **props)
    got = s.to_value(raw)
    assert got == value
    assert type(got) is type(value)
    assert s.format(got) == text


READ_FAILURES: list[tuple[str, ValueType, dict[str, str], object, type[ReadingError], str]] = [
    ("raw out of its type", "Int8", {}, 200, OverflowReadingError, "the raw value 200 is out of Int8 range"),
    ("base overflows", "Uint8", {"base": "2"}, 8, OverflowReadingError, "256 is out of Uint8 range"),
    ("scale overflows", "Int16", {"scale": "1000"}, 100, OverflowReadingError, "100000 is out of Int16 range"),
    ("not a whole integer", "Int16", {"scale": "0.1"}, 231, OverflowReadingError, "23.1 is not a whole Int16"),
    ("base gives a fraction", "Int8", {"base": "2"}, -1, OverflowReadingError, "0.5 is not a whole Int8"),
    ("beyond float32", "Float32", {"scale": "1e30"}, 1e10, OverflowReadingError, "out of Float32 range"),
    ("beyond float64", "Float64", {"scale": "1e300"}, 1e10, OverflowReadingError, "inf is out of Float64 range"),
    ("negative base, fractional power", "Float64", {"base": "-2"}, 0.5, OverflowReadingError, "-2.0 ** 0.5"),
    ("float32 NaN", "Float32", {}, float("nan"), NaNReadingError, "the device returned NaN"),
    ("NaN with transforms", "Float64", {"scale": "2"}, float("nan"), NaNReadingError, "the device returned NaN"),
    ("fraction for an integer", "Int16", {}, 1.5, ReadingError, "float 1.5 is not a valid Int16"),
    ("bool for a number", "Int16", {}, True, ReadingError, "bool True is not a valid Int16"),
    ("garbage for a number", "Int32", {}, "abc", ReadingError, "str 'abc' is not a valid Int32"),
    ("2 for a bool", "Bool", {}, 2, ReadingError, "int 2 is not a valid Bool"),
    ("bad utf-8", "String", {}, b"\xff", ReadingError, "bytes b'\\xff' is not a valid String"),
    ("bad element", "Uint8Array", {}, [1, 300], OverflowReadingError, "300 is out of Uint8 range"),
]


@pytest.mark.parametrize(
    ("value_type", "props", "raw", "error", "message"),
    [r[1:] for r in READ_FAILURES],
    ids=[r[0] for r in READ_FAILURES],
)
def test_read_failure(
    value_type: ValueType, props: dict[str, str], raw: object, error: type[ReadingError], message: str
) -> None:
    with pytest.raises(ReadingError) as caught:
        spec(value_type, **props).to_value(raw)
    assert type(caught.value) is error
    assert str(caught.value).startswith("device resource 'SetPoint': ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("error", "edgex_value"), [(OverflowReadingError, "overflow"), (NaNReadingError, "NaN"), (ReadingError, None)]
)
def test_failed_readings_become_edgex_strings(error: type[ReadingError], edgex_value: str | None) -> None:
    assert error.edgex_value == edgex_value


# --- Writes: user value -> raw value ---------------------------------------------------------------------

WRITES: list[tuple[str, ValueType, dict[str, str], Any, object]] = [
    ("bool", "Bool", {}, "true", True),
    ("bool as Go parses it", "Bool", {}, "0", False),
    ("bool value", "Bool", {}, False, False),
    ("int8 minimum", "Int8", {}, "-128", -128),
    ("int16 scale+offset undone", "Int16", {"scale": "10", "offset": "5"}, "-115", -12),
    ("int32 fractional scale is exact", "Int32", {"scale": "0.1"}, "3", 30),
    ("int16 tenths", "Int16", {"scale": "0.1"}, 21, 210),
    ("nearest raw integer", "Uint16", {"scale": "3"}, "10", 3),
    ("raw ties go to even", "Uint16", {"scale": "2"}, 5, 2),
    ("uint32 offset undone", "Uint32", {"offset": "1000"}, 1005, 5),
    ("uint64 maximum", "Uint64", {}, "18446744073709551615", 2**64 - 1),
    ("integral float for an integer", "Int16", {}, 7.0, 7),
    ("status register high byte", "Uint16", STATUS, "171", 0xAB00),
    ("left shift undone", "Uint8", {"shift": "4"}, 240, 15),
    ("base undone", "Uint8", {"base": "2"}, "128", 7),
    ("thermostat set point", "Float32", THERMO, "21.5", 215.0),
    ("set point at the maximum", "Float32", THERMO, "35", 350.0),
    ("set point in float32", "Float32", THERMO, 21.3, 213.0),
    ("float64 scale+offset undone", "Float64", {"scale": "0.01", "offset": "-40"}, "25", 6500.0),
    ("float32 rounds", "Float32", {}, "0.1", round_f32(0.1)),
    ("string", "String", {}, "on", "on"),
    ("binary from base64", "Binary", {}, "AP8=", b"\x00\xff"),
    ("object from JSON", "Object", {}, '{"mode": "eco"}', {"mode": "eco"}),
    ("uint16 array from its string", "Uint16Array", {}, "[1, 2]", [1, 2]),
    ("float32 array", "Float32Array", {}, [0.1], [round_f32(0.1)]),
]


@pytest.mark.parametrize(("value_type", "props", "user", "raw"), [w[1:] for w in WRITES], ids=[w[0] for w in WRITES])
def test_write(value_type: ValueType, props: dict[str, str], user: Any, raw: object) -> None:
    got = spec(value_type, **props).to_raw(user)
    assert got == raw
    assert type(got) is type(raw)


WRITE_REFUSALS: list[tuple[str, ValueType, dict[str, str], Any, str]] = [
    ("above the maximum", "Float32", THERMO, "40", "cannot write '40': above the maximum 35"),
    ("below the minimum", "Float32", THERMO, "4.9", "cannot write '4.9': below the minimum 5"),
    ("fractional bound", "Float64", {"maximum": "0.5"}, 0.75, "cannot write 0.75: above the maximum 0.5"),
    ("bounds before transforms", "Int16", {"scale": "10", "maximum": "100"}, "101", "above the maximum 100"),
    ("out of the type", "Int16", {}, "40000", "cannot write '40000': out of Int16 range"),
    ("raw overflow after scaling", "Int16", {"scale": "0.1"}, "3277", "the raw value 32770 is out of Int16 range"),
    ("raw below zero after offset", "Uint16", {"offset": "10"}, "5", "the raw value -5 is out of Uint16 range"),
    ("raw beyond float32", "Float32", {"scale": "1e-30"}, "1e10", "out of Float32 range"),
    ("status byte too big", "Uint16", STATUS, "256", "the raw value 65536 is out of Uint16 range"),
    ("outside the mask", "Uint8", {"mask": "0x0F"}, 16, "the raw value 0x10 does not fit the mask 0xf"),
    ("lost low bits", "Uint8", {"shift": "4"}, 241, "not a multiple of 16 (shift 4)"),
    ("no logarithm", "Uint8", {"base": "2"}, 0, "no raw value reads as it with base 2.0"),
    ("not an integer", "Uint8", {}, "abc", "cannot write 'abc': not a valid Uint8"),
    ("decimal for an integer", "Int16", {}, "1.5", "not a valid Int16"),
    ("fraction for an integer", "Int16", {}, 1.5, "cannot write 1.5: not a whole Int16"),
    ("yes is not a bool", "Bool", {}, "yes", "not a valid Bool"),
    ("number for a bool", "Bool", {}, 1, "not a valid Bool"),
    ("beyond float32", "Float32", {}, "1e39", "out of Float32 range"),
    ("NaN", "Float64", {}, "NaN", "not a finite number"),
    ("not base64", "Binary", {}, "not base64!", "not base64"),
    ("array element out of range", "Uint16Array", {}, "[1, 70000]", "out of Uint16 range"),
    ("bad JSON", "Object", {}, "{", "not JSON"),
    ("number for a string", "String", {}, 5, "not a valid String"),
]


@pytest.mark.parametrize(
    ("value_type", "props", "user", "message"), [w[1:] for w in WRITE_REFUSALS], ids=[w[0] for w in WRITE_REFUSALS]
)
def test_write_refused(value_type: ValueType, props: dict[str, str], user: Any, message: str) -> None:
    with pytest.raises(WriteRefusedError) as refused:
        spec(value_type, **props).to_raw(user)
    assert str(refused.value).startswith("device resource 'SetPoint': ")
    assert message in str(refused.value)


def test_bound_refusal_names_resource_value_and_bound() -> None:
    with pytest.raises(
        WriteRefusedError, match=r"^device resource 'SetPoint': cannot write '40': above the maximum 35$"
    ):
        spec("Float32", **THERMO).to_raw("40")


@pytest.mark.parametrize(
    ("read_write", "readable", "writable"),
    [("R", True, False), ("W", False, True), ("RW", True, True), (None, True, True)],
)
def test_read_write_access(read_write: str | None, readable: bool, writable: bool) -> None:
    s = ValueSpec.from_properties(
        "Alarm", ResourceProperties.model_validate({"valueType": "Bool", "readWrite": read_write})
    )
    assert (s.readable, s.writable) == (readable, writable)
    if writable:
        assert s.to_raw("true") is True
    else:
        with pytest.raises(WriteRefusedError, match=r"^device resource 'Alarm' is read-only \(readWrite R\)"):
            s.to_raw("true")


# --- Round trips -----------------------------------------------------------------------------------------

ROUND_TRIPS: list[tuple[str, ValueType, dict[str, str], list[int]]] = [
    ("int16 scale+offset", "Int16", {"scale": "10", "offset": "5"}, [-3276, -1, 0, 1, 3276]),
    ("int32 tenths", "Int32", {"scale": "0.1"}, [-20, 0, 30, 12340]),
    ("uint32 offset", "Uint32", {"offset": "1000"}, [0, 5, 2**32 - 1001]),
    ("status register", "Uint16", STATUS, [0x0000, 0x0100, 0xAB00, 0xFF00]),
    ("left shift", "Uint8", {"shift": "4"}, [0, 1, 15]),
    ("base", "Uint8", {"base": "2"}, [0, 1, 7]),
    ("float32 from an int16 register", "Float32", {"scale": "0.1"}, list(range(-32768, 32768, 97))),
    ("float64 scale+offset", "Float64", {"scale": "0.01", "offset": "-40"}, [-100000, 0, 6500, 123456]),
]


@pytest.mark.parametrize(("value_type", "props", "raws"), [r[1:] for r in ROUND_TRIPS], ids=[r[0] for r in ROUND_TRIPS])
def test_writing_back_a_reading_restores_the_raw_value(
    value_type: ValueType, props: dict[str, str], raws: list[int]
) -> None:
    s = spec(value_type, **props)
    for raw in raws:
        value = s.to_value(raw)
        # What a user sees is the EdgeX string; writing it back must give the register the same raw value.
        back = s.to_raw(s.format(value))
        assert round(cast(float, back)) == raw, (raw, value, back)
        assert s.parse(s.format(value)) == value


# --- Go float formatting and parsing -----------------------------------------------------------------------

GO_FORMAT: list[tuple[float, int, str]] = [
    (23.5, 64, "2.35e+01"),
    (23.5, 32, "2.35e+01"),
    (0.1, 64, "1e-01"),
    (0.1, 32, "1e-01"),
    (round_f32(0.1), 64, "1.0000000149011612e-01"),
    (1e21, 64, "1e+21"),
    (-0.000123, 64, "-1.23e-04"),
    (-0.000123, 32, "-1.23e-04"),
    (100.0, 64, "1e+02"),
    (0.0001, 64, "1e-04"),
    (1e-05, 64, "1e-05"),
    (1e16, 64, "1e+16"),
    (123456789012345680.0, 64, "1.2345678901234568e+17"),
    (123456789012345680.0, 32, "1.2345679e+17"),
    (0.1 + 0.2, 64, "3.0000000000000004e-01"),
    (0.0, 64, "0e+00"),
    (-0.0, 64, "-0e+00"),
    (float("inf"), 64, "+Inf"),
    (float("-inf"), 32, "-Inf"),
    (float("nan"), 64, "NaN"),
    (5e-324, 64, "5e-324"),
    (1.7976931348623157e308, 64, "1.7976931348623157e+308"),
    (1.7976931348623157e308, 32, "+Inf"),
    (f32(0x7F7FFFFF), 32, "3.4028235e+38"),
    (f32(0x00000001), 32, "1e-45"),
    (f32(0x007FFFFF), 32, "1.1754942e-38"),
    (f32(0x00800000), 32, "1.1754944e-38"),
    (f32(0x4C000000), 32, "3.3554432e+07"),  # 2**25: the gap below a power of two is half the gap above
]


@pytest.mark.parametrize(("value", "bits", "text"), GO_FORMAT, ids=[f"{t}/{b}" for _, b, t in GO_FORMAT])
def test_format_float_matches_go(value: float, bits: int, text: str) -> None:
    assert format_float(value, bits) == text


def test_format_float32_tie_goes_to_even() -> None:
    # 2**-12 = 2.44140625e-04 is exactly halfway between the two 8-digit candidates, and both read back as it.
    # Ties go to even, as Go documents and Go <= 1.25 (Ryu) does. Go 1.26's Dragonbox prints 2.4414063e-04,
    # because its float32 path uses float64's tie threshold (exponent -77, not -35).
    assert format_float(f32(0x39800000), 32) == "2.4414062e-04"


GO_PARSE32: list[tuple[str, int | None]] = [
    ("23.5", 0x41BC0000),
    ("0.1", 0x3DCCCCCD),
    ("3.4028235e38", 0x7F7FFFFF),
    ("3.4028236e38", None),
    ("1e39", None),
    ("7e-46", 0x00000000),
    ("-1e-50", 0x80000000),
    # float() rounds this decimal onto a float32 midpoint that it is not on; a second rounding would go down.
    ("1.034048891067504883e+01", 0x412572A5),
    ("5.13595749263018320e-10", 0x300D2D17),
]


@pytest.mark.parametrize(("text", "word"), GO_PARSE32, ids=[t for t, _ in GO_PARSE32])
def test_parse_float32_matches_go(text: str, word: int | None) -> None:
    if word is None:
        with pytest.raises(OverflowError):
            parse_float32(text)
    else:
        assert struct.pack("<f", parse_float32(text)) == word.to_bytes(4, "little")


PARSES: list[tuple[str, ValueType, str, object]] = [
    ("bool", "Bool", "True", True),
    ("int", "Int64", "-9223372036854775808", -(2**63)),
    ("float32", "Float32", "2.13e+01", round_f32(21.3)),
    ("infinity", "Float64", "+Inf", float("inf")),
    ("binary", "Binary", "AP8=", b"\x00\xff"),
    ("object", "Object", '{"a":1}', {"a": 1}),
    ("empty array", "Int8Array", "[]", []),
    ("string array as JSON", "StringArray", '["a b", "c"]', ["a b", "c"]),
    ("object array", "ObjectArray", '[{"a":1}]', [{"a": 1}]),
]


@pytest.mark.parametrize(("value_type", "text", "value"), [p[1:] for p in PARSES], ids=[p[0] for p in PARSES])
def test_parse(value_type: ValueType, text: str, value: object) -> None:
    assert spec(value_type).parse(text) == value


PARSE_FAILURES: list[tuple[str, ValueType, str, type[ReadingError]]] = [
    ("int out of range", "Int8", "128", OverflowReadingError),
    ("hex is not decimal", "Int32", "0x10", ReadingError),
    ("whitespace", "Int32", " 1", ReadingError),
    ("float64 overflow", "Float64", "1e400", OverflowReadingError),
    ("underscores", "Float64", "1_000.5", ReadingError),
    ("not a bool", "Bool", "yes", ReadingError),
    ("not an array", "Uint8Array", "1, 2", ReadingError),
]


@pytest.mark.parametrize(
    ("value_type", "text", "error"), [p[1:] for p in PARSE_FAILURES], ids=[p[0] for p in PARSE_FAILURES]
)
def test_parse_failure(value_type: ValueType, text: str, error: type[ReadingError]) -> None:
    with pytest.raises(ReadingError) as caught:
        spec(value_type).parse(text)
    assert type(caught.value) is error


# --- Reading fields for the event builder -------------------------------------------------------------------

READING_FIELDS: list[tuple[str, ValueType, dict[str, str], Value, dict[str, object]]] = [
    ("float", "Float32", {}, 23.5, {"value": "2.35e+01"}),
    ("binary", "Binary", {"mediaType": "image/png"}, b"\x89P", {"binaryValue": "iVA=", "mediaType": "image/png"}),
    ("binary without a media type", "Binary", {}, b"", {"binaryValue": "", "mediaType": "application/octet-stream"}),
    ("object", "Object", {}, {"a": 1}, {"objectValue": {"a": 1}}),
    ("object array", "ObjectArray", {}, [{"a": 1}], {"objectValue": [{"a": 1}]}),
    ("array", "Int8Array", {}, [-1, 2], {"value": "[-1, 2]"}),
]


@pytest.mark.parametrize(
    ("value_type", "props", "value", "fields"), [r[1:] for r in READING_FIELDS], ids=[r[0] for r in READING_FIELDS]
)
def test_reading_fields(value_type: ValueType, props: dict[str, str], value: Value, fields: dict[str, object]) -> None:
    assert spec(value_type, **props).reading_fields(value) == fields


# --- Compiling a profile -----------------------------------------------------------------------------------


def test_compiles_a_profile_resource() -> None:
    resource = DeviceResource.model_validate(
        {
            "name": "SetPoint",
            "description": "Wanted room temperature",
            "isHidden": False,
            "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 0, "rawType": "Int16"},
            "properties": {
                "valueType": "Float32",
                "readWrite": "RW",
                "defaultValue": "21.5",
                **THERMO,
                "units": "degC",
            },
        }
    )
    s = ValueSpec.from_resource(resource)
    assert (s.name, s.units, s.minimum, s.maximum, s.scale) == ("SetPoint", "degC", 5.0, 35.0, 0.1)
    assert s.to_raw(s.default_value) == 215.0


DROPPED: list[tuple[str, ValueType, dict[str, str], dict[str, object], object]] = [
    ("mask and shift on a signed type", "Int16", {"mask": "0x0F", "shift": "4"}, {"mask": None, "shift": 0}, -1),
    ("numbers on a string", "String", {"scale": "2", "minimum": "1"}, {"scale": None, "minimum": None}, "7"),
    ("values meaning none", "Uint8", {"mask": "0", "base": "0", "scale": "1", "offset": "0"}, {"scale": None}, 3),
]


@pytest.mark.parametrize(
    ("value_type", "props", "dropped", "raw"), [d[1:] for d in DROPPED], ids=[d[0] for d in DROPPED]
)
def test_properties_that_do_not_apply_are_dropped(
    value_type: ValueType, props: dict[str, str], dropped: dict[str, object], raw: object
) -> None:
    s = spec(value_type, **props)
    assert {name: getattr(s, name) for name in dropped} == dropped
    assert s.to_value(raw) == raw


PROFILE_ERRORS: list[tuple[str, dict[str, str], str]] = [
    ("no value type", {}, "property 'valueType' is required"),
    ("scale not a number", {"value_type": "Int16", "scale": "abc"}, "property 'scale' = 'abc' is not a number"),
    ("scale out of float64", {"value_type": "Float64", "scale": "1e999"}, "'1e999' is out of the float64 range"),
    ("scale 0", {"value_type": "Float32", "scale": "0"}, "property 'scale' = '0' is 0"),
    ("negative mask", {"value_type": "Uint16", "mask": "-1"}, "'mask' = '-1' is not an unsigned 64-bit integer"),
    ("mask too wide", {"value_type": "Uint64", "mask": str(2**64)}, "is not an unsigned 64-bit integer"),
    ("mask not hex", {"value_type": "Uint8", "mask": "0xZZ"}, "'0xZZ' is not an integer (decimal or 0x hex)"),
    ("shift too far", {"value_type": "Uint8", "shift": "65"}, "property 'shift' = '65' is beyond ±64 bits"),
    ("minimum above maximum", {"value_type": "Int8", "minimum": "5", "maximum": "1"}, "is greater than maximum '1'"),
    ("bad default", {"value_type": "Int16", "default_value": "x"}, "'defaultValue' = 'x' is not a valid Int16"),
]


@pytest.mark.parametrize(("props", "message"), [e[1:] for e in PROFILE_ERRORS], ids=[e[0] for e in PROFILE_ERRORS])
def test_bad_properties_are_refused(props: dict[str, str], message: str) -> None:
    # model_construct skips the CRD patterns: a profile synced from EdgeX has not been through them.
    properties = ResourceProperties.model_construct(**props)  # type: ignore[arg-type]
    with pytest.raises(ProfileError, match=r"^device resource 'SetPoint': ") as refused:
        ValueSpec.from_properties("SetPoint", properties)
    assert message in str(refused.value)


# --- Value-type facts ---------------------------------------------------------------------------------------


SAMPLES: dict[ValueType, Value] = {
    "Bool": True,
    "String": "on, off",
    "Binary": b"\x00\x01",
    "Object": {"a": [1, None]},
    "Uint8": 255,
    "Uint16": 65535,
    "Uint32": 2**32 - 1,
    "Uint64": 2**64 - 1,
    "Int8": -128,
    "Int16": -32768,
    "Int32": -(2**31),
    "Int64": -(2**63),
    "Float32": round_f32(-3.4e38),
    "Float64": -1.5e-300,
    "BoolArray": [True, False],
    "StringArray": ["a", "b"],
    "ObjectArray": [{"a": 1}, 2],
    "Uint8Array": [0, 255],
    "Uint16Array": [65535],
    "Uint32Array": [],
    "Uint64Array": [2**64 - 1],
    "Int8Array": [-128, 127],
    "Int16Array": [-1],
    "Int32Array": [7],
    "Int64Array": [-(2**63)],
    "Float32Array": [round_f32(0.1), -0.0],
    "Float64Array": [0.1, 1e300],
}


@pytest.mark.parametrize("value_type", get_args(ValueType))
def test_every_value_type_reads_and_round_trips_its_edgex_string(value_type: ValueType) -> None:
    value = SAMPLES[value_type]
    s = spec(value_type)
    assert VALUE_TYPES[value_type].py_type in (type(value), object)
    assert s.to_value(value) == value
    assert s.parse(s.format(value)) == value
    assert s.to_raw(value) == value


@pytest.mark.parametrize(
    ("value_type", "width", "low", "high"),
    [
        ("Int8", 8, -128, 127),
        ("Int16", 16, -32768, 32767),
        ("Int32", 32, -(2**31), 2**31 - 1),
        ("Int64", 64, -(2**63), 2**63 - 1),
        ("Uint8", 8, 0, 255),
        ("Uint16", 16, 0, 65535),
        ("Uint32", 32, 0, 2**32 - 1),
        ("Uint64", 64, 0, 2**64 - 1),
    ],
)
def test_integer_ranges(value_type: ValueType, width: int, low: int, high: int) -> None:
    assert is_integer(value_type)
    assert bits(value_type) == width
    assert int_range(value_type) == (low, high)


@pytest.mark.parametrize(("value_type", "width"), [("Float32", 32), ("Float64", 64), ("Float32Array", 32), ("Bool", 0)])
def test_non_integer_types(value_type: ValueType, width: int) -> None:
    assert not is_integer(value_type)
    assert bits(value_type) == width
    with pytest.raises(ValueError, match="is not an integer type"):
        int_range(value_type)
