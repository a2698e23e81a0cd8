"""Drain the spool to an MQTT broker: at-least-once, in order, nothing lost.

:class:`MqttPublisher` takes events from the head of a :class:`~yurt_iot.runtime.spool.Spool`, publishes
them with MQTT 5 and acknowledges each to the spool (which removes it) only once the broker has taken
responsibility for it. The connection is a :class:`~yurt_iot.runtime.mqttclient.MqttClient`: paho-mqtt on
the caller's event loop, connected and reconnected with backoff, nothing blocking the loop.

Delivery guarantees, and why they hold:

* Nothing is lost (QoS 1, the default): an event leaves the spool when its PUBACK arrives, i.e. once the
  broker has accepted it. Until then it stays in the spool, so a lost connection, a broker outage or a
  crash of the gateway only delays it. Publish errors never drop an event (only the refusal policy below
  gives one up); connections are retried for ever with :class:`~yurt_iot.runtime.backoff.Backoff`, which
  every successful CONNACK resets.
* In order: events are published in spool order over one connection, and a broker forwards the messages
  of one connection in the order received (per topic, MQTT 5 section 4.6) and PUBACKs them in that order.
  On a lost connection the in-flight window is forgotten and, after the reconnect, publishing restarts
  at the spool head, so the unacknowledged tail goes out again, in order.
* Duplicates, hence at-least-once: an event whose PUBACK was lost, or acknowledged shortly before a crash
  of the gateway (see the spool's checkpoint), is published again. Every message carries its spool event
  id as the MQTT 5 user property ``event-id`` (:data:`EVENT_ID_PROPERTY`); ids are unique and increase,
  and the first copies arrive in id order, so a consumer drops any message whose id is not above the
  last one it saw on that topic from that gateway.
* QoS 0 (``qos=0``): an event leaves the spool once paho has written it to the socket: no round trip,
  but events still in socket buffers, or in the broker when it crashes, are lost.
* Refused events: a broker may refuse an event for good (a PUBACK reason code >= 0x80: not authorised
  for the topic, quota exceeded, ...). Retrying it would block the queue behind it forever, so it is
  counted in ``refused``, logged (error) with its topic, size and reason, and acknowledged: removed. The
  same policy applies, without sending, to an event larger than the broker's Maximum Packet Size (from
  CONNACK) or whose topic is no valid topic name, and to an event that was the oldest in flight each
  time the connection failed on a protocol-level error :data:`POISON_STRIKES` times in a row (a broker
  that kills the connection instead of refusing: mosquitto 2.0 answers a publish over its
  ``message_size_limit`` with a PUBACK that paho rejects as malformed).
* Flow control: at most ``max_inflight`` events are unacknowledged at once (with QoS 1 also no more than
  the broker's Receive Maximum); new events are awaited with ``Spool.wait_for_events``, without polling,
  and once the publisher has caught up, each new event is published as the spool stores it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from yurt_iot.runtime.mqttclient import MqttClient, MqttSettings
from yurt_iot.runtime.spool import Spool, SpooledEvent

__all__ = ["EVENT_ID_PROPERTY", "POISON_STRIKES", "MqttPublisher", "MqttSettings", "TelemetryCollector"]

logger = logging.getLogger(__name__)

#: Name of the MQTT 5 user property that carries the spool event id of every message.
EVENT_ID_PROPERTY = "event-id"
#: Protocol-level connection failures in a row, with the same oldest event in flight, that make it refused.
POISON_STRIKES = 3

_LATENCY_SAMPLES = 1024
# DISCONNECT reasons (from the broker, or paho's own for a packet it could not parse) that point at a
# packet we sent: malformed, protocol error, topic name invalid, packet too large, quota, payload format.
_PACKET_REJECTED = frozenset({0x81, 0x82, 0x90, 0x95, 0x97, 0x99})
_USER_PROPERTY = 0x26
_EVENT_ID_NAME = len(EVENT_ID_PROPERTY).to_bytes(2, "big") + EVENT_ID_PROPERTY.encode()


class _InFlight(NamedTuple):
    event_id: int
    topic: str
    size: int
    sent: float  # time.monotonic() when handed to paho


class _EventIdProperties(Properties):
    """PUBLISH properties holding just the ``event-id`` user property, encoded once, up front.

    paho only ever calls ``pack()`` on the properties of a PUBLISH. A plain ``Properties`` builds lookup
    tables per instance and encodes in pure Python: with it the publisher used ~90 instead of ~50 us of
    CPU per event.
    """

    _packed: bytes

    def __init__(self, event_id: int) -> None:  # no Properties.__init__: its tables are never used
        value = str(event_id).encode()
        body = bytes((_USER_PROPERTY,)) + _EVENT_ID_NAME + len(value).to_bytes(2, "big") + value
        object.__setattr__(self, "_packed", bytes((len(body),)) + body)  # < 128 bytes: a one-byte length

    def pack(self) -> bytes:
        return self._packed


def _varint_size(n: int) -> int:
    return 1 if n < 0x80 else 2 if n < 0x4000 else 3 if n < 0x200000 else 4


def _publish_packet_size(topic: bytes, payload_size: int, qos: int, properties: bytes) -> int:
    """Bytes of an MQTT 5 PUBLISH packet (`properties` packed, with their length)."""
    remaining = 2 + len(topic) + (2 if qos else 0) + len(properties) + payload_size
    return 1 + _varint_size(remaining) + remaining


class MqttPublisher:
    """Publishes the events of `spool` to the broker of `settings`; see the module docstring for guarantees.

    ``await run()`` publishes until cancelled or :meth:`close`\\ d; it raises if the spool is closed under
    it. Counters (since construction) and state are plain attributes, for metrics and tests.
    """

    def __init__(self, spool: Spool, settings: MqttSettings) -> None:
        if not settings.mqtt5:
            raise ValueError("the publisher needs MQTT 5: its event-id user property and PUBACK reason codes")
        self._spool = spool
        self._settings = settings
        self._mqtt = MqttClient(settings, on_connack=self._on_connack, on_lost=self._on_lost)
        self._lost: asyncio.Future[None] | None = None  # of the connection being served
        self._client = self._mqtt.paho
        self._client.on_publish = self._on_publish
        self._space = asyncio.Event()  # set when an ack frees room in the window

        self._inflight: dict[int, _InFlight] = {}  # by MQTT packet id, oldest first
        self._window = settings.max_inflight
        self._max_packet: int | None = None  # the broker's Maximum Packet Size, if it has one
        self._last_handed: int | None = None  # last event id handed to paho on this connection
        self._newest_handed = -1  # highest event id ever handed out (or refused)
        self._suspect: int | None = None  # event blamed for the last protocol-level connection failure
        self._strikes = 0

        #: PUBLISH packets handed to paho, re-sends included.
        self.published = 0
        #: Events the broker accepted (PUBACK; with QoS 0: written to the socket) and the spool dropped.
        self.acked = 0
        #: Events given up on and removed from the spool (see the module docstring).
        self.refused = 0
        #: Seconds from handing an event to paho to its ack, for the most recent acks.
        self.ack_latencies: collections.deque[float] = collections.deque(maxlen=_LATENCY_SAMPLES)

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the loss of that connection."""
        return self._mqtt.connected

    @property
    def reconnects(self) -> int:
        """Connections established after the first one."""
        return self._mqtt.reconnects

    @property
    def connect_failures(self) -> int:
        """Connection attempts that failed (TCP, TLS, CONNACK refused or missing)."""
        return self._mqtt.connect_failures

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect (retrying with backoff) and publish, until cancelled or closed."""
        await self._mqtt.run(self._serve)

    async def close(self) -> None:
        """Stop :meth:`run` (cancelling its task) and wait until it has disconnected. Idempotent."""
        await self._mqtt.close()

    async def _serve(self, lost: asyncio.Future[None]) -> None:
        """Publish on the current connection until it is lost."""
        pump = asyncio.create_task(self._pump(lost))
        self._lost = lost
        self._spool.on_append = self._take
        try:
            await asyncio.wait([pump, lost], return_when=asyncio.FIRST_COMPLETED)
            if pump.done():
                pump.result()  # raises what stopped it; it returns only once the connection is gone
            await lost  # raises a failure from a paho callback
        finally:
            self._spool.on_append = None
            self._lost = None
            pump.cancel()
            # Everything unacknowledged is published again from the spool head after the reconnect.
            self._inflight.clear()
            self._last_handed = None

    # -- publishing --------------------------------------------------------------------------------

    async def _pump(self, lost: asyncio.Future[None]) -> None:
        spool, inflight = self._spool, self._inflight
        while not lost.done():
            room = self._window - len(inflight)
            if room <= 0:
                self._space.clear()
                await self._space.wait()
                continue
            events = spool.peek(room, after=self._last_handed)
            if not events:
                # Every id up to the newest handed out is in flight or acknowledged: wait for a newer one.
                await spool.wait_for_events(self._newest_handed)
                continue
            for event in events:
                if not self._publish(event):
                    return  # no connection any more
            self._mqtt.flush()

    def _take(self, event: SpooledEvent) -> bool:
        """Publish an event as the spool stores it, when everything before it is handed out and the window has
        room: the event is at hand, so the pump need neither wake up nor read it back (the spool's
        ``on_append``). Anything else is left to the pump (False)."""
        lost = self._lost
        if lost is None or lost.done() or self._last_handed != event.id - 1 or len(self._inflight) >= self._window:
            return False
        try:
            if not self._publish(event):
                return False
        except RuntimeError:  # paho refused to queue it: the pump meets the same error and ends the connection
            return False
        self._mqtt.flush()
        return True

    def _publish(self, event: SpooledEvent) -> bool:
        """Hand `event` to paho (or refuse it); False if there is no connection to publish on."""
        topic, payload, qos = event.topic, event.payload, self._settings.qos
        properties = _EventIdProperties(event.id)
        if self._max_packet is not None:
            size = _publish_packet_size(topic.encode(), len(payload), qos, properties.pack())
            if size > self._max_packet:
                self._handed_out(event.id)
                self._refuse(event.id, topic, len(payload), f"its {size}-byte packet exceeds the broker's maximum")
                return True
        try:
            info = self._client.publish(topic, payload, qos, properties=properties)
        except ValueError as exc:  # not a valid topic name: no broker will ever take it
            self._handed_out(event.id)
            self._refuse(event.id, topic, len(payload), str(exc))
            return True
        if info.rc == mqtt.MQTT_ERR_NO_CONN:
            return False
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"paho-mqtt did not queue a publish: {mqtt.error_string(info.rc)}")
        self._inflight[info.mid] = _InFlight(event.id, topic, len(payload), time.monotonic())
        self.published += 1
        self._handed_out(event.id)
        return True

    def _handed_out(self, event_id: int) -> None:
        self._last_handed = event_id
        self._newest_handed = max(self._newest_handed, event_id)

    def _refuse(self, event_id: int, topic: str, size: int, reason: str) -> None:
        """Give up on an event for good: count, log and ack it, so that the queue moves on."""
        self.refused += 1
        logger.error("MQTT: giving up on event %d (topic %r, %d bytes payload): %s", event_id, topic, size, reason)
        self._spool.ack(event_id)

    # -- connection and paho callbacks (on the loop thread) -----------------------------------------

    def _on_connack(self, props: Properties | None) -> None:
        max_inflight = self._settings.max_inflight
        receive_maximum = getattr(props, "ReceiveMaximum", max_inflight)  # only QoS > 0 counts against it
        self._window = max_inflight if self._settings.qos == 0 else min(max_inflight, receive_maximum)
        self._max_packet = getattr(props, "MaximumPacketSize", None)

    def _on_lost(self, reason: ReasonCode) -> None:
        if not self._inflight:
            return
        logger.info("MQTT: %d unacknowledged events go out again after the reconnect", len(self._inflight))
        if reason.value in _PACKET_REJECTED:
            self._blame(next(iter(self._inflight.values())), reason)

    def _blame(self, oldest: _InFlight, reason: ReasonCode) -> None:
        """PUBACKs come in order, so a packet-level failure is the oldest in-flight event's doing."""
        if oldest.event_id != self._suspect:
            self._suspect, self._strikes = oldest.event_id, 0
        self._strikes += 1
        if self._strikes >= POISON_STRIKES:
            self._suspect = None
            why = f"the connection failed {POISON_STRIKES} times in a row with {reason} while it was in flight"
            self._refuse(oldest.event_id, oldest.topic, oldest.size, why)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Properties) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        if reason.is_failure:
            self._refuse(entry.event_id, entry.topic, entry.size, f"the broker refused it: {reason}")
        else:
            self.acked += 1
            self.ack_latencies.append(time.monotonic() - entry.sent)
            self._spool.ack(entry.event_id)
        self._space.set()


class TelemetryCollector(Collector):
    """Spool and publisher figures, read when Prometheus scrapes (nothing to update on the hot path)."""

    def __init__(self, spool: Spool, publisher: MqttPublisher) -> None:
        self._spool, self._publisher = spool, publisher

    def collect(self) -> Iterator[Metric]:
        s, p = self._spool, self._publisher
        yield GaugeMetricFamily("yurt_iot_spool_depth", "Events waiting in the spool", value=s.depth)
        yield GaugeMetricFamily("yurt_iot_spool_bytes", "Bytes of events waiting in the spool", value=s.size_bytes)
        for name, help_text, value in (
            ("yurt_iot_spool_rejected", "Events refused because the spool was full", s.rejected),
            ("yurt_iot_spool_dropped", "Oldest events evicted because the spool was full", s.dropped),
            ("yurt_iot_mqtt_published", "MQTT publishes sent, re-sends included", p.published),
            ("yurt_iot_mqtt_acked", "Events acknowledged by the broker and removed from the spool", p.acked),
            ("yurt_iot_mqtt_refused", "Events the broker refused for good (removed, logged)", p.refused),
            ("yurt_iot_mqtt_reconnects", "MQTT connections re-established", p.reconnects),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        yield GaugeMetricFamily("yurt_iot_mqtt_connected", "1 while connected to the broker", value=int(p.connected))
