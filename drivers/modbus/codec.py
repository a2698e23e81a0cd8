"""What a resource's Modbus attributes mean: its table, its address, and the bytes of its value.

A `Point` is compiled once per resource at `add_device`, so a poll does no attribute parsing: a register value is
one `struct.Struct.unpack_from` at a fixed offset of the reply's bytes (see `plan.RegisterRead`).

Attributes, as EdgeX device-modbus reads them (case-insensitive names and values where EdgeX's are):

* ``primaryTable``: HOLDING_REGISTERS, INPUT_REGISTERS, COILS, DISCRETE_INPUTS (or the legacy DISCRETES_INPUT).
* ``startingAddress``: the 0-based protocol address, an integer or a decimal/0x string. ``"N.b"`` is bit b (0-15,
  0 = least significant) of register N, for Bool resources. A float from YAML, such as ``10.10``, is read as EdgeX
  reads it, through ``%.2f``: ``10.10`` and ``10.1`` are both bit 10.
* ``rawType``: how the registers hold a number whose valueType differs, e.g. an INT16 register read as Float32
  with scale 0.1. EdgeX has INT16, UINT16 and INT32 (the last for Float64 only); we also accept UINT32, INT64,
  UINT64, FLOAT32 and FLOAT64, for any numeric valueType. An integer raw value read as a Float type becomes a
  float; a float raw value read as an integer type goes to the runtime as is, which refuses one that is not whole.
  Writing a float to an integer rawType rounds to the nearest integer, ties to even.
* ``isByteSwap``, ``isWordSwap`` (bool or "true"/"false"): byte swap exchanges the two bytes inside each 16-bit
  word, word swap reverses the order of the words, for numbers of every width. EdgeX swaps 32-bit values only:
  it ignores both attributes on 16-bit values, and reads 64-bit values big-endian whatever they say
  (device-modbus-go #335). Both are ignored for Bool and String, as in EdgeX.
* ``stringRegisterSize`` (1-123): the registers of a String, required for String. A string is UTF-8, padded with
  NUL bytes; reads strip NULs from both ends, as EdgeX does.

The register count follows from the raw type: 16-bit 1, 32-bit 2, 64-bit 4; a Bool in COILS or DISCRETE_INPUTS
is one bit. Supported valueTypes are Bool, String, Int16-Int64, Uint16-Uint64, Float32 and Float64 (and Int8/Uint8
with a rawType).
"""

from __future__ import annotations

import functools
import math
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from yurt_iot.runtime.sdk import (
    AttributeValue,
    ConfigurationError,
    ResourceBinding,
    ResourceFailure,
    Value,
    ValueType,
    bits,
    is_float,
    is_numeric,
    is_unsigned,
)

__all__ = ["MAX_STRING_REGISTERS", "RAW_TYPES", "Point", "RawType", "Table", "compile_point", "register_struct"]


class Table(StrEnum):
    """A Modbus data table, named as in EdgeX's primaryTable."""

    COILS = "COILS"
    DISCRETE_INPUTS = "DISCRETE_INPUTS"
    HOLDING_REGISTERS = "HOLDING_REGISTERS"
    INPUT_REGISTERS = "INPUT_REGISTERS"

    @property
    def holds_bits(self) -> bool:
        return self in (Table.COILS, Table.DISCRETE_INPUTS)

    @property
    def writable(self) -> bool:
        return self in (Table.COILS, Table.HOLDING_REGISTERS)

    @property
    def read_function(self) -> int:
        """The function code that reads the table: FC1, FC2, FC3 or FC4."""
        return _READ_FUNCTIONS[self]

    @property
    def max_read(self) -> int:
        """Most registers (FC3/FC4) or bits (FC1/FC2) one request may read, from the Modbus specification."""
        return 2000 if self.holds_bits else 125


_READ_FUNCTIONS: Final = {
    Table.COILS: 1,
    Table.DISCRETE_INPUTS: 2,
    Table.HOLDING_REGISTERS: 3,
    Table.INPUT_REGISTERS: 4,
}
_TABLE_NAMES: Final = {**{table.value: table for table in Table}, "DISCRETES_INPUT": Table.DISCRETE_INPUTS}

MAX_STRING_REGISTERS: Final = 123
"""EdgeX's bound on stringRegisterSize: what one FC16 write can carry."""


@dataclass(frozen=True, slots=True)
class RawType:
    """How registers hold a number: its struct format code and width."""

    name: str
    code: str
    registers: int

    @property
    def is_float(self) -> bool:
        return self.code in "fd"


RAW_TYPES: Final = {
    raw.name: raw
    for raw in (
        RawType("INT16", "h", 1),
        RawType("UINT16", "H", 1),
        RawType("INT32", "i", 2),
        RawType("UINT32", "I", 2),
        RawType("INT64", "q", 4),
        RawType("UINT64", "Q", 4),
        RawType("FLOAT32", "f", 2),
        RawType("FLOAT64", "d", 4),
    )
}

_ADDRESS: Final = re.compile(r"([0-9]+|0[xX][0-9a-fA-F]+)(?:\.([0-9]+))?")
_COUNT: Final = re.compile(r"[0-9]{1,3}")
_STRING_NUL: Final = b"\x00"


def _to_float(raw: Any) -> Value:
    return float(raw)


def _decode_string(raw: Any) -> Value:
    # Go strings carry any bytes and EdgeX's JSON turns invalid UTF-8 into U+FFFD: "replace" gives the same text
    text: str = raw.strip(_STRING_NUL).decode("utf-8", "replace")
    return text


def _bit_reader(bit: int) -> Callable[[Any], Value]:
    def read(register: Any) -> Value:
        return bool(register >> bit & 1)

    return read


_BIT_READERS: Final = tuple(_bit_reader(bit) for bit in range(16))


@dataclass(frozen=True, slots=True)
class Point:
    """One resource, compiled: where it is and how its value is laid out.

    For a register value, `layout` unpacks it at byte offset ``2 * (address - block start)`` of a read block's
    bytes, or of the block's byte-swapped copy when `swapped` is set (see `layout_for`), and `convert`, when set,
    turns the unpacked item into the raw value the runtime expects. Points of bit tables have neither.
    """

    name: str
    table: Table
    address: int
    """First register, or the bit, of the value."""
    count: int
    """Registers (or bits, in a bit table) the value spans."""
    value_type: ValueType
    layout: struct.Struct | None = None
    swapped: bool = False
    convert: Callable[[Any], Value] | None = None
    bit: int | None = None
    """For a Bool in a register table: which bit of the register."""
    raw_type: RawType | None = None

    def encode(self, value: Value) -> list[int]:
        """The registers that hold `value`; ResourceFailure if it does not fit. Not for Bools (`encode_bool`)."""
        assert self.layout is not None and self.bit is None, f"{self.name} is no register value"
        if self.raw_type is None:  # String
            return self._encode_string(value)
        number = self._raw_number(value)
        try:
            data = self.layout.pack(number)
        except (struct.error, OverflowError) as error:
            raise self._refuse(value, f"does not fit {self.raw_type.name}") from error
        return list(register_struct(self.count, self.swapped).unpack(data))

    def encode_bool(self, value: Value) -> bool:
        """A coil's state, or a register bit's; ResourceFailure if `value` is not a bool."""
        if not isinstance(value, bool):
            raise self._refuse(value, "is not a Bool")
        return value

    def set_bit(self, register: int, on: bool) -> int:
        """`register` with this point's bit set to `on`, the others kept."""
        mask = 1 << (self.bit or 0)
        return register | mask if on else register & ~mask

    def _raw_number(self, value: Value) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._refuse(value, "is not a number")
        assert self.raw_type is not None
        if isinstance(value, float) and not self.raw_type.is_float:
            if not math.isfinite(value):
                raise self._refuse(value, f"does not fit {self.raw_type.name}")
            return round(value)
        return value

    def _encode_string(self, value: Value) -> list[int]:
        if not isinstance(value, str):
            raise self._refuse(value, "is not a String")
        data = value.encode()
        size = 2 * self.count
        if len(data) > size:
            raise self._refuse(value, f"is {len(data)} bytes long; its {self.count} registers hold {size}")
        return list(register_struct(self.count).unpack(data.ljust(size, _STRING_NUL)))

    def _refuse(self, value: Value, reason: str) -> ResourceFailure:
        return ResourceFailure(f"resource {self.name!r}: cannot write {value!r}: it {reason}")


_REGISTERS: Final = {
    (count, swapped): struct.Struct(f"{'<' if swapped else '>'}{count}H")
    for count in range(1, 126)
    for swapped in (False, True)
}


def register_struct(count: int, swapped: bool = False) -> struct.Struct:
    """Packs `count` registers into their bytes on the wire, or with the two bytes of each register exchanged."""
    return _REGISTERS[count, swapped]


@functools.cache  # a handful of distinct layouts, shared by every point (thousands of devices' resources)
def layout_for(raw: RawType, byte_swap: bool, word_swap: bool) -> tuple[struct.Struct, bool]:
    """The struct that unpacks `raw` with these swaps, and whether it reads the byte-swapped copy of the block.

    A value ABCD (A most significant) sent with byte swap arrives as BA DC; its byte-swapped copy is ABCD again,
    big-endian. Word swap sends CD AB, whose byte-swapped copy DC BA is ABCD little-endian; both swaps send DC BA,
    little-endian as it is. 32- and 64-bit values work the same way (EdgeX gets 64-bit wrong, device-modbus-go
    #335), and no byte is moved per value. 16-bit values ignore both swaps, as EdgeX does, so that an EdgeX
    profile reads the same values here.
    """
    if raw.registers == 1:
        byte_swap = word_swap = False
    order = "<" if word_swap else ">"
    return struct.Struct(order + raw.code), byte_swap != word_swap


@functools.cache
def _text_struct(registers: int) -> struct.Struct:
    return struct.Struct(f"{2 * registers}s")


def compile_point(device: str, resource: ResourceBinding) -> Point:
    """The resource's Point; ConfigurationError names the device, the resource and the attribute that is wrong."""
    return _Compiler(device, resource).point()


class _Compiler:
    def __init__(self, device: str, resource: ResourceBinding) -> None:
        self.device, self.name = device, resource.name
        self.attributes: Mapping[str, AttributeValue] = resource.attributes
        self.value_type: ValueType = resource.spec.value_type

    def fail(self, attribute: str, reason: str) -> ConfigurationError:
        value = self.attributes.get(attribute)
        shown = "" if value is None else f" = {value!r}"
        return ConfigurationError(
            f"device {self.device!r} resource {self.name!r}: attribute {attribute!r}{shown} {reason}"
        )

    def point(self) -> Point:
        table = self.table()
        address, bit = self.address()
        value_type = self.value_type
        if value_type == "Bool":
            return self.bool_point(table, address, bit)
        if bit is not None:
            raise self.fail("startingAddress", "selects a bit (N.b), which only a Bool resource can")
        if table.holds_bits:
            raise self.fail("primaryTable", f"holds bits, but the valueType is {value_type}: use a register table")
        if value_type == "String":
            count = self.string_registers()
            text = _text_struct(count)
            return self.checked(Point(self.name, table, address, count, value_type, text, convert=_decode_string))
        raw = self.raw_type()
        layout, swapped = layout_for(raw, self.flag("isByteSwap"), self.flag("isWordSwap"))
        convert = _to_float if is_float(value_type) and not raw.is_float else None
        point = Point(self.name, table, address, raw.registers, value_type, layout, swapped, convert, raw_type=raw)
        return self.checked(point)

    def bool_point(self, table: Table, address: int, bit: int | None) -> Point:
        if "rawType" in self.attributes:
            raise self.fail("rawType", "does not apply to a Bool")
        if table.holds_bits:
            if bit is not None:
                raise self.fail("startingAddress", f"selects a bit (N.b), but {table} already holds single bits")
            return self.checked(Point(self.name, table, address, 1, "Bool"))
        bit = bit or 0  # EdgeX reads a Bool from the least significant bit of a register
        layout = register_struct(1)
        return self.checked(Point(self.name, table, address, 1, "Bool", layout, convert=_BIT_READERS[bit], bit=bit))

    def checked(self, point: Point) -> Point:
        if point.address + point.count > 0x10000:
            raise self.fail("startingAddress", f"leaves no room for the {point.count} registers of the value")
        return point

    def table(self) -> Table:
        value = self.attributes.get("primaryTable")
        if value is None:
            raise self.fail("primaryTable", "is required")
        table = _TABLE_NAMES.get(str(value).upper())
        if table is None:
            raise self.fail("primaryTable", f"is none of {', '.join(Table)}")
        return table

    def address(self) -> tuple[int, int | None]:
        value = self.attributes.get("startingAddress")
        if value is None:
            raise self.fail("startingAddress", "is required")
        if isinstance(value, bool):
            raise self.fail("startingAddress", "is not an address")
        text = f"{value:.2f}" if isinstance(value, float) else str(value).strip()  # EdgeX's cast of a float
        match = _ADDRESS.fullmatch(text)
        if match is None:
            raise self.fail("startingAddress", 'is not an address N or a register bit "N.b"')
        register, bit = match.groups()
        address = int(register, 0) if register[1:2] in ("x", "X") else int(register)
        if address > 0xFFFF:
            raise self.fail("startingAddress", "is beyond 65535")
        if bit is not None and int(bit) > 15:
            raise self.fail("startingAddress", "selects a bit beyond 15")
        return address, None if bit is None else int(bit)

    def raw_type(self) -> RawType:
        value_type = self.value_type
        if not is_numeric(value_type):
            raise ConfigurationError(
                f"device {self.device!r} resource {self.name!r}: valueType {value_type} is not supported by Modbus "
                "(Bool, String, Int16-Int64, Uint16-Uint64, Float32, Float64)"
            )
        value = self.attributes.get("rawType")
        if value is None:
            width = bits(value_type)
            kind = "FLOAT" if is_float(value_type) else "UINT" if is_unsigned(value_type) else "INT"
            raw = RAW_TYPES.get(f"{kind}{width}")
            if raw is None:
                raise ConfigurationError(
                    f"device {self.device!r} resource {self.name!r}: valueType {value_type} needs a rawType "
                    "(registers are 16 bits wide)"
                )
            return raw
        raw = RAW_TYPES.get(str(value).upper())
        if raw is None:
            raise self.fail("rawType", f"is none of {', '.join(RAW_TYPES)}")
        return raw

    def flag(self, attribute: str) -> bool:
        value = self.attributes.get(attribute, False)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.fail(attribute, 'is not true or false (a bool or "true"/"false")')

    def string_registers(self) -> int:
        value = self.attributes.get("stringRegisterSize")
        if value is None:
            raise self.fail("stringRegisterSize", "is required for a String")
        text = str(value).strip()
        if isinstance(value, bool) or not _COUNT.fullmatch(text) or not 1 <= int(text) <= MAX_STRING_REGISTERS:
            raise self.fail("stringRegisterSize", f"is not a register count 1-{MAX_STRING_REGISTERS}")
        return int(text)
