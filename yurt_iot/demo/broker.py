"""The MQTT broker `yurt-iot demo` runs when Mosquitto is not installed: demo only, never for production.

Why our own: the demo is the product's first command and must work right after ``pip install``, and the
gateway's telemetry publisher needs MQTT 5 (its ``event-id`` user property, PUBACK reason codes) while the MQTT
driver and device simulators speak 3.1.1. No well-kept Python broker speaks both: amqtt, the maintained one,
is 3.1.1 only. So this is a small asyncio broker on 127.0.0.1 that does what the demo's clients use, honestly:

* MQTT 3.1.1 and 5 clients on one listener, messages passing between them (MQTT 5 properties reach MQTT 5
  subscribers as published and are left out for 3.1.1 ones);
* QoS 0 and 1 (QoS 1 publishes are acknowledged once routed; a subscriber gets the lower of the published QoS
  and the highest of its matching subscriptions, once); QoS 2 is refused (MQTT 5 CONNACK: Maximum QoS 1);
* subscriptions with ``+`` and ``#`` (not matching topics that start with ``$``), MQTT 5's No Local;
  UNSUBSCRIBE; keepalive; wills (sent at once: no Will Delay); a client id taking over an older connection;
* clean sessions only: nothing is kept for a client after its connection ends (CONNACK: session present 0),
  and nothing is resent; retained messages go to current subscribers like any other and are not kept;
* no authentication (user names and passwords are ignored), no TLS, no shared subscriptions, subscription
  identifiers or topic aliases (MQTT 5 clients are told in the CONNACK);
* a slow subscriber loses messages rather than making the broker buffer without bound.

A packet that breaks the protocol ends its connection (MQTT 5 clients get a DISCONNECT with the reason), never
the broker. As a process, as the demo starts it::

    python -m yurt_iot.demo.broker --port 1883

prints one line once it listens (the port too, useful with ``--port 0``), then runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

from yurt_iot.demo.mqttwire import (
    MalformedPacket,
    Packet,
    Properties,
    Reader,
    encode_packet,
    encode_string,
    encode_varint,
    read_packet,
)
from yurt_iot.sim.process import until_signalled
from yurt_iot.testing.ports import LOOPBACK

__all__ = ["DemoBroker", "topic_matches", "valid_filter"]

logger = logging.getLogger(__name__)

MAX_PACKET: Final = 1 << 20
"""Largest packet accepted (announced to MQTT 5 clients as Maximum Packet Size)."""
_MAX_BUFFERED: Final = 4 << 20  # bytes waiting to be sent to one client before its messages are dropped
_CONNECT_TIMEOUT: Final = 10.0
_WILL_DELAY: Final = frozenset({0x18})
# MQTT 5 CONNACK properties: Maximum QoS 1; Retain, Subscription Identifiers, Shared Subscriptions not available;
# Session Expiry Interval 0 (nothing kept after the connection); Maximum Packet Size.
_CONNACK_PROPERTIES: Final = bytes(
    (0x24, 1, 0x25, 0, 0x29, 0, 0x2A, 0, 0x11, *bytes(4), 0x27, *MAX_PACKET.to_bytes(4, "big"))
)


def valid_filter(topic_filter: str) -> bool:
    """Whether a subscription's topic filter is well formed: ``#`` only as the last level, ``+`` a whole level."""
    levels = topic_filter.split("/")
    return bool(topic_filter) and all(
        ("#" not in level or (level == "#" and i == len(levels) - 1)) and ("+" not in level or level == "+")
        for i, level in enumerate(levels)
    )


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` matches a valid `topic_filter`; wildcards at the start never match ``$`` topics."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    wanted, levels = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(wanted):
        if level == "#":
            return True
        if i >= len(levels) or level not in ("+", levels[i]):
            return False
    return len(wanted) == len(levels)


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    properties: bytes  # MQTT 5 properties as published (empty from 3.1.1 clients)
    sender: _Session | None


@dataclass(frozen=True, slots=True)
class _Subscription:
    qos: int
    no_local: bool


class _Session:
    """One client connection, from its CONNECT to its end."""

    def __init__(self, broker: DemoBroker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._broker, self._reader, self._writer = broker, reader, writer
        self.client_id = ""
        self.version = 4  # 4: MQTT 3.1.1, 5: MQTT 5
        self.subscriptions: dict[str, _Subscription] = {}
        self._keepalive = 0
        self._will: _Message | None = None
        self._inflight: set[int] = set()  # packet ids of QoS 1 messages sent and not yet acknowledged
        self._next_id = 0
        self._receive_maximum = 65535
        self._max_packet = MAX_PACKET
        #: Messages not sent to this client because it did not keep up.
        self.dropped = 0

    async def serve(self) -> None:
        peer = self._writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                kind, _, body = await read_packet(self._reader, MAX_PACKET)
            if kind != Packet.CONNECT:
                raise MalformedPacket(f"the first packet is {kind.name}, not CONNECT", 0x82)
            if not self._connect(body):
                return
            while True:
                async with asyncio.timeout(self._keepalive * 1.5 or None):
                    kind, flags, body = await read_packet(self._reader, MAX_PACKET)
                if not self._handle(kind, flags, Reader(body)):
                    return  # DISCONNECT
        except MalformedPacket as error:
            logger.warning("client %r (%s) dropped: %s", self.client_id, peer, error)
            if self.version == 5 and self._broker.sessions.get(self.client_id) is self:
                self._send(encode_packet(Packet.DISCONNECT, 0, bytes((error.reason, 0))))
            self._publish_will()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            self._publish_will()
        finally:
            self._broker.forget(self)
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()

    def close(self) -> None:
        """End the connection (a newer one took over its client id, or the broker stops)."""
        self._writer.transport.abort()

    # -- packets from the client -------------------------------------------------------------------

    def _connect(self, body: bytes) -> bool:
        """Handle CONNECT; False if the client was refused (and told so)."""
        r = Reader(body)
        name, level = r.string(), r.byte()
        if name not in ("MQTT", "MQIsdp"):
            raise MalformedPacket(f"protocol name {name!r} is not MQTT")
        if name != "MQTT" or level not in (4, 5):
            self._send(encode_packet(Packet.CONNACK, 0, bytes((0, 1))))  # unacceptable protocol version
            logger.warning("refused a client of protocol %s level %d: only MQTT 3.1.1 and 5", name, level)
            return False
        self.version = level
        flags = r.byte()
        will, will_qos, username, password = flags & 0x04, (flags >> 3) & 3, flags & 0x80, flags & 0x40
        if flags & 0x01 or will_qos == 3 or (not will and flags & 0x38) or (level == 4 and password and not username):
            raise MalformedPacket(f"CONNECT flags 0x{flags:02x} break the protocol", 0x82)
        self._keepalive = r.uint16()
        if level == 5:
            numbers = r.properties().numbers
            self._receive_maximum = numbers.get(0x21, 65535)
            self._max_packet = min(numbers.get(0x27, MAX_PACKET), MAX_PACKET)
            if self._receive_maximum == 0 or self._max_packet == 0:
                raise MalformedPacket("Receive Maximum or Maximum Packet Size of 0", 0x82)
        client_id = r.string()
        if will:
            properties = r.properties(drop=_WILL_DELAY).raw if level == 5 else b""  # no PUBLISH property
            topic, payload = r.string(), r.binary()
            if not topic or "+" in topic or "#" in topic:
                raise MalformedPacket(f"will topic {topic!r} is no valid topic name", 0x90)
            self._will = _Message(topic, payload, min(will_qos, 1), properties, self)
        if username:
            r.string()
        if password:
            r.binary()
        r.end()
        assigned = not client_id
        if assigned and level == 4 and not flags & 0x02:
            self._send(encode_packet(Packet.CONNACK, 0, bytes((0, 2))))  # identifier rejected
            return False
        self.client_id = client_id or f"auto-{secrets.token_hex(8)}"
        logger.info("client %r connected (MQTT %s)", self.client_id, "5" if level == 5 else "3.1.1")
        self._broker.register(self)
        if level == 4:
            self._send(encode_packet(Packet.CONNACK, 0, bytes((0, 0))))
        else:
            properties = _CONNACK_PROPERTIES + (bytes((0x12,)) + encode_string(self.client_id) if assigned else b"")
            self._send(encode_packet(Packet.CONNACK, 0, bytes((0, 0)) + encode_varint(len(properties)) + properties))
        return True

    def _handle(self, kind: Packet, flags: int, r: Reader) -> bool:
        """Handle one packet after CONNECT; False for DISCONNECT."""
        if kind == Packet.PUBLISH:
            self._on_publish(flags, r)
        elif kind == Packet.SUBSCRIBE and flags == 2:
            self._on_subscribe(r)
        elif kind == Packet.UNSUBSCRIBE and flags == 2:
            self._on_unsubscribe(r)
        elif kind == Packet.PUBACK and flags == 0:
            self._inflight.discard(r.uint16())  # an MQTT 5 reason code may follow: the message is done either way
        elif kind == Packet.PINGREQ and flags == 0:
            r.end()
            self._send(encode_packet(Packet.PINGRESP, 0, b""))
        elif kind == Packet.DISCONNECT and flags == 0:
            if self.version == 5 and not r.done and r.byte() == 0x04:  # Disconnect with Will Message
                self._publish_will()
            self._will = None
            return False
        else:
            raise MalformedPacket(f"unexpected {kind.name} packet (flags 0x{flags:x})", 0x82)
        return True

    def _on_publish(self, flags: int, r: Reader) -> None:
        qos = (flags >> 1) & 3
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")
        if qos == 2:
            raise MalformedPacket("QoS 2 is not supported by the demo broker", 0x9B)
        topic = r.string()
        packet_id = r.uint16() if qos else 0
        properties = r.properties() if self.version == 5 else Properties()
        if 0x23 in properties.numbers or 0x0B in properties.numbers:
            raise MalformedPacket("PUBLISH with a topic alias or a subscription identifier", 0x94)
        if not topic or "+" in topic or "#" in topic:
            raise MalformedPacket(f"{topic!r} is no valid topic name", 0x90)
        if qos and packet_id == 0:
            raise MalformedPacket("QoS 1 PUBLISH with packet id 0")
        self._broker.route(_Message(topic, r.rest(), qos, properties.raw, self))
        if qos:
            self._send(encode_packet(Packet.PUBACK, 0, packet_id.to_bytes(2, "big")))

    def _on_subscribe(self, r: Reader) -> None:
        packet_id = r.uint16()
        if self.version == 5 and 0x0B in r.properties().numbers:
            raise MalformedPacket("subscription identifiers are not supported by the demo broker", 0xA1)
        codes = bytearray()
        while not r.done:
            topic_filter, options = r.string(), r.byte()
            qos = options & 3
            if qos == 3 or options & (0xC0 if self.version == 5 else 0xFC) or (options >> 4) & 3 == 3:
                raise MalformedPacket(f"subscription options 0x{options:02x} break the protocol")
            if not valid_filter(topic_filter):
                codes.append(0x8F if self.version == 5 else 0x80)  # Topic Filter invalid / Failure
            elif self.version == 5 and topic_filter.startswith("$share/"):
                codes.append(0x9E)  # Shared Subscriptions not supported
            else:
                self.subscriptions[topic_filter] = _Subscription(min(qos, 1), bool(options & 0x04))
                codes.append(min(qos, 1))
        if not codes:
            raise MalformedPacket("SUBSCRIBE without a topic filter", 0x82)
        self._send(encode_packet(Packet.SUBACK, 0, packet_id.to_bytes(2, "big") + self._no_properties() + codes))

    def _on_unsubscribe(self, r: Reader) -> None:
        packet_id = r.uint16()
        if self.version == 5:
            r.properties()
        codes = bytearray()
        while not r.done:
            codes.append(0x00 if self.subscriptions.pop(r.string(), None) else 0x11)  # 0x11: No subscription existed
        if not codes:
            raise MalformedPacket("UNSUBSCRIBE without a topic filter", 0x82)
        reasons = self._no_properties() + codes if self.version == 5 else b""
        self._send(encode_packet(Packet.UNSUBACK, 0, packet_id.to_bytes(2, "big") + reasons))

    # -- packets to the client ---------------------------------------------------------------------

    def deliver(self, message: _Message) -> None:
        """Send `message` if it matches a subscription (once, at the highest QoS of those that match)."""
        granted = max(
            (s.qos for f, s in self.subscriptions.items()
             if topic_matches(f, message.topic) and not (s.no_local and message.sender is self)),
            default=None,
        )  # fmt: skip
        if granted is None:
            return
        qos = min(granted, message.qos)
        body, packet_id = encode_string(message.topic), 0
        if qos:
            packet_id = self._new_packet_id()
            if not packet_id:  # as many unacknowledged as the client said it takes
                self.dropped += 1
                return
            body += packet_id.to_bytes(2, "big")
        if self.version == 5:
            body += encode_varint(len(message.properties)) + message.properties
        packet = encode_packet(Packet.PUBLISH, qos << 1, body + message.payload)
        if len(packet) > self._max_packet or self._writer.transport.get_write_buffer_size() > _MAX_BUFFERED:
            self.dropped += 1
            if qos:
                self._inflight.discard(packet_id)
            return
        self._send(packet)

    def _new_packet_id(self) -> int:
        """A packet id for a QoS 1 message, noted as in flight; 0 if the client takes no more unacknowledged."""
        if len(self._inflight) >= min(self._receive_maximum, 65535):
            return 0
        while True:
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._inflight:
                self._inflight.add(self._next_id)
                return self._next_id

    def _no_properties(self) -> bytes:
        return b"\x00" if self.version == 5 else b""

    def _send(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    def _publish_will(self) -> None:
        will, self._will = self._will, None
        if will is not None:
            self._broker.route(will)


class DemoBroker:
    """The broker on 127.0.0.1:`port` (0: any free port; see :attr:`port` once started).

    ``async with DemoBroker(port=1883) as broker:`` listens until the block exits, which ends every connection.
    """

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        #: Connected clients by client id.
        self.sessions: dict[str, _Session] = {}

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the broker is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, self._port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions.values()):
            session.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await _Session(self, reader, writer).serve()
        finally:
            self._connections.discard(task)

    def register(self, session: _Session) -> None:
        """Make `session` the one of its client id, ending an older connection with that id."""
        older = self.sessions.get(session.client_id)
        self.sessions[session.client_id] = session
        if older is not None:
            logger.info("client %r connected again: its older connection is closed", session.client_id)
            older.close()

    def forget(self, session: _Session) -> None:
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def route(self, message: _Message) -> None:
        for session in list(self.sessions.values()):
            session.deliver(message)


async def _serve(port: int) -> None:
    async with DemoBroker(port) as broker:
        print(f"MQTT broker (built-in) listening on {LOOPBACK}:{broker.port}", flush=True)
        await until_signalled()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m yurt_iot.demo.broker",
        description="The demo's MQTT 3.1.1 and 5 broker on 127.0.0.1 (demo only); prints a line once it listens, "
        "stops on SIGTERM/SIGINT.",
    )
    parser.add_argument("--port", type=int, required=True, help="0 for any free port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()
