"""MqttPublisher against a real Mosquitto: order, payloads, outages, PUBACK gating, TLS, passwords, QoS 0.

A paho subscriber on its own network thread records what the broker delivers (with QoS 0, so that it
never has PUBACKs in flight when the broker is killed under it). Each test runs its asyncio code with
``asyncio.run()`` and waits for conditions with deadlines.

Brokers come back empty (no persistence): a subscriber must be subscribed again before the publisher
publishes anything after a restart, or the broker would drop those messages for lack of subscribers.
So after a restart the tests block the event loop (on purpose: the publisher runs on it) until the
subscriber has its SUBACK, which makes that order certain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from yurt_iot.runtime.backoff import Backoff
from yurt_iot.runtime.publisher import EVENT_ID_PROPERTY, POISON_STRIKES, MqttPublisher, MqttSettings
from yurt_iot.runtime.spool import Spool, SpoolError
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.waiting import async_wait_for, wait_for

TIMEOUT = 20.0
USER, PASSWORD = "gateway", "s3cret-" + secrets.token_hex(4)
FAST_BACKOFF = Backoff(initial=0.05, cap=0.3)


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Received:
    event_id: int
    topic: str
    payload: bytes


class Subscriber:
    """A paho MQTT 5 client (own network thread) subscribed to ``prefix/#``; reconnects by itself."""

    def __init__(self, broker: Mosquitto, prefix: str, *, username: str | None = None, password: str | None = None):
        self.prefix = prefix
        self.subscriptions = 0  # SUBACKs so far: one per (re)connect
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{prefix}", protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        self.wait_subscribed(0)

    def wait_subscribed(self, after: int) -> None:
        """Block until the subscriber has more than `after` SUBACKs."""
        wait_for(lambda: self.subscriptions > after, timeout=TIMEOUT, what=f"SUBACK on {self.prefix}/#")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(f"{self.prefix}/#", qos=0)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any) -> None:
        if not any(code.is_failure for code in codes):
            self.subscriptions += 1

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        user_properties: list[tuple[str, str]] = getattr(message.properties, "UserProperty", [])
        event_id = int(dict(user_properties)[EVENT_ID_PROPERTY])
        with self._lock:
            self._received.append(Received(event_id, message.topic, bytes(message.payload)))

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def new_prefix() -> str:
    return f"test-{secrets.token_hex(4)}"


@contextlib.contextmanager
def subscriber(broker: Mosquitto, prefix: str | None = None, **credentials: str) -> Iterator[Subscriber]:
    sub = Subscriber(broker, prefix or new_prefix(), **credentials)
    try:
        yield sub
    finally:
        sub.close()


@contextlib.asynccontextmanager
async def running(publisher: MqttPublisher) -> AsyncIterator[asyncio.Task[None]]:
    """Run the publisher in a task; close it afterwards and surface anything run() raised."""
    task = asyncio.create_task(publisher.run())
    try:
        yield task
    finally:
        await publisher.close()
        if not task.cancelled() and task.exception() is not None:
            raise AssertionError("MqttPublisher.run() failed") from task.exception()


async def until(condition: Callable[[], object], what: str) -> None:
    await async_wait_for(condition, within=TIMEOUT, what=what)


def payload_for(seq: int, max_size: int = 3000) -> bytes:
    """Distinct payloads of varying size (empty, small, up to `max_size` bytes), random content."""
    return b"" if seq % 97 == 0 else f"{seq}:".encode() + os.urandom(seq * 53 % max_size)


def settings(broker: Mosquitto, **overrides: Any) -> MqttSettings:
    values: dict[str, Any] = {"host": broker.host, "port": broker.port, "backoff": FAST_BACKOFF}
    return MqttSettings(**(values | overrides))


def assert_complete_and_ordered(received: list[Received], expected: dict[int, tuple[str, bytes]]) -> None:
    """Every expected event arrived intact; after dropping repeated ids the order is the append order."""
    for message in received:
        assert (message.topic, message.payload) == expected[message.event_id], f"event {message.event_id} altered"
    first_copies = list(dict.fromkeys(m.event_id for m in received))
    assert first_copies == sorted(expected), "de-duplicated sequence is incomplete or out of order"


def append_all(spool: Spool, topic: str, count: int) -> dict[int, tuple[str, bytes]]:
    expected: dict[int, tuple[str, bytes]] = {}
    for seq in range(count):
        payload = payload_for(seq)
        event_id = spool.append(f"{topic}/{seq % 7}", payload)
        assert event_id is not None
        expected[event_id] = (f"{topic}/{seq % 7}", payload)
    return expected


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[Mosquitto]:
    """A broker with a TLS listener that requires USER/PASSWORD on every listener."""
    with Mosquitto(tls=True, users={USER: PASSWORD}) as broker:
        yield broker


# --------------------------------------------------------------------------- tests


def test_settings_are_validated() -> None:
    MqttSettings(host="127.0.0.1", qos=0, max_inflight=1, tls=True, ca_file=Path("ca.pem"))
    for bad in (
        {"qos": 2},
        {"max_inflight": 0},
        {"max_inflight": 65536},
        {"client_id": ""},
        {"password": "no user"},
        {"ca_file": Path("ca.pem")},  # without tls=True
        {"tls": True, "key_file": Path("key.pem")},  # without cert_file
        {"port": 0},
    ):
        with pytest.raises(ValueError):
            MqttSettings(host="127.0.0.1", **bad)


def test_publishes_everything_in_order_with_payloads_intact(mosquitto: Mosquitto, spool_dir: Path) -> None:
    async def body(sub: Subscriber) -> None:
        async with Spool(spool_dir, max_bytes=1 << 26) as spool:
            expected = append_all(spool, sub.prefix, 500)
            publisher = MqttPublisher(spool, settings(mosquitto))
            async with running(publisher):
                await until(lambda: spool.depth == 0, "the spool to drain")
                await until(lambda: len(sub.received()) >= len(expected), "the subscriber to get every event")
                assert publisher.connected
            assert not publisher.connected
            received = sub.received()
            assert [m.event_id for m in received] == sorted(expected)  # no reconnect: exactly once
            assert_complete_and_ordered(received, expected)
            assert (publisher.published, publisher.acked, publisher.refused) == (500, 500, 0)
            assert (publisher.reconnects, publisher.connect_failures) == (0, 0)
            assert len(publisher.ack_latencies) > 0 and all(0 <= s < TIMEOUT for s in publisher.ack_latencies)

    with subscriber(mosquitto) as sub:
        asyncio.run(body(sub))


def test_broker_outage_mid_stream_loses_nothing(mosquitto: Mosquitto, spool_dir: Path) -> None:
    """The broker goes away while events keep coming; afterwards every one arrives, in order."""

    async def body(sub: Subscriber) -> None:
        async with Spool(spool_dir, max_bytes=1 << 26) as spool:
            expected: dict[int, tuple[str, bytes]] = {}
            producing = True

            async def produce() -> None:
                seq = 0
                while producing:
                    for _ in range(10):  # bursts, so that the stop likely catches events in flight
                        # Small payloads: the backlog must fit the subscriber's socket buffers, or mosquitto
                        # drops QoS 0 messages for it once a burst outruns it (max_queued_messages).
                        topic, payload = f"{sub.prefix}/dev{seq % 5}", payload_for(seq, max_size=300)
                        event_id = spool.append(topic, payload)
                        assert event_id is not None
                        expected[event_id] = (topic, payload)
                        seq += 1
                    await asyncio.sleep(0.005)  # pacing: about 2000 events per second

            publisher = MqttPublisher(spool, settings(mosquitto))
            async with running(publisher):
                producer = asyncio.create_task(produce())
                await until(lambda: spool.acked >= 1000, "events to flow")
                subscriptions = sub.subscriptions
                await asyncio.to_thread(mosquitto.stop)  # the loop keeps running: the stop hits mid-stream
                try:
                    await until(lambda: not publisher.connected, "the publisher to notice the outage")
                    acked, depth, appended = spool.acked, spool.depth, len(expected)
                    await until(
                        lambda: publisher.connect_failures >= 5 and len(expected) >= appended + 1000,
                        "failed reconnects while events keep coming",
                    )
                    # Nothing is acknowledged without a broker: every new event stays in the spool.
                    assert spool.acked == acked
                    assert spool.depth >= depth + 1000
                finally:
                    if not mosquitto.running:
                        mosquitto.start()  # blocking the loop until the subscriber is back, see module docstring
                        sub.wait_subscribed(subscriptions)
                restarted_at = len(expected)
                await until(lambda: len(expected) >= restarted_at + 1000, "more events after the outage")
                producing = False
                await producer
                await until(lambda: spool.depth == 0, "the spool to drain after the outage")
                await until(lambda: {m.event_id for m in sub.received()} >= expected.keys(), "every event")
            assert_complete_and_ordered(sub.received(), expected)
            assert publisher.reconnects >= 1 and publisher.refused == 0
            assert publisher.published >= len(expected) == publisher.acked

    with subscriber(mosquitto) as sub:
        asyncio.run(body(sub))


class SilentBroker:
    """Speaks just enough MQTT 5 to accept a connection and record PUBLISHes; PUBACKs only when told.

    Lets a test hold PUBACKs back for as long as it likes, which a real broker never does.
    """

    def __init__(self, receive_maximum: int | None = None) -> None:
        self.receive_maximum = receive_maximum
        self.packet_ids: list[int] = []  # of the PUBLISHes received, in order
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SilentBroker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        if self._writer is not None:
            self._writer.close()
        self._server.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = (await reader.readexactly(1))[0]
                length, shift = 0, 0
                while True:
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if byte < 0x80:
                        break
                body = await reader.readexactly(length)
                if header >> 4 == 1:  # CONNECT: CONNACK, success, optionally with Receive Maximum (0x21)
                    props = b"" if self.receive_maximum is None else b"\x21" + self.receive_maximum.to_bytes(2, "big")
                    writer.write(bytes((0x20, 3 + len(props), 0, 0, len(props))) + props)
                    self._writer = writer
                elif header >> 4 == 3:  # PUBLISH, QoS 1: topic, packet id, ...
                    topic_length = int.from_bytes(body[:2], "big")
                    self.packet_ids.append(int.from_bytes(body[2 + topic_length : 4 + topic_length], "big"))

    def puback(self, packet_id: int, reason: int = 0) -> None:
        assert self._writer is not None
        self._writer.write(bytes((0x40, 3)) + packet_id.to_bytes(2, "big") + bytes((reason,)))


def test_events_leave_the_spool_only_when_acknowledged(spool_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """PUBACK-gated removal and the in-flight window, and a refusing PUBACK (>= 0x80) moves the queue on."""

    async def body() -> None:
        async with Spool(spool_dir, max_bytes=1 << 20) as spool, SilentBroker(receive_maximum=4) as broker:
            for seq in range(10):
                spool.append(f"window/{seq}", b"x" * seq)
            publisher = MqttPublisher(spool, MqttSettings(host="127.0.0.1", port=broker.port, max_inflight=6))
            async with running(publisher):
                # The broker's Receive Maximum (4) is below max_inflight (6): four in flight, none acknowledged.
                await until(lambda: len(broker.packet_ids) == 4, "a full window")
                assert publisher.published == 4 and spool.depth == 10
                broker.puback(broker.packet_ids[0])
                broker.puback(broker.packet_ids[1], reason=0x87)  # Not authorized: refused for good
                await until(lambda: spool.depth == 8, "two events to leave the spool")
                await until(lambda: len(broker.packet_ids) == 6, "the window to refill")
                assert (publisher.acked, publisher.refused) == (1, 1)
                assert spool.depth == 8 and publisher.published == 6
            assert spool.depth == 8  # closing acknowledges nothing: the rest is published next time

    with caplog.at_level(logging.ERROR, logger="yurt_iot.runtime.publisher"):
        asyncio.run(body())
    assert "topic 'window/1', 1 bytes payload" in caplog.text and "Not authorized" in caplog.text


def test_refused_events_are_logged_and_skipped(
    spool_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A topic the broker's ACL denies (PUBACK 0x87) and a packet over its maximum size are given up on."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite allowed/#\n")
    with Mosquitto(extra_config=f"acl_file {acl}\nmax_packet_size 2000\n") as broker:

        async def body(sub: Subscriber) -> None:
            async with Spool(spool_dir, max_bytes=1 << 20) as spool:
                spool.append(f"{sub.prefix}/a", b"first")
                spool.append("denied/x", b"not for you")
                spool.append(f"{sub.prefix}/big", b"x" * 3000)
                spool.append(f"{sub.prefix}/b", b"last")
                publisher = MqttPublisher(spool, settings(broker))
                async with running(publisher):
                    await until(lambda: spool.depth == 0, "the spool to drain")
                    await until(lambda: len(sub.received()) == 2, "the deliverable events")
                assert [m.payload for m in sub.received()] == [b"first", b"last"]
                assert (publisher.acked, publisher.refused, publisher.reconnects) == (2, 2, 0)

        prefix = f"allowed/{new_prefix()}"
        with subscriber(broker, prefix) as sub, caplog.at_level(logging.ERROR, logger="yurt_iot.runtime.publisher"):
            asyncio.run(body(sub))
    assert "topic 'denied/x', 11 bytes payload): the broker refused it: Not authorized" in caplog.text
    assert "3000 bytes payload)" in caplog.text and "exceeds the broker's maximum" in caplog.text


def test_event_that_kills_the_connection_is_given_up_after_strikes(spool_dir: Path) -> None:
    """mosquitto 2.0 answers a publish over message_size_limit with a PUBACK paho cannot parse."""
    with Mosquitto(extra_config="message_size_limit 1000\n") as broker:

        async def body(sub: Subscriber) -> None:
            async with Spool(spool_dir, max_bytes=1 << 20) as spool:
                expected: dict[int | None, bytes] = {}
                for payload in (b"before", b"y" * 2000, b"after", b"later"):
                    expected[spool.append(f"{sub.prefix}/x", payload)] = payload
                publisher = MqttPublisher(spool, settings(broker))
                async with running(publisher):
                    await until(lambda: spool.depth == 0, "the spool to drain")
                    await until(lambda: len({m.event_id for m in sub.received()}) == 3, "the deliverable events")
                assert publisher.refused == 1 and publisher.reconnects == POISON_STRIKES
                delivered = {m.event_id: m.payload for m in sub.received()}
                assert delivered == {i: p for i, p in expected.items() if len(p) < 1000}

        with subscriber(broker) as sub:
            asyncio.run(body(sub))


def test_tls_with_the_right_ca_and_password(secure_broker: Mosquitto, spool_dir: Path) -> None:
    async def body(sub: Subscriber) -> None:
        async with Spool(spool_dir, max_bytes=1 << 20) as spool:
            expected = append_all(spool, sub.prefix, 50)
            assert secure_broker.tls_port is not None
            publisher = MqttPublisher(
                spool,
                settings(
                    secure_broker,
                    port=secure_broker.tls_port,
                    tls=True,
                    ca_file=secure_broker.ca_file,
                    username=USER,
                    password=PASSWORD,
                ),
            )
            async with running(publisher):
                await until(lambda: spool.depth == 0, "the spool to drain over TLS")
                await until(lambda: len(sub.received()) >= len(expected), "every event")
            assert_complete_and_ordered(sub.received(), expected)
            assert publisher.connect_failures == 0

    with subscriber(secure_broker, username=USER, password=PASSWORD) as sub:
        asyncio.run(body(sub))


def test_tls_without_the_brokers_ca_is_refused_and_loses_nothing(secure_broker: Mosquitto, spool_dir: Path) -> None:
    async def body() -> None:
        async with Spool(spool_dir, max_bytes=1 << 20) as spool:
            append_all(spool, "tls-untrusted", 20)
            assert secure_broker.tls_port is not None
            untrusted = settings(secure_broker, port=secure_broker.tls_port, tls=True, username=USER, password=PASSWORD)
            publisher = MqttPublisher(spool, untrusted)  # the system CAs do not know the test CA
            async with running(publisher):
                await until(lambda: publisher.connect_failures >= 3, "repeated TLS failures")
                assert not publisher.connected and publisher.published == 0 and spool.depth == 20

    asyncio.run(body())


def test_wrong_password_is_refused_and_retried_without_losing_events(spool_dir: Path) -> None:
    with Mosquitto(users={USER: "not-the-gateways-password"}) as broker:

        async def body() -> None:
            async with Spool(spool_dir, max_bytes=1 << 20) as spool:
                prefix = new_prefix()
                expected = append_all(spool, prefix, 15)
                publisher = MqttPublisher(spool, settings(broker, username=USER, password=PASSWORD))
                async with running(publisher):
                    await until(lambda: publisher.connect_failures >= 3, "refused connection attempts")
                    expected |= append_all(spool, prefix, 15)  # appended meanwhile: kept as well
                    assert not publisher.connected and publisher.published == 0 and spool.depth == 30
                    # The operator fixes the broker's password file; the publisher is still retrying.
                    broker.users[USER] = PASSWORD
                    broker.restart()  # blocking the loop until the subscriber is back, see module docstring
                    with subscriber(broker, prefix, username=USER, password=PASSWORD) as sub:
                        await until(lambda: spool.depth == 0, "the spool to drain once the password matches")
                        await until(lambda: len(sub.received()) >= len(expected), "every event")
                        assert_complete_and_ordered(sub.received(), expected)
                    assert publisher.acked == 30 and publisher.refused == 0

        asyncio.run(body())


def test_qos0_acknowledges_once_written(mosquitto: Mosquitto, spool_dir: Path) -> None:
    async def body(sub: Subscriber) -> None:
        async with Spool(spool_dir, max_bytes=1 << 26) as spool:
            expected = append_all(spool, sub.prefix, 300)
            publisher = MqttPublisher(spool, settings(mosquitto, qos=0))
            async with running(publisher):
                await until(lambda: spool.depth == 0, "the spool to drain")
                await until(lambda: len(sub.received()) >= len(expected), "every event")
            assert_complete_and_ordered(sub.received(), expected)
            assert publisher.acked == 300 and len(publisher.ack_latencies) == 300

    with subscriber(mosquitto) as sub:
        asyncio.run(body(sub))


def test_close_while_the_broker_is_unreachable(spool_dir: Path) -> None:
    """Retrying against a port with no broker; close() returns promptly, the spool is untouched."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]  # bound, not listening: connections are refused

        async def body() -> None:
            async with Spool(spool_dir, max_bytes=1 << 20) as spool:
                append_all(spool, "nowhere", 5)
                publisher = MqttPublisher(spool, MqttSettings(host="127.0.0.1", port=port, backoff=FAST_BACKOFF))
                async with running(publisher) as task:
                    await until(lambda: publisher.connect_failures >= 2, "failed attempts")
                started = time.monotonic()
                await publisher.close()  # idempotent
                assert task.cancelled() and time.monotonic() - started < 1
                assert spool.depth == 5 and publisher.published == 0

        asyncio.run(body())


def test_run_fails_when_the_spool_is_closed_under_it(mosquitto: Mosquitto, spool_dir: Path) -> None:
    async def body() -> None:
        spool = Spool(spool_dir, max_bytes=1 << 20)
        await spool.open()
        publisher = MqttPublisher(spool, settings(mosquitto))
        task = asyncio.create_task(publisher.run())
        await until(lambda: publisher.connected, "a connection")
        await spool.close()  # the publisher is waiting for events in it
        with pytest.raises(SpoolError):
            await task
        assert not publisher.connected

    asyncio.run(body())
