"""The types that writes and method calls must send, looked up on the server once per connection.

`DataTypes.variant_types` reads the DataType attribute of the variables it does not know yet, all in one Read
request, and maps each data type to the Variant type that encodes it: a built-in type (``ns=0;i=1..25``)
directly, any other (a subtype such as Duration or UtcTime, an enumeration) by walking up its supertypes once per
data type, as asyncua's ``data_type_to_variant_type`` does. `DataTypes.input_types` reads a method's
InputArguments property. An abstract DataType (BaseDataType, Number, Integer, UInteger) names no encoding, so
a variable of such a type cannot be written.

The answers are kept for the life of one connection: a server that restarted may have a new address space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from asyncua.client.client import Client
from asyncua.common.ua_utils import data_type_to_variant_type
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaStatusCodeError
from asyncua.ua.uatypes import NodeId, StatusCode, VariantType

from .errors import ends_connection

__all__ = ["DataTypes", "TypeUnknown"]

_BUILT_IN: Final = frozenset(range(1, 22)) | {23, 25}
"""DataType ids (ns=0) equal to their VariantType: Boolean (1) .. LocalizedText (21), DataValue, DiagnosticInfo."""
_STRUCTURE: Final = 22


@dataclass(frozen=True, slots=True)
class TypeUnknown:
    """Why a variable or method argument has no type this driver can send."""

    reason: str

    def __str__(self) -> str:
        return self.reason


class DataTypes:
    """Variant types of the variables and method arguments of one connection's server."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._variables: dict[NodeId, VariantType | TypeUnknown] = {}
        self._data_types: dict[NodeId, VariantType | TypeUnknown] = {}
        self._methods: dict[NodeId, tuple[VariantType | TypeUnknown, ...] | None] = {}

    async def variant_types(self, nodes: Sequence[NodeId]) -> dict[NodeId, VariantType | TypeUnknown]:
        """The Variant type of each variable, or why it has none that can be written; one Read for the new ones."""
        found = {node: self._variables[node] for node in nodes if node in self._variables}
        unknown = list(dict.fromkeys(node for node in nodes if node not in found))
        if unknown:
            results = await self._client.uaclient.read_attributes(unknown, AttributeIds.DataType)
            for node, result in zip(unknown, results, strict=True):
                status = result.StatusCode or StatusCode()
                if status.is_good() and result.Value is not None and isinstance(result.Value.Value, NodeId):
                    found[node] = self._variables[node] = await self._variant_type(result.Value.Value)
                else:  # not kept: a status is no fact about the type, and the node may exist later
                    found[node] = TypeUnknown(f"its DataType cannot be read: {status.name}")
        return found

    async def input_types(self, method: NodeId) -> tuple[VariantType | TypeUnknown, ...] | None:
        """The types of the method's input arguments, or None if it declares none (no InputArguments property)."""
        if method not in self._methods:
            try:
                arguments_node = await self._client.get_node(method).get_child("0:InputArguments")
                arguments = await arguments_node.read_value()
            except UaStatusCodeError as error:  # no such property (BadNoMatch), or no such method: the call will say
                if ends_connection(error):
                    raise
                self._methods[method] = None
                return None
            self._methods[method] = tuple([await self._variant_type(argument.DataType) for argument in arguments])
        return self._methods[method]

    async def _variant_type(self, data_type: NodeId) -> VariantType | TypeUnknown:
        known = self._data_types.get(data_type)
        if known is not None:
            return known
        found: VariantType | TypeUnknown
        identifier = data_type.Identifier if data_type.NamespaceIndex == 0 else None
        if isinstance(identifier, int) and identifier in _BUILT_IN:
            found = VariantType(identifier)
        elif identifier == _STRUCTURE:
            found = TypeUnknown("its DataType is Structure, which has no fields to write")
        else:
            variant_type = await data_type_to_variant_type(self._client.get_node(data_type))
            found = (
                TypeUnknown(f"its DataType {data_type.to_string()} is abstract and names no encoding")
                if variant_type is VariantType.Variant
                else variant_type
            )
        self._data_types[data_type] = found
        return found
