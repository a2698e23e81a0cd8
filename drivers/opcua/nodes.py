"""What a resource's OPC-UA attributes mean: the variable it reads and writes, or the method it calls, and whether
the server pushes its changes.

A resource is compiled once, at `add_device`, into a `Variable` or a `Method`; a read or write does no parsing.
Attributes (EdgeX device-opc-ua's names):

* ``nodeId``: the variable, as OPC UA Part 6 writes node ids: ``ns=<index>;i=<number>``, ``ns=<index>;s=<text>``,
  ``ns=<index>;g=<guid>`` or ``ns=<index>;b=<base64>``; ``ns=0;`` may be left out (``i=2258``). Namespace URIs
  (``nsu=``) are refused: EdgeX takes indexes only, and an index saves a lookup per session.
* ``objectId`` and ``methodId`` instead of ``nodeId``: a method of an object, called on every read of the resource;
  its first output argument is the value. Such a resource cannot be written (EdgeX calls methods on reads only).
  ``inputMap`` gives the method's input arguments as literal values, as in EdgeX: a YAML list (``[2, 3]``, as
  EdgeX takes it), or a string holding a JSON array (``'[2, 3]'``, ``'["2", "3"]'``) or comma-separated values
  (``"2,3"``); a number alone is one argument. Each argument is
  converted to the DataType the method declares for it (from its InputArguments property, read once per
  session), so ``"2"`` reaches an Int32 argument as Int32 2; a method that declares no arguments gets Strings,
  as EdgeX sends them. EdgeX has no way to pass another resource's value, and neither has this driver.
* ``subscribe`` (a bool or "true"/"false", default false): a monitored item for the variable in a subscription of
  the session, instead of polls: each change (a new value or status) the server reports is pushed as an event
  whose source is the resource's name, with the latest value of each publishing interval. EdgeX device-opc-ua
  subscribes the resources listed in its service configuration (``Writable.Resources``); here it is a resource
  attribute, so that it travels with the profile. The resource can still be read and written on demand.
* ``publishingInterval``: the publishing interval of the resource's subscription, a duration (``250ms``) or a
  number of milliseconds; the device's PublishingInterval property by default. Resources with the same interval
  share one subscription per session.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from asyncua.ua.uaerrors import UaStringParsingError
from asyncua.ua.uatypes import ExpandedNodeId, NodeId

from yurt_iot.runtime.sdk import AttributeScalar, AttributeValue, ConfigurationError, ResourceBinding, parse_duration

__all__ = ["Method", "Point", "Variable", "compile_point"]

_MAX_NAMESPACE: Final = 0xFFFF
_MAX_NUMERIC: Final = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class Variable:
    """A resource read and written through a variable node."""

    name: str
    node_id: NodeId
    subscribe: bool = False
    publishing_interval: float = 0.0
    """Seconds between publish responses, when `subscribe` is set."""


@dataclass(frozen=True, slots=True)
class Method:
    """A resource whose reads call a method."""

    name: str
    object_id: NodeId
    method_id: NodeId
    inputs: tuple[AttributeScalar, ...] = ()
    """The literal input arguments, converted to the method's argument types when it is called."""


Point = Variable | Method


def compile_point(device: str, resource: ResourceBinding, publishing_interval: float) -> Point:
    """The resource's Point; ConfigurationError names the device, the resource and the attribute that is wrong.

    `publishing_interval` (seconds) applies unless the resource sets its own.
    """
    return _Compiler(device, resource.name, resource.attributes).point(publishing_interval)


class _Compiler:
    def __init__(self, device: str, name: str, attributes: Mapping[str, AttributeValue]) -> None:
        self.device, self.name, self.attributes = device, name, attributes

    def fail(self, attribute: str, reason: str) -> ConfigurationError:
        value = self.attributes.get(attribute)
        shown = "" if value is None else f" = {value!r}"
        return ConfigurationError(
            f"device {self.device!r} resource {self.name!r}: attribute {attribute!r}{shown} {reason}"
        )

    def point(self, publishing_interval: float) -> Point:
        if "nodeId" in self.attributes:
            for ignored in ("methodId", "objectId", "inputMap"):
                if ignored in self.attributes:
                    raise self.fail(ignored, "cannot go with nodeId: a resource is a variable or a method")
            subscribe = self.flag("subscribe")
            interval = self.interval(publishing_interval) if subscribe else 0.0
            return Variable(self.name, self.node_id("nodeId"), subscribe, interval)
        if "methodId" not in self.attributes:
            raise ConfigurationError(
                f"device {self.device!r} resource {self.name!r}: needs the attribute nodeId, or methodId and objectId"
            )
        if "objectId" not in self.attributes:
            raise self.fail("methodId", "needs an objectId, the object the method is called on")
        for unfit in ("subscribe", "publishingInterval"):
            if unfit in self.attributes:
                raise self.fail(unfit, "applies to a nodeId only: a method's result cannot be subscribed to")
        return Method(self.name, self.node_id("objectId"), self.node_id("methodId"), self.inputs())

    def node_id(self, attribute: str) -> NodeId:
        value = self.attributes[attribute]
        if not isinstance(value, str):
            raise self.fail(attribute, 'is not a node id string such as "ns=2;i=1001" or "ns=2;s=Temperature"')
        try:
            node_id = NodeId.from_string(value.strip())
        except (UaStringParsingError, ValueError) as error:
            raise self.fail(attribute, 'is not a node id such as "ns=2;i=1001" or "ns=2;s=Temperature"') from error
        if isinstance(node_id, ExpandedNodeId):
            raise self.fail(attribute, "names its namespace by URI (nsu=); use the namespace index (ns=)")
        if not 0 <= node_id.NamespaceIndex <= _MAX_NAMESPACE:
            raise self.fail(attribute, f"has a namespace index beyond {_MAX_NAMESPACE}")
        identifier = node_id.Identifier
        if isinstance(identifier, int) and not 0 <= identifier <= _MAX_NUMERIC:
            raise self.fail(attribute, f"has a numeric identifier beyond {_MAX_NUMERIC}")
        return node_id

    def flag(self, attribute: str) -> bool:
        value = self.attributes.get(attribute, False)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise self.fail(attribute, 'is not true or false (a bool or "true"/"false")')

    def interval(self, default: float) -> float:
        value = self.attributes.get("publishingInterval")
        if value is None:
            return default
        seconds = 0.0
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000
        elif isinstance(value, str):
            try:
                seconds = float(value) / 1000 if value.strip().replace(".", "", 1).isdigit() else parse_duration(value)
            except ValueError:
                seconds = 0.0
        if seconds <= 0:
            raise self.fail("publishingInterval", "is not a positive duration (250ms) or number of milliseconds")
        return seconds

    def inputs(self) -> tuple[AttributeScalar, ...]:
        value = self.attributes.get("inputMap")
        if value is None:
            return ()
        if isinstance(value, list):  # a YAML list, as EdgeX profiles give it
            return tuple(value)
        if not isinstance(value, str):
            return (value,)  # a single argument
        text = value.strip()
        if not text:
            return ()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as error:
                raise self.fail("inputMap", f"is not a JSON array: {error.msg}") from error
            if not isinstance(items, list) or not all(
                isinstance(item, str | int | float | bool) and item is not None for item in items
            ):
                raise self.fail("inputMap", "is not a JSON array of strings, numbers and booleans")
            return tuple(items)
        return tuple(item.strip() for item in text.split(","))
