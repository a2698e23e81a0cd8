"""EdgeX device-profile value semantics, shared by every driver.

A `ValueSpec` is compiled once per device resource from its `ResourceProperties`, so the string properties are
parsed once and not on every reading. It turns what a driver decoded into a reading's value (`to_value`), a
user's write into the raw value for the device (`to_raw`), and a value into the string EdgeX puts in a reading
(`format`, `parse`, `reading_fields`).

EdgeX behaviour we follow (checked in device-sdk-go v4 `internal/transformer/transformresult.go` and
`transformparam.go`, device-sdk-go `internal/application/command.go`, go-mod-core-contracts v4 `dtos/reading.go`):

* Transforms apply to numeric scalars only (Int*, Uint*, Float*). Bool, String, Binary, Object and arrays pass
  through unchanged.
* Reads apply mask -> shift -> base -> scale -> offset. Mask and shift apply to Uint* only; other types ignore
  them, as device-sdk-go does. A positive shift moves bits left and a negative one right. device-sdk-go does this;
  ADR 0011 and device-sdk-c say the opposite. Bits shifted past the type's width are lost, as with Go's
  fixed-width shifts. Base makes the reading base ** raw (`math.Pow(base, raw)`).
* EdgeX publishes a float NaN from a device as the String reading "NaN", and a transformed value out of range
  as "overflow". See `ReadingError.edgex_value`.
* Writes are refused for readWrite "R". Minimum and maximum are checked against the user's value. Then offset,
  scale and base are undone in that order (base by a logarithm), and then shift and mask.
* Floats are formatted as `strconv.FormatFloat(v, 'e', -1, bits)`, integers in decimal, Bool as "true"/"false".

Where we differ from EdgeX, on purpose:

* Integer arithmetic is exact. EdgeX multiplies an integer by the scale truncated to an integer (so scale 0.1
  gives 0). Here a fractional scale or offset on an integer type is exact, and a reading that is not a whole
  number is an overflow. A write rounds to the nearest raw integer, ties to even.
* The type's range is checked once, on the final value, and not after each step. Float32 is computed in float64
  and rounded to float32 once, at the end.
* A write whose value does not fit the mask and shift bit field is refused. EdgeX silently drops the extra bits.
  `to_raw` returns only the field's bits; a driver that must keep the other bits of the register merges them:
  `(current & ~spec.mask) | raw`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any, ClassVar, Final, TypeAlias, cast, get_args

from yurt_iot.api.iot import DeviceResource, ReadWrite, ResourceProperties, ValueType

Value: TypeAlias = bool | int | float | str | bytes | list[Any] | dict[str, Any] | None
"""A reading's value in Python: bool, int, float, str, bytes, a list for arrays, any JSON value for Object."""

Number: TypeAlias = int | float | Fraction
"""A transform operand. Fractions keep integer-typed arithmetic exact, e.g. 30 * 0.1 == 3."""


# --- Value-type facts ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """What one EdgeX valueType means in Python."""

    name: ValueType
    py_type: type
    """Python type of a value: bool, int, float, str, bytes, list (arrays) or object (Object)."""
    bits: int = 0
    """Width of a numeric type or of an array's elements; 0 otherwise."""
    min: int | None = None
    """Smallest value of an integer type."""
    max: int | None = None
    """Largest value of an integer type."""
    element: ValueType | None = None
    """Element type of an array type."""


def _type_info(name: ValueType) -> TypeInfo:
    if name.endswith("Array"):
        element = cast(ValueType, name.removesuffix("Array"))
        return TypeInfo(name, list, _type_info(element).bits, element=element)
    if name.startswith("Uint"):
        width = int(name[4:])
        return TypeInfo(name, int, width, 0, (1 << width) - 1)
    if name.startswith("Int"):
        width = int(name[3:])
        return TypeInfo(name, int, width, -(1 << (width - 1)), (1 << (width - 1)) - 1)
    if name.startswith("Float"):
        return TypeInfo(name, float, int(name[5:]))
    return TypeInfo(name, {"Bool": bool, "String": str, "Binary": bytes}.get(name, object))


VALUE_TYPES: Final[Mapping[ValueType, TypeInfo]] = {name: _type_info(name) for name in get_args(ValueType)}
"""Every valueType of the CRD and its facts."""


def is_integer(value_type: ValueType) -> bool:
    """Whether the type is Int8..Int64 or Uint8..Uint64."""
    return VALUE_TYPES[value_type].min is not None


def is_unsigned(value_type: ValueType) -> bool:
    """Whether the type is Uint8..Uint64, the only types mask and shift apply to."""
    return VALUE_TYPES[value_type].min == 0


def is_float(value_type: ValueType) -> bool:
    """Whether the type is Float32 or Float64."""
    return VALUE_TYPES[value_type].py_type is float


def is_numeric(value_type: ValueType) -> bool:
    """Whether transforms and minimum/maximum apply to the type."""
    return VALUE_TYPES[value_type].py_type in (int, float)


def is_array(value_type: ValueType) -> bool:
    """Whether the type is one of the *Array types."""
    return VALUE_TYPES[value_type].element is not None


def bits(value_type: ValueType) -> int:
    """Width in bits of a numeric type (or of an array's elements); 0 for the other types."""
    return VALUE_TYPES[value_type].bits


def int_range(value_type: ValueType) -> tuple[int, int]:
    """(min, max) of an integer type; ValueError for other types."""
    info = VALUE_TYPES[value_type]
    if info.min is None or info.max is None:
        raise ValueError(f"{value_type} is not an integer type")
    return info.min, info.max


# --- Errors ------------------------------------------------------------------------------------------


class ProfileError(ValueError):
    """A device resource's properties cannot be compiled; the message names the resource and the property."""


class ReadingError(ValueError):
    """A raw value from a device cannot become a reading of its resource."""

    edgex_value: ClassVar[str | None] = None
    """The String reading EdgeX publishes instead, or None when EdgeX fails the read."""


class OverflowReadingError(ReadingError):
    """The value is out of its type's range (or, for an integer type, not whole) after the transforms."""

    edgex_value = "overflow"


class NaNReadingError(ReadingError):
    """The device returned a float NaN."""

    edgex_value = "NaN"


class WriteRefusedError(ValueError):
    """A write refused before reaching the device: read-only, unparsable, out of bounds or out of range."""


# --- Float32 and Go float formatting -----------------------------------------------------------------

# Standard size ('<'): packing a float beyond float32's range raises OverflowError. Native 'f' returns inf.
_F32: Final = struct.Struct("<f")
_U32: Final = struct.Struct("<I")
_pack_f32 = _F32.pack
_unpack_f32 = _F32.unpack


def round_f32(x: float) -> float:
    """`x` rounded to the nearest float32, ties to even; OverflowError if that is beyond float32's range."""
    rounded: float = _unpack_f32(_pack_f32(x))[0]
    return rounded


def _f32_bits(x: float) -> int:
    word: int = _U32.unpack(_pack_f32(x))[0]
    return word


def _f32_from_bits(word: int) -> float:
    value: float = _unpack_f32(_U32.pack(word))[0]
    return value


def parse_float32(text: str) -> float:
    """The float32 nearest to the decimal `text`, like Go's `strconv.ParseFloat(text, 32)`.

    `float()` rounds to float64 first. That can land exactly on a float32 midpoint that the decimal was not
    on, and then the second rounding goes the wrong way. The exact decimal decides those ties.
    """
    wide = float(text)
    rounded = round_f32(wide)
    if rounded != wide and math.isfinite(wide):
        other = _f32_from_bits(_f32_bits(rounded) + (1 if abs(wide) > abs(rounded) else -1))
        if (rounded + other) / 2 == wide and Decimal(text) != Decimal(wide):
            rounded = max(rounded, other) if Decimal(text) > Decimal(wide) else min(rounded, other)
    return rounded


def format_float(x: float, bits: int = 64) -> str:
    """`x` as Go's `strconv.FormatFloat(x, 'e', -1, bits)`, the form of EdgeX's Float32/Float64 readings.

    This is the shortest decimal that reads back as the same float64 (or float32), with at least two exponent
    digits: 23.5 -> "2.35e+01", 0.1 as float32 -> "1e-01", 100.0 -> "1e+02". With bits=32, `x` is first
    rounded to float32.
    """
    shortest = _shortest64 if bits == 64 else _shortest32
    try:
        if 0 < x < math.inf:
            return shortest(x)
        if -math.inf < x < 0:
            return "-" + shortest(-x)
    except OverflowError:  # beyond float32: Go's float32(x) is infinite
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0e+00" if math.copysign(1.0, x) < 0 else "0e+00"
    return "NaN" if x != x else ("+Inf" if x > 0 else "-Inf")


_EXPONENTS: Final = {e: f"e{e:+03d}" for e in range(-330, 330)}  # Go writes at least two exponent digits
_E_FORMATS: Final = tuple(f".{digits - 1}e" for digits in range(10))  # index: significant digits
_F32_MIN_EXP: Final = -125  # math.frexp exponent of the smallest normal float32
_F32_ULPS: Final = {e: math.ldexp(1.0, e - 24) for e in range(_F32_MIN_EXP, 129)}  # float32 spacing by frexp exponent


# Readings repeat (a sensor's value, a register's few thousand states), and a cache hit costs ~1/10 of a miss.
@lru_cache(maxsize=4096)
def _shortest64(a: float) -> str:
    # repr() is the shortest round-trip form (Python and Go both pick the closest one). Its "e" form is already
    # Go's layout; its positional form (exponents -4..15) is laid out here.
    text = repr(a)
    if "e" in text:
        return text
    whole, _, fraction = text.partition(".")
    if whole != "0":
        digits, exponent = (whole + fraction).rstrip("0"), len(whole) - 1
    else:
        digits = fraction.lstrip("0")
        exponent = len(digits) - len(fraction) - 1
        digits = digits.rstrip("0")
    return (digits[0] + "." + digits[1:] if len(digits) > 1 else digits) + _EXPONENTS[exponent]


@lru_cache(maxsize=4096)
def _shortest32(a: float) -> str:
    # Go's shortest form: the fewest digits whose decimal lies in a's rounding interval. If both neighbours do,
    # take the closest. Bounds count (ties to even) when a's mantissa is even.
    a = round_f32(a)
    mantissa, exponent = math.frexp(a)
    ulp = _F32_ULPS[exponent if exponent > _F32_MIN_EXP else _F32_MIN_EXP]
    narrow_below = mantissa == 0.5 and exponent > _F32_MIN_EXP  # a power of two: the gap below is half as wide
    low, high = a - (ulp / 4 if narrow_below else ulp / 2), a + ulp / 2  # exact in float64
    ties_ok = (a / ulp) % 2 == 0
    if narrow_below:
        for digits in range(1, 9):
            nearest = format(a, _E_FORMATS[digits])
            if _within(nearest, low, high, ties_ok):
                return nearest
            if float(nearest) < a:  # the decimal above may still fall in the wider gap above
                up = _next_decimal_up(nearest)
                if _within(up, low, high, ties_ok):
                    return up
        return format(a, _E_FORMATS[9])
    # A symmetric interval: the nearest decimal only gets closer with more digits, so the digit counts that work
    # are [shortest, 9]. Most float32 values need 7 or 8 digits: test down from 8, then bisect what is left.
    found = ""
    for digits in (8, 7, 6):
        candidate = format(a, _E_FORMATS[digits])
        if not _within(candidate, low, high, ties_ok):
            return found or format(a, _E_FORMATS[9])  # 9 significant digits always identify a float32
        found = candidate
    fewest, most = 1, 6
    while fewest < most:
        middle = (fewest + most) // 2
        candidate = format(a, _E_FORMATS[middle])
        if _within(candidate, low, high, ties_ok):
            most, found = middle, candidate
        else:
            fewest = middle + 1
    return found


def _within(text: str, low: float, high: float, ties_ok: bool) -> bool:
    value = float(text)  # rounding is monotonic, so a strict comparison of the float64 holds for the decimal
    if low < value < high:
        return True
    if value != low and value != high:
        return False
    exact, low_d, high_d = Decimal(text), Decimal(low), Decimal(high)
    return low_d < exact < high_d or (ties_ok and exact in (low_d, high_d))


def _next_decimal_up(text: str) -> str:
    mantissa, _, exponent = text.partition("e")
    digits = mantissa.replace(".", "")
    bumped = str(int(digits) + 1)
    carry = len(bumped) - len(digits)
    bumped = bumped.rstrip("0")
    return (bumped[0] + "." + bumped[1:] if len(bumped) > 1 else bumped) + _EXPONENTS[int(exponent) + carry]


# --- Text forms ----------------------------------------------------------------------------------------

_INT_TEXT: Final = re.compile(r"[+-]?[0-9]+")  # Go's strconv.ParseInt(s, 10, n)
_FLOAT_TEXT: Final = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)", re.I)
_NUMBER_PROPERTY: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER_PROPERTY: Final = re.compile(r"[+-]?[0-9]+|0[xX][0-9a-fA-F]+")
_GO_BOOLS: Final = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}  # Go's strconv.ParseBool
_MAX_SHIFT: Final = 64
_U64_MAX: Final = (1 << 64) - 1

# to_value shortcuts, picked once per spec.
_SLOW, _NUMBER, _FAST_INT, _FAST_F64, _FAST_F32, _FAST_SAME = range(6)


def _bound_text(bound: float) -> str:
    return str(int(bound)) if bound.is_integer() else repr(bound)


# --- The compiled spec -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """How one device resource's values are typed, transformed, bounded and written as EdgeX strings.

    Build it with `from_resource` or `from_properties`. Properties that do not apply to the type are dropped,
    like mask on an Int16. Defaults that mean "none" are dropped too: mask 0, shift 0, base 0, scale 1,
    offset 0. A spec without transforms takes the short path in `to_value`.
    """

    name: str
    value_type: ValueType
    read_write: ReadWrite | None = None
    units: str | None = None
    media_type: str | None = None
    assertion: str | None = None
    default_value: Value = None
    """The parsed defaultValue, written when a write gives no value; None when unset."""
    minimum: float | None = None
    maximum: float | None = None
    mask: int | None = None
    shift: int = 0
    base: float | None = None
    scale: Number | None = None
    """A float for float types; an int or an exact Fraction for integer types."""
    offset: Number | None = None
    """Like scale."""

    _info: TypeInfo = field(init=False, repr=False, compare=False)
    _fast: int = field(init=False, repr=False, compare=False)
    _lo: int = field(init=False, repr=False, compare=False)
    _hi: int = field(init=False, repr=False, compare=False)
    _element: ValueSpec | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        info = VALUE_TYPES[self.value_type]
        transforms = (self.mask, self.base, self.scale, self.offset) != (None, None, None, None) or self.shift != 0
        fast = _NUMBER if transforms and info.py_type in (int, float) else _SLOW
        if not transforms:
            if info.py_type is int:
                fast = _FAST_INT
            elif info.py_type is float:
                fast = _FAST_F32 if info.bits == 32 else _FAST_F64
            elif info.py_type in (bool, str, bytes):
                fast = _FAST_SAME
        element = ValueSpec(self.name, info.element) if info.element is not None else None
        object.__setattr__(self, "_info", info)  # the dataclass is frozen
        object.__setattr__(self, "_fast", fast)
        object.__setattr__(self, "_lo", info.min or 0)
        object.__setattr__(self, "_hi", info.max or 0)
        object.__setattr__(self, "_element", element)

    @classmethod
    def from_resource(cls, resource: DeviceResource) -> ValueSpec:
        """The spec of a profile's device resource."""
        return cls.from_properties(resource.name, resource.properties)

    @classmethod
    def from_properties(cls, name: str, properties: ResourceProperties) -> ValueSpec:
        """Parse the string properties once; ProfileError names the resource and the bad property."""
        p = properties
        if p.value_type is None:
            raise ProfileError(f"device resource {name!r}: property 'valueType' is required")
        info = VALUE_TYPES[p.value_type]
        numeric, exact, unsigned = info.py_type in (int, float), info.py_type is int, info.min == 0

        def fail(prop: str, text: str, reason: str) -> ProfileError:
            return ProfileError(f"device resource {name!r}: property {prop!r} = {text!r} {reason}")

        def number(prop: str, text: str | None) -> Fraction | None:
            if not text or not numeric:
                return None
            if not _NUMBER_PROPERTY.fullmatch(text):
                raise fail(prop, text, "is not a number")
            decimal = Decimal(text)
            if math.isinf(float(decimal)) or (decimal and decimal.adjusted() < -330):  # Fraction() would take ages
                raise fail(prop, text, "is out of the float64 range")
            return Fraction(decimal)

        def operand(prop: str, text: str | None, identity: int) -> Number | None:
            value = number(prop, text)
            if value is None or value == identity:
                return None
            if not exact:
                return float(value)
            return value.numerator if value.denominator == 1 else value

        def integer(prop: str, text: str | None) -> int:
            if not text or not unsigned:
                return 0
            if not _INTEGER_PROPERTY.fullmatch(text):
                raise fail(prop, text, "is not an integer (decimal or 0x hex)")
            return int(text, 16) if text[1:2] in ("x", "X") else int(text)

        minimum, maximum = number("minimum", p.minimum), number("maximum", p.maximum)
        if minimum is not None and maximum is not None and minimum > maximum:
            raise fail("minimum", cast(str, p.minimum), f"is greater than maximum {p.maximum!r}")
        mask = integer("mask", p.mask)
        if not 0 <= mask <= _U64_MAX:
            raise fail("mask", cast(str, p.mask), "is not an unsigned 64-bit integer")
        shift = integer("shift", p.shift)
        if abs(shift) > _MAX_SHIFT:
            raise fail("shift", cast(str, p.shift), f"is beyond ±{_MAX_SHIFT} bits")
        base = number("base", p.base)
        scale = operand("scale", p.scale, 1)
        if scale == 0:
            raise fail("scale", cast(str, p.scale), "is 0: every reading would be 0 and no write could be undone")
        spec = cls(
            name,
            p.value_type,
            read_write=p.read_write,
            units=p.units,
            media_type=p.media_type,
            assertion=p.assertion,
            minimum=None if minimum is None else float(minimum),
            maximum=None if maximum is None else float(maximum),
            mask=mask or None,
            shift=shift,
            base=float(base) if base else None,
            scale=scale,
            offset=operand("offset", p.offset, 0),
        )
        if not p.default_value:
            return spec
        try:
            return replace(spec, default_value=spec._user_value(p.default_value))
        except WriteRefusedError as error:
            raise fail("defaultValue", p.default_value, f"is not a valid {p.value_type}") from error

    @property
    def readable(self) -> bool:
        """Whether reads are allowed: everything but readWrite "W", as device-sdk-go checks."""
        return self.read_write != "W"

    @property
    def writable(self) -> bool:
        """Whether writes are allowed: everything but readWrite "R", as device-sdk-go checks."""
        return self.read_write != "R"

    # --- Read path ---------------------------------------------------------------------------------------

    def to_value(self, raw: object) -> Value:
        """The reading's value for `raw`, the value a driver decoded from the device.

        Numbers accept int or float, Bool bool or 0/1, String str or UTF-8 bytes, Binary bytes, arrays a list;
        every type but Object also accepts its EdgeX string form (see `parse`), and Object passes through.
        Raises ReadingError; its OverflowReadingError and NaNReadingError subclasses carry the String reading
        EdgeX publishes instead.
        """
        fast = self._fast
        if fast == _FAST_INT:
            if type(raw) is int and self._lo <= raw <= self._hi:
                return raw
        elif fast == _NUMBER:
            return self._read_number(raw)
        elif fast == _FAST_F32:
            if type(raw) is float and raw == raw:
                try:
                    rounded: float = _unpack_f32(_pack_f32(raw))[0]
                    return rounded
                except OverflowError:
                    pass
        elif fast == _FAST_F64:
            if type(raw) is float and raw == raw:
                return raw
        elif fast == _FAST_SAME and type(raw) is self._info.py_type:
            return cast(Value, raw)
        return self._convert(raw)

    def _convert(self, raw: object) -> Value:
        kind = self._info.py_type
        if kind is int or kind is float:
            return self._read_number(raw)
        if kind is object:
            return cast(Value, raw)
        if isinstance(raw, str):
            return self.parse(raw)
        if kind is bool and raw in (0, 1):
            return bool(raw)
        if kind is str and isinstance(raw, bytes):
            try:
                return raw.decode()
            except UnicodeDecodeError as error:
                raise self._unreadable(raw) from error
        if kind is bytes and isinstance(raw, bytes | bytearray | memoryview):
            return bytes(raw)
        if self._element is not None and isinstance(raw, list | tuple):
            return [self._element.to_value(item) for item in raw]
        raise self._unreadable(raw)

    def _unreadable(self, raw: object) -> ReadingError:
        return ReadingError(
            f"device resource {self.name!r}: {type(raw).__name__} {raw!r} is not a valid {self.value_type}"
        )

    def _read_number(self, raw: object) -> int | float:
        number: int | float
        if type(raw) is int or type(raw) is float:  # exact types first: isinstance() costs more on this path
            number = raw
        elif isinstance(raw, str):
            number = cast(int | float, self.parse(raw))
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
            number = raw
        else:
            raise self._unreadable(raw)
        if self._info.py_type is float:
            try:
                value = float(number)
            except OverflowError as error:
                raise self._overflow(number) from error
            if value != value:
                raise NaNReadingError(f"device resource {self.name!r}: the device returned NaN")
            return self._transform_float(value)
        if isinstance(number, float):
            if not number.is_integer():
                raise self._unreadable(raw)
            number = int(number)
        if not self._lo <= number <= self._hi:
            raise self._overflow(number, "the raw value ")
        return self._transform_int(number)

    def _overflow(self, value: object, what: str = "") -> OverflowReadingError:
        return OverflowReadingError(f"device resource {self.name!r}: {what}{value} is out of {self.value_type} range")

    def _transform_int(self, raw: int) -> int:
        if self.mask is not None:
            raw &= self.mask
        if self.shift > 0:
            raw = (raw << self.shift) & self._hi
        elif self.shift < 0:
            raw >>= -self.shift
        value: Number = raw
        if self.base is not None:
            try:
                value = math.pow(self.base, raw)
            except OverflowError as error:
                raise self._overflow(f"{self.base} ** {raw}") from error
        if self.scale is not None:
            value = value * self.scale
        if self.offset is not None:
            value = value + self.offset
        if type(value) is not int:
            if isinstance(value, Fraction) and value.denominator == 1:
                value = value.numerator
            elif isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                whole = f"{float(value)} is not a whole {self.value_type}"
                raise OverflowReadingError(f"device resource {self.name!r}: {whole}")
        if not self._lo <= value <= self._hi:
            raise self._overflow(value)
        return value

    def _transform_float(self, raw: float) -> float:
        value: Number = raw
        if self.base is not None:
            try:
                value = math.pow(self.base, raw)
            except (OverflowError, ValueError) as error:  # ValueError: a negative base to a fractional power
                raise self._overflow(f"{self.base} ** {raw}") from error
        if self.scale is not None:
            value = value * self.scale
        if self.offset is not None:
            value = value + self.offset
        value = float(value)
        # Any transform that ends non-finite overflows. An infinite raw value with no transform passes, as in EdgeX.
        if not math.isfinite(value) and (math.isfinite(raw) or (self.base, self.scale, self.offset) != (None,) * 3):
            raise self._overflow(value)
        if self._info.bits == 32:
            try:
                rounded: float = _unpack_f32(_pack_f32(value))[0]
            except OverflowError as error:
                raise self._overflow(value) from error
            return rounded
        return value

    # --- Write path --------------------------------------------------------------------------------------

    def to_raw(self, value: Value) -> Value:
        """The raw value to send to the device for a user's write of `value`.

        `value` is a string, as in a Device's desiredValue, or a Python value of the resource's type. Raises
        WriteRefusedError if readWrite is "R", if the value does not parse as the valueType, if it is outside
        minimum/maximum, or if the raw value does not fit the type after the inverse transforms. Integer types
        return the nearest raw integer; Float32 returns a float32 value.
        """
        if not self.writable:
            raise WriteRefusedError(f"device resource {self.name!r} is read-only (readWrite R): cannot write {value!r}")
        user = self._user_value(value)
        if self._info.py_type in (int, float):
            return self._invert(cast(int | float, user), value)
        return user

    def _refuse(self, value: Value, reason: str) -> WriteRefusedError:
        return WriteRefusedError(f"device resource {self.name!r}: cannot write {value!r}: {reason}")

    def _user_value(self, value: Value) -> Value:
        kind, element = self._info.py_type, self._element
        if kind is object:
            return self._user_object(value)
        if kind is str:
            if isinstance(value, str):
                return value
        elif kind is bytes:
            if isinstance(value, bytes):
                return value
            if isinstance(value, str):
                try:
                    return base64.b64decode(value, validate=True)
                except binascii.Error as error:
                    raise self._refuse(value, "not base64") from error
        elif isinstance(value, str):
            try:
                parsed = self.parse(value)
            except OverflowReadingError as error:
                raise self._refuse(value, f"out of {self._info.element or self.value_type} range") from error
            except ReadingError as error:
                raise self._refuse(value, f"not a valid {self.value_type}") from error
            if kind is float:  # bounds compare the decimal as written, not its float32 rounding
                return self._user_float(float(value), value)
            return parsed if element is None else [element.to_raw(item) for item in cast(list[Any], parsed)]
        elif element is not None:
            if isinstance(value, list):
                return [element.to_raw(item) for item in value]
        elif kind is bool:
            if isinstance(value, bool):
                return value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if kind is float:
                return self._user_float(value, value)
            if isinstance(value, float):
                if not value.is_integer():
                    raise self._refuse(value, f"not a whole {self.value_type}")
                value = int(value)
            if not self._lo <= value <= self._hi:
                raise self._refuse(value, f"out of {self.value_type} range [{self._lo}, {self._hi}]")
            return value
        raise self._refuse(value, f"not a valid {self.value_type}")

    def _user_object(self, value: Value) -> Value:
        if not isinstance(value, str):
            return value
        try:
            return cast(Value, json.loads(value))
        except json.JSONDecodeError as error:
            raise self._refuse(value, "not JSON") from error

    def _user_float(self, number: int | float, value: Value) -> float:
        try:
            result = float(number)
            if self._info.bits == 32:
                round_f32(result)
        except OverflowError as error:
            raise self._refuse(value, f"out of {self.value_type} range") from error
        if not math.isfinite(result):
            raise self._refuse(value, "not a finite number")
        return result

    def _invert(self, user: int | float, value: Value) -> int | float:
        if self.minimum is not None and user < self.minimum:
            raise self._refuse(value, f"below the minimum {_bound_text(self.minimum)}")
        if self.maximum is not None and user > self.maximum:
            raise self._refuse(value, f"above the maximum {_bound_text(self.maximum)}")
        raw: Number = user
        if self.offset is not None:
            raw = raw - self.offset
        if self.scale is not None:
            raw = (Fraction(raw) if isinstance(raw, int) else raw) / self.scale  # int / int would be a float
        if self.base is not None:
            try:
                raw = math.log(raw) / math.log(self.base)
            except (ValueError, ZeroDivisionError) as error:
                raise self._refuse(value, f"no raw value reads as it with base {self.base}") from error
        if self._info.py_type is float:
            number = self._user_float(float(raw), value)
            return round_f32(number) if self._info.bits == 32 else number
        if isinstance(raw, float) and not math.isfinite(raw):
            raise self._refuse(value, f"the raw value is out of {self.value_type} range")
        return self._unshift(round(raw), value)

    def _unshift(self, raw: int, value: Value) -> int:
        if self.shift > 0:  # reads shift left, so the bits below the shift are always 0
            if raw & ((1 << self.shift) - 1):
                raise self._refuse(value, f"not a multiple of {1 << self.shift} (shift {self.shift})")
            raw >>= self.shift
        elif self.shift < 0:
            raw <<= -self.shift
        if not self._lo <= raw <= self._hi:
            raise self._refuse(value, f"the raw value {raw} is out of {self.value_type} range")
        if self.mask is not None and raw & ~self.mask:
            raise self._refuse(value, f"the raw value {raw:#x} does not fit the mask {self.mask:#x}")
        return raw

    # --- EdgeX string forms ------------------------------------------------------------------------------

    def format(self, value: Value) -> str:
        """EdgeX's string form of a reading value.

        Bool is "true"/"false", integers are decimal, floats use Go's %e form ("2.35e+01"), Binary is base64.
        Arrays are "[1, 2]", as `fmt.Sprintf("%v")` with ", " between elements. Object and ObjectArray are JSON.
        """
        kind = self._info.py_type
        if kind is float:
            return format_float(cast(float, value), self._info.bits)
        if kind is int:
            return str(value)
        if kind is bool:
            return "true" if value else "false"
        if kind is str:
            return cast(str, value)
        if kind is bytes:
            return base64.b64encode(cast(bytes, value)).decode("ascii")
        element = self._element
        if element is not None and element._info.py_type is not object:
            return "[" + ", ".join(element.format(item) for item in cast(list[Any], value)) + "]"
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)

    def parse(self, text: str) -> Value:
        """The value of EdgeX's string form `text` (the inverse of `format`); raises ReadingError.

        Numbers are parsed as Go's strconv does: decimal integers within the type's range, and floats rounded
        to the type ("+Inf", "-Inf" and "NaN" included).
        """
        kind = self._info.py_type
        if kind is int:
            if not _INT_TEXT.fullmatch(text):
                raise self._unreadable(text)
            number = int(text)
            if not self._lo <= number <= self._hi:
                raise self._overflow(number)
            return number
        if kind is float:
            if not _FLOAT_TEXT.fullmatch(text):
                raise self._unreadable(text)
            try:
                value = parse_float32(text) if self._info.bits == 32 else float(text)
            except OverflowError as error:
                raise self._overflow(text) from error
            if math.isinf(value) and "inf" not in text.lower():
                raise self._overflow(text)
            return value
        if kind is bool:
            if text not in _GO_BOOLS:
                raise self._unreadable(text)
            return _GO_BOOLS[text]
        if kind is str:
            return text
        if kind is bytes:
            try:
                return base64.b64decode(text, validate=True)
            except binascii.Error as error:
                raise self._unreadable(text) from error
        if self._element is not None:
            return self._parse_array(text, self._element)
        try:
            return cast(Value, json.loads(text))
        except json.JSONDecodeError as error:
            raise self._unreadable(text) from error

    def _parse_array(self, text: str, element: ValueSpec) -> list[Any]:
        if element._info.py_type in (object, str):  # JSON, or for StringArray also EdgeX's "[a, b]"
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                items = None
            if isinstance(items, list):
                return [element.to_value(item) for item in items]
        if not (text.startswith("[") and text.endswith("]")) or element._info.py_type is object:
            raise self._unreadable(text)
        inner = text[1:-1].strip()
        return [element.parse(item.strip()) for item in inner.split(",")] if inner else []

    def reading_fields(self, value: Value) -> dict[str, Any]:
        """The value's fields of an EdgeX reading: `value`, or `binaryValue` + `mediaType`, or `objectValue`."""
        kind = self._info.py_type
        if kind is bytes:
            return {"binaryValue": self.format(value), "mediaType": self.media_type or "application/octet-stream"}
        if kind is object or (self._element is not None and self._element._info.py_type is object):
            return {"objectValue": value}
        return {"value": self.format(value)}
