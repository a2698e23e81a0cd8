"""OPC-UA values to the runtime's raw values, and raw values to Variants of a node's own type.

Reading (`to_raw`): the built-in scalars arrive as asyncua decodes them, which is what a profile's valueType expects:
Boolean a bool, the integer types an int, Float and Double a float, String a str, ByteString bytes. Other values
become what a reading can hold: DateTime an ISO 8601 string, Guid its text, LocalizedText its text, QualifiedName
and NodeId their string form, StatusCode its number, an enumeration its number, an array a list and a structure
a dict (for valueType Object). A variable with no value (a Null variant) cannot be read.

Writing (`to_variant`): OPC UA has no implicit conversions, and a server that checks types (most do) refuses an
Int32 written to an Int16 variable with BadTypeMismatch; so a value is sent as a Variant of the variable's own
type, which the driver reads from its DataType attribute once per session (`datatypes`). An integer must fit the
type; a float written to an integer type is rounded to the nearest integer, ties to even, as the Modbus driver
does; Float takes float32's range. Boolean takes a bool, String a str, ByteString bytes, DateTime an ISO 8601
string, and a list becomes an array of the type. Anything else is refused with the reason (ValueError).

Method arguments (`from_literal`): the literal values of an ``inputMap`` are strings or YAML scalars, read as the
argument's type: ``"2"`` is Int32 2 for an Int32 argument, ``"true"`` a Boolean, ``7`` the String "7".
"""

from __future__ import annotations

import dataclasses
import enum
import math
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from asyncua.ua.uatypes import LocalizedText, NodeId, QualifiedName, StatusCode, Variant, VariantType

from yurt_iot.runtime.sdk import Value

__all__ = ["from_literal", "to_raw", "to_variant"]

_INTEGER_RANGES: Final[Mapping[VariantType, tuple[int, int]]] = {
    VariantType.SByte: (-(2**7), 2**7 - 1),
    VariantType.Byte: (0, 2**8 - 1),
    VariantType.Int16: (-(2**15), 2**15 - 1),
    VariantType.UInt16: (0, 2**16 - 1),
    VariantType.Int32: (-(2**31), 2**31 - 1),
    VariantType.UInt32: (0, 2**32 - 1),
    VariantType.Int64: (-(2**63), 2**63 - 1),
    VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX: Final = 3.4028234663852886e38


def to_raw(value: Any) -> Value:
    """The raw value of a variable's value; ValueError if it is Null or of a kind a reading cannot hold."""
    if value is None:
        raise ValueError("the variable has no value (Null)")
    return _plain(value)


def _plain(value: Any) -> Value:
    if isinstance(value, enum.Enum):  # before int: ua enumerations are IntEnums
        return _plain(value.value)
    if isinstance(value, bool | int | float | str | bytes) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, LocalizedText):
        return value.Text or ""
    if isinstance(value, NodeId | QualifiedName):
        text: str = value.to_string()
        return text
    if isinstance(value, StatusCode):
        return int(value.value)
    if isinstance(value, Variant):
        return _plain(value.Value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    raise ValueError(f"a {type(value).__name__} value cannot become a reading")


def to_variant(value: Value, variant_type: VariantType) -> Variant:
    """`value` as a Variant of `variant_type`; ValueError says why it cannot be one."""
    encode = _ENCODERS.get(variant_type)
    if encode is None:
        raise ValueError(f"writing a {variant_type.name} is not supported")
    if isinstance(value, list):
        return Variant([encode(item, variant_type) for item in value], variant_type, is_array=True)
    return Variant(encode(value, variant_type), variant_type)


def from_literal(value: str | int | float | bool, variant_type: VariantType) -> Value:
    """A literal argument value as the raw value of `variant_type` (for `to_variant`); ValueError if it is not one."""
    if isinstance(value, str) and variant_type is not VariantType.String:
        text = value.strip()
        if variant_type is VariantType.Boolean and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if variant_type in _INTEGER_RANGES:
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{value!r} is not an integer") from None
        if variant_type in (VariantType.Float, VariantType.Double):
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a number") from None
        if variant_type is VariantType.ByteString:
            return text.encode()
    if variant_type is VariantType.String and not isinstance(value, str):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return value


def _integer(value: Any, variant_type: VariantType) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} does not fit {variant_type.name}")
        number = round(value)
    else:
        number = value
    low, high = _INTEGER_RANGES[variant_type]
    if not low <= number <= high:
        raise ValueError(f"{value!r} does not fit {variant_type.name} ({low}..{high})")
    return number


def _float(value: Any, variant_type: VariantType) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    number = float(value)
    if variant_type is VariantType.Float and math.isfinite(number) and abs(number) > _FLOAT32_MAX:
        raise ValueError(f"{value!r} does not fit Float")
    return number


def _boolean(value: Any, _variant_type: VariantType) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not a Boolean")
    return value


def _string(value: Any, _variant_type: VariantType) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a String")
    return value


def _bytes(value: Any, _variant_type: VariantType) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError(f"{value!r} is not a ByteString")
    return value


def _datetime(value: Any, _variant_type: VariantType) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an ISO 8601 date and time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise ValueError(f"{value!r} is not an ISO 8601 date and time") from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_ENCODERS: Final[Mapping[VariantType, Callable[[Any, VariantType], Any]]] = {
    VariantType.Boolean: _boolean,
    **dict.fromkeys(_INTEGER_RANGES, _integer),
    VariantType.Float: _float,
    VariantType.Double: _float,
    VariantType.String: _string,
    VariantType.ByteString: _bytes,
    VariantType.DateTime: _datetime,
}
