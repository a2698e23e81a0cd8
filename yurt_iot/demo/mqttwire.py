"""The MQTT 3.1.1 and 5 wire format, as far as the demo's built-in broker (`yurt_iot.demo.broker`) needs it:
framing packets, reading their fields with bounds checks, and writing the few fields a broker sends.

Everything a peer sends is checked as it is read: a field that runs past the end of its packet, a string that is
not UTF-8, an unknown MQTT 5 property or a length over the limit raise `MalformedPacket` with the MQTT 5 reason
code to disconnect with, so that a bad client loses its connection and nothing else.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

__all__ = [
    "MalformedPacket",
    "Packet",
    "Properties",
    "Reader",
    "encode_packet",
    "encode_string",
    "encode_varint",
    "read_packet",
]


class Packet(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class MalformedPacket(ValueError):
    """A packet the broker cannot accept; `reason` is the MQTT 5 reason code its DISCONNECT gives."""

    def __init__(self, message: str, reason: int = 0x81) -> None:  # 0x81: Malformed Packet
        super().__init__(message)
        self.reason = reason


# MQTT 5 property identifier -> how its value is encoded (MQTT 5 section 2.2.2.2).
_BYTE, _UINT16, _UINT32, _VARINT, _STRING, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES: Final = {
    0x01: _BYTE, 0x02: _UINT32, 0x03: _STRING, 0x08: _STRING, 0x09: _BINARY, 0x0B: _VARINT, 0x11: _UINT32,
    0x12: _STRING, 0x13: _UINT16, 0x15: _STRING, 0x16: _BINARY, 0x17: _BYTE, 0x18: _UINT32, 0x19: _BYTE,
    0x1A: _STRING, 0x1C: _STRING, 0x1F: _STRING, 0x21: _UINT16, 0x22: _UINT16, 0x23: _UINT16, 0x24: _BYTE,
    0x25: _BYTE, 0x26: _PAIR, 0x27: _UINT32, 0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip


@dataclass(frozen=True)
class Properties:
    """The MQTT 5 properties of a packet: the numeric ones by identifier (for the broker's checks) and the
    encoded block without its length (forwarded as it came, as MQTT 5 wants user properties to be)."""

    numbers: dict[int, int] = field(default_factory=dict)
    raw: bytes = b""


async def read_packet(reader: asyncio.StreamReader, max_size: int) -> tuple[Packet, int, bytes]:
    """The next packet: its type, the flags of its fixed header and its body. IncompleteReadError at the end of
    the stream; MalformedPacket for an unknown type or a length over `max_size` (before reading the body)."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            raise MalformedPacket("the remaining length has more than 4 bytes")
    if first >> 4 == 0:
        raise MalformedPacket("packet type 0 is reserved")
    if length > max_size:
        raise MalformedPacket(f"a packet of {length} bytes is over the limit of {max_size}", 0x95)
    return Packet(first >> 4), first & 0x0F, await reader.readexactly(length)


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def encode_packet(kind: Packet, flags: int, body: bytes) -> bytes:
    return bytes((kind << 4 | flags,)) + encode_varint(len(body)) + body


class Reader:
    """Reads the fields of one packet body in order; MalformedPacket when one runs past the end."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    @property
    def done(self) -> bool:
        return self._pos >= len(self._data)

    def take(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise MalformedPacket("a field runs past the end of its packet")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def rest(self) -> bytes:
        return self.take(len(self._data) - self._pos)

    def byte(self) -> int:
        return self.take(1)[0]

    def uint16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def uint32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 21:
                raise MalformedPacket("a variable byte integer has more than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.uint16())

    def string(self) -> str:
        try:
            text = self.binary().decode()
        except UnicodeDecodeError:
            raise MalformedPacket("a string is not valid UTF-8") from None
        if "\x00" in text:
            raise MalformedPacket("a string contains U+0000")
        return text

    def properties(self, drop: frozenset[int] = frozenset()) -> Properties:
        """An MQTT 5 property block (length first); strings and pairs are checked but only numbers kept, and the
        properties in `drop` are left out of the encoded block."""
        block = Reader(self.take(self.varint()))
        numbers: dict[int, int] = {}
        kept = bytearray()
        while not block.done:
            start = block._pos
            identifier = block.varint()
            kind = _PROPERTY_TYPES.get(identifier)
            if kind is None:
                raise MalformedPacket(f"unknown property 0x{identifier:02x}")
            if kind in (_STRING, _PAIR):
                for _ in range(1 + (kind == _PAIR)):
                    block.string()
            elif kind == _BINARY:
                block.binary()
            else:
                read = {_BYTE: block.byte, _UINT16: block.uint16, _UINT32: block.uint32, _VARINT: block.varint}
                numbers[identifier] = read[kind]()
            if identifier not in drop:
                kept += block._data[start : block._pos]
        return Properties(numbers, bytes(kept))

    def end(self) -> None:
        """MalformedPacket if bytes are left over: a packet longer than its fields."""
        if not self.done:
            raise MalformedPacket("a packet has bytes after its last field")
