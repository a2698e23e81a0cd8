"""The demo's built-in MQTT broker (`python -m yurt_iot.demo.broker`), as the demo runs it, with paho clients of
both MQTT versions: QoS 1 delivery between them, wildcards, unsubscribing, and a bad client that loses its
connection while the broker serves on."""

from __future__ import annotations

import queue
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from yurt_iot.testing.ports import LOOPBACK

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def broker_port() -> Iterator[int]:
    """The port of a broker process on a free port; it must exit cleanly on SIGTERM at the end."""
    argv = [sys.executable, "-m", "yurt_iot.demo.broker", "--port", "0"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"MQTT broker (built-in) listening on {LOOPBACK}:"), line
        yield int(line.rsplit(":", 1)[1])
        assert proc.poll() is None, "the broker exited while the tests ran"
        proc.terminate()
        assert proc.wait(TIMEOUT) == 0


class Client:
    """A paho client on its own network thread, connected once it is made."""

    def __init__(self, port: int, protocol: mqtt.MQTTProtocolVersion) -> None:
        # The callbacks hold the queues and events, not `self`: without a reference cycle, paho's __del__ closes
        # the socket pair of its network thread as soon as the client is dropped (a cycle leaves that to the GC).
        self.messages = messages = queue.Queue[mqtt.MQTTMessage]()
        self._acks = acks = queue.Queue[list[Any]]()
        connected, self._disconnected = threading.Event(), threading.Event()
        disconnected = self._disconnected
        client_id = f"test-{secrets.token_hex(4)}"
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.paho.on_connect = lambda _c, _u, _f, code, _p: code.is_failure or connected.set()
        self.paho.on_message = lambda _c, _u, message: messages.put(message)
        self.paho.on_subscribe = lambda _c, _u, _mid, codes, _p: acks.put(codes)
        self.paho.on_unsubscribe = lambda _c, _u, _mid, codes, _p: acks.put(codes)
        self.paho.on_disconnect = lambda *_: disconnected.set()
        self.paho.connect(LOOPBACK, port, keepalive=10)
        self.paho.loop_start()
        assert connected.wait(TIMEOUT), "no CONNACK"

    def subscribe(self, *filters: str, qos: int = 1) -> list[int]:
        """The granted QoS (or failure code) of each filter, from the SUBACK."""
        self.paho.subscribe([(f, qos) for f in filters])
        return [code.value for code in self._acks.get(timeout=TIMEOUT)]

    def unsubscribe(self, *filters: str) -> list[int]:
        """The UNSUBACK's reason codes (MQTT 5; 3.1.1's UNSUBACK has none)."""
        self.paho.unsubscribe(list(filters))
        return [code.value for code in self._acks.get(timeout=TIMEOUT)]

    def publish(self, topic: str, payload: bytes, qos: int = 1, properties: Properties | None = None) -> None:
        """Publish and, with QoS 1, wait for the broker's PUBACK."""
        info = self.paho.publish(topic, payload, qos, properties=properties)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()

    def received_until(self, marker: str) -> list[mqtt.MQTTMessage]:
        """The messages received before one on topic `marker` (messages from one publisher keep their order)."""
        received = []
        while (message := self.messages.get(timeout=TIMEOUT)).topic != marker:
            received.append(message)
        return received

    def close(self) -> None:
        self.paho.disconnect()
        self._disconnected.wait(TIMEOUT)  # paho closes its socket before it calls on_disconnect
        self.paho.loop_stop()


@pytest.fixture
def connect(broker_port: int) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5) -> Client:
        clients.append(Client(broker_port, protocol))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def test_qos1_messages_pass_between_mqtt5_and_311_clients(connect: Callable[..., Client]) -> None:
    old, new = connect(mqtt.MQTTv311), connect(mqtt.MQTTv5)
    assert old.subscribe("plant/+/temperature") == [1]
    assert new.subscribe("plant/#") == [1]
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = ("event-id", "42")

    connect(mqtt.MQTTv5).publish("plant/line1/temperature", b"21.5", properties=properties)
    connect(mqtt.MQTTv311).publish("plant/line2/temperature", b"22.0")

    for subscriber in (old, new):
        first, second = (subscriber.messages.get(timeout=TIMEOUT) for _ in range(2))
        assert [(m.topic, m.payload, m.qos) for m in (first, second)] == [
            ("plant/line1/temperature", b"21.5", 1),
            ("plant/line2/temperature", b"22.0", 1),
        ]
    assert new.messages.empty() and old.messages.empty()
    assert first.properties.UserProperty == [("event-id", "42")]  # MQTT 5 properties reach MQTT 5 subscribers


def test_wildcards_match_whole_levels_and_one_copy_is_delivered(connect: Callable[..., Client]) -> None:
    subscriber = connect(mqtt.MQTTv311)
    assert subscriber.subscribe("sensors/+/temp", "alarms/#", "alarms/+", "done", qos=0) == [0, 0, 0, 0]
    everything = connect()
    assert everything.subscribe("#") == [1]

    publisher = connect()
    topics = ["sensors/1/temp", "sensors/1/2/temp", "sensors/temp", "alarms", "alarms/x", "alarms/x/y", "$SYS/x"]
    for topic in [*topics, "done"]:
        publisher.publish(topic, topic.encode())

    expected = ["sensors/1/temp", "alarms", "alarms/x", "alarms/x/y"]  # once each, though two filters match alarms/x
    assert [m.topic for m in subscriber.received_until("done")] == expected
    assert [m.topic for m in everything.received_until("done")] == [t for t in topics if not t.startswith("$")]


def test_unsubscribed_topics_are_no_longer_delivered(connect: Callable[..., Client]) -> None:
    subscriber = connect()
    subscriber.subscribe("room/1", "room/2")
    assert subscriber.unsubscribe("room/1", "room/3") == [0x00, 0x11]  # Success, No subscription existed

    publisher = connect(mqtt.MQTTv311)
    publisher.publish("room/1", b"gone")
    publisher.publish("room/2", b"still here")

    assert subscriber.messages.get(timeout=TIMEOUT).payload == b"still here"
    assert subscriber.messages.empty()


def _raw_connect(
    port: int, level: int, client_id: bytes = b"", will: tuple[bytes, bytes] | None = None, will_properties: bytes = b""
) -> socket.socket:
    """A TCP connection that has sent a CONNECT of MQTT `level` (4: 3.1.1, 5), with a `will` (topic, message) if
    given, and read the CONNACK; for packets paho would not send."""
    sock = socket.create_connection((LOOPBACK, port), timeout=TIMEOUT)
    no_properties = b"\x00" if level == 5 else b""
    client_id = client_id or f"raw-{secrets.token_hex(4)}".encode()
    body = b"\x00\x04MQTT" + bytes((level, 0x06 if will else 0x02, 0, 10)) + no_properties + _string(client_id)
    if will:
        body += (bytes((len(will_properties),)) + will_properties if level == 5 else b"") + _string(will[0])
        body += _string(will[1])
    sock.sendall(bytes((0x10, len(body))) + body)
    connack = sock.recv(64)
    assert connack[:1] == b"\x20" and connack[3] == 0, connack  # accepted
    return sock


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def test_an_invalid_topic_filter_is_refused_in_the_suback(broker_port: int) -> None:
    """paho checks filters itself, so this client writes its SUBSCRIBE by hand."""
    with _raw_connect(broker_port, 5) as sock:
        filters = b"".join(len(f).to_bytes(2, "big") + f + b"\x01" for f in (b"ok/#", b"bad/#/x", b"bad+"))
        body = b"\x00\x07\x00" + filters  # packet id 7, no properties
        sock.sendall(bytes((0x82, len(body))) + body)
        assert sock.recv(64) == b"\x90\x06\x00\x07\x00\x01\x8f\x8f"  # granted QoS 1, Topic Filter invalid (x2)


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(64):
        received += chunk
    return received


@pytest.mark.parametrize(
    ("level", "packet", "answer"),
    [
        (4, b"\x30\xff\xff\xff\xff\x01", b""),  # a remaining length of 5 bytes
        (4, b"\x82\x04\x00\x01\x00\x05", b""),  # SUBSCRIBE whose topic filter runs past the packet
        (5, b"\x80\x02\x00\x01", b"\xe0\x02\x82\x00"),  # SUBSCRIBE with reserved flags: DISCONNECT, Protocol Error
        (5, b"\x34\x06\x00\x01t\x00\x01\x00", b"\xe0\x02\x9b\x00"),  # QoS 2: DISCONNECT, QoS not supported
    ],
)
def test_a_malformed_packet_drops_its_connection_not_the_broker(
    broker_port: int, connect: Callable[..., Client], level: int, packet: bytes, answer: bytes
) -> None:
    with _raw_connect(broker_port, level) as sock:
        sock.sendall(packet)
        assert _read_until_closed(sock) == answer

    subscriber = connect()
    subscriber.subscribe("after")
    connect().publish("after", b"served on")
    assert subscriber.messages.get(timeout=TIMEOUT).payload == b"served on"


def test_a_client_that_does_not_start_with_connect_is_dropped(broker_port: int) -> None:
    with socket.create_connection((LOOPBACK, broker_port), timeout=TIMEOUT) as sock:
        sock.sendall(b"\xc0\x00")  # PINGREQ
        assert _read_until_closed(sock) == b""


def test_a_will_is_published_when_a_client_vanishes_not_when_it_disconnects(
    broker_port: int, connect: Callable[..., Client]
) -> None:
    subscriber = connect()
    subscriber.subscribe("wills/#")
    with _raw_connect(broker_port, 4, will=(b"wills/quiet", b"said goodbye")) as sock:
        sock.sendall(b"\xe0\x00")  # DISCONNECT
        assert _read_until_closed(sock) == b""
    delay_and_reason = b"\x18\x00\x00\x00\x00\x26" + _string(b"reason") + _string(b"vanished")
    with _raw_connect(broker_port, 5, will=(b"wills/vanished", b"gone"), will_properties=delay_and_reason):
        pass  # closed without a DISCONNECT

    will = subscriber.messages.get(timeout=TIMEOUT)  # the first: a will of the quiet client would have come before
    assert (will.topic, will.payload) == ("wills/vanished", b"gone")
    assert will.properties.UserProperty == [("reason", "vanished")]  # and no Will Delay Interval: no PUBLISH property


def test_a_client_id_connecting_again_ends_the_older_connection(broker_port: int) -> None:
    with _raw_connect(broker_port, 4, client_id=b"twice") as older, _raw_connect(broker_port, 4, b"twice") as newer:
        assert _read_until_closed(older) == b""
        newer.sendall(b"\xc0\x00")  # PINGREQ
        assert newer.recv(64) == b"\xd0\x00"  # PINGRESP: the newer one is served
