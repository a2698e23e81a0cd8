"""What an MQTT device's messages carry: JSON values, taken as raw values of the resources' valueTypes.

EdgeX device-mqtt has no resource attributes: a resource is known by its name, which is a topic level of the
device's requests and a key of the JSON objects it exchanges. A `Codec` is compiled per device at `add_device`
(each resource's decoder chosen once) and serves three kinds of message:

* pushed values (`Codec.pushed`): a JSON object of resource -> value, or a bare JSON value when the source is a
  resource. A JSON object pushed to a source that is an Object resource is that resource's value, unless its only
  key is the resource's name. A message is taken whole or not at all: one unknown resource or one value of the
  wrong type makes the whole message `Malformed`, so an event never carries part of what the device sent.
* responses to reads (`Codec.response`): a JSON object holding the resource's value; anything else is a
  `ResourceFailure` of that resource.
* written values (`Codec.set_payload`): ``{"<resource>": value}``, Binary as base64 as in EdgeX's JSON.

The JSON a resource accepts (anything else is the wrong type):

* Int8-Int64, Uint8-Uint64: an integer within the type's range, a whole number such as 21.0, or a decimal string.
* Float32, Float64: a number, or a string such as "21.5", "2.15e+01" or "NaN".
* Bool: true or false, 0 or 1, or a string Go's ParseBool takes ("true", "F", "1", ...).
* String: a string. Binary: a base64 string. Object: any JSON value.
* Arrays: a JSON array of elements as above, or EdgeX's string form of the array.

Values stay raw: the runtime applies the profile's transforms, checks the transformed value and formats readings.
Strings go through the resource's `ValueSpec.parse`, the runtime's own reading of EdgeX's string forms.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, cast

from yurt_iot.runtime.sdk import (
    ConfigurationError,
    ResourceBinding,
    ResourceFailure,
    Value,
    ValueSpec,
    ValueType,
    bits,
    is_float,
    is_integer,
    is_unsigned,
)

__all__ = ["Codec", "Malformed", "Reason", "check_topic_level"]

Decoder = Callable[[object], Value]
"""Turns a JSON value into the raw value of one resource; ValueError names what is wrong with it."""

_SHOWN: Final = 60
"""Characters of a payload or value quoted in an error message."""
_JSON_TYPES: Final = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}


class Reason(StrEnum):
    """Why a pushed message was dropped: the keys of `MqttDriver.malformed`."""

    TOPIC = "topic"
    """The topic is not ``<IncomingTopic>/<device>/<source>``, or not UTF-8."""
    DEVICE = "device"
    """No device of that name uses this broker and IncomingTopic."""
    JSON = "json"
    """The payload is not JSON (binary, truncated, empty)."""
    SHAPE = "shape"
    """An empty object, or a bare value for a source that is no resource."""
    RESOURCE = "resource"
    """A key that is no resource of the device."""
    VALUE = "value"
    """A value of the wrong type for its resource, or out of its type's range."""
    ERROR = "error"
    """Handling the message failed unexpectedly (logged with a traceback)."""


class Malformed(ValueError):
    """A pushed message that is dropped; counted under `reason`."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def check_topic_level(device: str, resource: str) -> None:
    """ConfigurationError unless the resource name can be one topic level, as requests make it."""
    if not resource or any(c in resource for c in "/+#\0"):
        raise ConfigurationError(
            f"device {device!r} resource {resource!r}: an MQTT resource name is a topic level and cannot contain "
            "/, +, # or NUL"
        )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _wrong(spec: ValueSpec, value: object) -> ValueError:
    kind = "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)
    return ValueError(f"{kind} {_shown(value)} is not a valid {spec.value_type}")


def _decoder(spec: ValueSpec) -> Decoder:
    """The decoder of one valueType (see the module docstring)."""
    value_type = spec.value_type
    parse = spec.parse
    if value_type == "Object":
        return lambda value: cast(Value, value)
    if value_type.endswith("Array"):
        element = _decoder(ValueSpec(spec.name, cast(ValueType, value_type.removesuffix("Array"))))

        def array(value: object) -> Value:
            if isinstance(value, list):
                return [element(item) for item in value]
            if isinstance(value, str):
                return parse(value)
            raise _wrong(spec, value)

        return array
    if is_integer(value_type):
        width = bits(value_type)
        low, high = (0, (1 << width) - 1) if is_unsigned(value_type) else (-(1 << width - 1), (1 << width - 1) - 1)

        def integer(value: object) -> Value:
            if type(value) is float and value.is_integer():
                value = int(value)
            if type(value) is int:
                if low <= value <= high:
                    return value
                raise ValueError(f"{value} is out of {value_type} range")
            if isinstance(value, str):
                return parse(value)
            raise _wrong(spec, value)

        return integer
    if is_float(value_type):

        def number(value: object) -> Value:
            if type(value) is float:
                return value
            if type(value) is int:
                try:
                    return float(value)
                except OverflowError:
                    raise ValueError(f"{_shown(value)} is out of {value_type} range") from None
            if isinstance(value, str):
                return parse(value)
            raise _wrong(spec, value)

        return number
    if value_type == "Bool":

        def boolean(value: object) -> Value:
            if type(value) is bool:
                return value
            if type(value) is int and value in (0, 1):
                return bool(value)
            if isinstance(value, str):
                return parse(value)
            raise _wrong(spec, value)

        return boolean
    if value_type == "Binary":

        def binary(value: object) -> Value:
            if isinstance(value, str):
                return parse(value)
            raise _wrong(spec, value)

        return binary

    def string(value: object) -> Value:
        if isinstance(value, str):
            return value
        raise _wrong(spec, value)

    return string


def _json(value: Value) -> object:
    """A raw value as JSON can carry it: Binary as base64, as EdgeX writes it."""
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class Codec:
    """One device's resources: how their values read from and go into JSON."""

    device: str
    decoders: Mapping[str, Decoder]
    objects: frozenset[str]
    """The Object resources, whose value may itself be a JSON object."""

    @classmethod
    def compile(cls, device: str, resources: Mapping[str, ResourceBinding]) -> Codec:
        """ConfigurationError names a resource whose name cannot be a topic level."""
        for name in resources:
            check_topic_level(device, name)
        decoders = {name: _decoder(resource.spec) for name, resource in resources.items()}
        objects = frozenset(name for name, resource in resources.items() if resource.spec.value_type == "Object")
        return cls(device, decoders, objects)

    def pushed(self, source: str, payload: bytes) -> dict[str, Value]:
        """The raw values of a message pushed for `source`; Malformed says why it cannot be taken."""
        try:
            document = json.loads(payload)  # RecursionError: absurdly deep nesting
        except (ValueError, RecursionError):
            raise Malformed(Reason.JSON, f"payload {_shown(payload)} is not JSON") from None
        if isinstance(document, dict) and (source not in self.objects or document.keys() == {source}):
            if not document:
                raise Malformed(Reason.SHAPE, "an empty JSON object carries no value")
            return {name: self._pushed_value(name, value) for name, value in document.items()}
        if source not in self.decoders:
            raise Malformed(
                Reason.SHAPE,
                f"a bare value needs a source that is a resource, and {source!r} is none; send a JSON object",
            )
        return {source: self._pushed_value(source, document)}

    def _pushed_value(self, name: str, value: object) -> Value:
        decode = self.decoders.get(name)
        if decode is None:
            raise Malformed(Reason.RESOURCE, f"the device has no resource {name!r}")
        try:
            return decode(value)
        except ValueError as error:
            raise Malformed(Reason.VALUE, f"resource {name!r}: {error}") from None

    def response(self, resource: str, payload: bytes) -> Value:
        """The raw value in the response to a read of `resource`; ResourceFailure if it holds none."""
        try:
            document = json.loads(payload)  # RecursionError: absurdly deep nesting
        except (ValueError, RecursionError):
            raise self._failure(resource, f"the response {_shown(payload)} is not JSON") from None
        if not isinstance(document, dict) or resource not in document:
            raise self._failure(resource, f"the response {_shown(payload)} has no value for it")
        try:
            return self.decoders[resource](document[resource])
        except ValueError as error:
            raise self._failure(resource, f"the response has {error}") from None

    def set_payload(self, resource: str, value: Value) -> bytes:
        """The payload that writes `value`; ResourceFailure if there is no such resource or JSON cannot carry it."""
        if resource not in self.decoders:
            raise ResourceFailure(f"device {self.device!r} has no resource {resource!r}")
        try:
            return json.dumps({resource: _json(value)}, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as error:
            raise self._failure(resource, f"cannot write {_shown(value)} as JSON: {error}") from None

    def _failure(self, resource: str, reason: str) -> ResourceFailure:
        return ResourceFailure(f"device {self.device!r} resource {resource!r}: {reason}")
