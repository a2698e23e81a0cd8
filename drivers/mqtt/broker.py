"""One broker connection, shared by every device that uses it: subscriptions, requests and their responses.

Requests follow EdgeX device-mqtt: the driver publishes to ``<topic>/<uuid>`` and the device answers on
``<ResponseTopic>/<uuid>``. Every request has a fresh uuid, so a late answer to an abandoned request can never be
taken for another's; it is counted in `Broker.stray_responses`, with answers to other gateways' requests on a
shared broker.

The connection is a `MqttClient` (paho on the event loop, reconnected with backoff). On every connection the
broker subscribes to ``<ResponseTopic>/#`` and ``<IncomingTopic>/#`` of its devices (EdgeX's subscriptions) and is
ready once the SUBACK is in: before that a response could come back unseen. Requests wait for readiness within
their caller's deadline. When a connection is lost, the requests waiting for a response fail at once with
ConnectionLost, since their responses would go to a connection that no longer exists, and nothing is sent again
after the reconnect: a stale command is worse than a failed one.

Every message is routed on the event loop inside paho's read callback. A message that cannot be handled is
reported, never raised: an exception there would end the connection for every device on the broker.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt

from yurt_iot.runtime.mqttclient import MqttClient, MqttSettings, SubscriptionError
from yurt_iot.runtime.sdk import ConfigurationError, ConnectionLost

from .codec import Reason
from .config import BrokerConfig, DeviceConfig

__all__ = ["Broker", "ConnectionHandler", "IncomingHandler", "MalformedHandler"]

logger = logging.getLogger(__name__)

IncomingHandler = Callable[["Broker", str, str, str, bytes], None]
"""Called with (broker, IncomingTopic prefix, device, source, payload) for each pushed message."""
MalformedHandler = Callable[[Reason, str, str], None]
"""Called with (reason, topic, what is wrong) for a message that is dropped."""
ConnectionHandler = Callable[["Broker", bool, str], None]
"""Called with (broker, ready, reason) when the broker becomes ready for requests, or stops being ready."""

_RESTART_DELAY: Final = 1.0
"""Seconds before a client that failed unexpectedly (an exception from paho) is started again."""


class Broker:
    """The MQTT client of one `BrokerConfig` and the devices' topic prefixes on it; see the module docstring."""

    def __init__(
        self,
        config: BrokerConfig,
        on_incoming: IncomingHandler,
        on_malformed: MalformedHandler,
        on_connection: ConnectionHandler | None = None,
    ) -> None:
        self.config = config
        self._on_incoming, self._on_malformed, self._on_connection = on_incoming, on_malformed, on_connection
        self.client = MqttClient(
            MqttSettings(
                host=config.host,
                port=config.port,
                client_id=f"yurt-iot-mqtt-{secrets.token_hex(6)}",
                qos=config.qos,
                username=config.username,
                password=config.password,
                tls=config.tls,
                ca_file=config.ca_file,
                cert_file=config.cert_file,
                key_file=config.key_file,
                mqtt5=False,  # as EdgeX device-mqtt; halves the CPU per pushed message (see MqttSettings)
            )
        )
        self.client.paho.on_message = self._on_message
        self._responses: Counter[str] = Counter()  # ResponseTopic prefix -> devices using it
        self._incoming: Counter[str] = Counter()  # IncomingTopic prefix -> devices using it
        self._pending: dict[str, tuple[str, asyncio.Future[bytes]]] = {}  # uuid -> (response prefix, response)
        self._ready = asyncio.Event()
        self._refusal: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscribing: set[asyncio.Task[None]] = set()
        #: Responses that no request waits for: late (after their request gave up) or to someone else's request.
        self.stray_responses = 0

    def __str__(self) -> str:
        return f"MQTT broker {self.config}"

    @property
    def in_use(self) -> bool:
        return bool(self._responses)

    def add(self, device: str, config: DeviceConfig) -> None:
        """Serve a device's topics, connecting on first use; ConfigurationError if they clash with another's."""
        if config.incoming_topic in self._responses or config.response_topic in self._incoming:
            raise ConfigurationError(
                f"device {device!r}: on {self}, other devices use its IncomingTopic as ResponseTopic or the reverse"
            )
        new = [f"{prefix}/#" for prefix in self._count(config, 1)]
        if new and self.client.connected:
            task = asyncio.create_task(self._subscribe(new), name=f"subscribe {self}")
            self._subscribing.add(task)
            task.add_done_callback(self._subscribing.discard)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=str(self))

    def remove(self, config: DeviceConfig) -> None:
        """Stop serving a device's topics (unsubscribing those no other device uses)."""
        gone = [f"{prefix}/#" for prefix in self._count(config, -1)]
        if gone and self.client.connected:
            self.client.paho.unsubscribe(gone)

    def _count(self, config: DeviceConfig, step: int) -> list[str]:
        """Count a device in or out of its prefixes; the prefixes that this starts or stops using."""
        changed = []
        for counter, prefix in ((self._responses, config.response_topic), (self._incoming, config.incoming_topic)):
            counter[prefix] += step
            if counter[prefix] == (1 if step > 0 else 0):
                changed.append(prefix)
            if counter[prefix] <= 0:
                del counter[prefix]
        return changed

    async def close(self) -> None:
        """Disconnect; requests waiting for a response fail with ConnectionLost."""
        for task in list(self._subscribing):
            task.cancel()
        await self.client.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        self._lose_requests("the driver closed the connection")

    # -- requests ------------------------------------------------------------------------------------

    async def wait_ready(self, deadline: float) -> None:
        """Wait until requests can be sent, up to `deadline` (event loop time); ConnectionLost after it."""
        if self._ready.is_set():
            return
        try:
            async with asyncio.timeout_at(deadline):
                await self._ready.wait()
        except TimeoutError:
            why = self._refusal or self.client.last_failure or "connecting"
            raise ConnectionLost(f"{self} is not reachable: {why}") from None

    def request(self, topic: str, payload: bytes, response_prefix: str) -> asyncio.Future[bytes]:
        """Publish `payload` to ``<topic>/<uuid>``; the future gets the payload of ``<response_prefix>/<uuid>``.

        ConnectionLost at once if the broker is not ready, and as the future's exception if the connection is lost
        first. Cancel the future to give up waiting.
        """
        if not self._ready.is_set():
            raise ConnectionLost(f"{self} is not connected")
        request_id = str(uuid.uuid4())
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (response_prefix, future)
        future.add_done_callback(lambda _: self._pending.pop(request_id, None))
        info = self.client.paho.publish(f"{topic}/{request_id}", payload, self.config.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            future.cancel()
            raise ConnectionLost(f"{self}: cannot publish to {topic}: {mqtt.error_string(info.rc)}")
        return future

    def _lose_requests(self, why: str) -> None:
        for _, future in list(self._pending.values()):
            if not future.done():
                future.set_exception(ConnectionLost(f"{self}: {why} before the response came"))

    # -- connection ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.client.run(self._serve)
                return  # closed before it started
            except Exception:
                logger.exception("%s: the MQTT client failed; starting it again in %s s", self, _RESTART_DELAY)
            await asyncio.sleep(_RESTART_DELAY)

    async def _serve(self, lost: asyncio.Future[None]) -> None:
        """Subscribe to every prefix in use, then serve requests until the connection is lost."""
        filters = [f"{prefix}/#" for prefix in (*self._responses, *self._incoming)]
        try:
            await self.client.subscribe(filters, self.config.qos)
        except SubscriptionError as error:
            if not lost.done():  # refused (not lost): nothing can work on this connection
                self._refusal = str(error)
                logger.error("%s; its devices get neither responses nor pushed values", error)
            await lost
            return
        self._refusal = None
        self._ready.set()
        self._report(True, "connected and subscribed")
        try:
            await lost
        finally:
            self._ready.clear()
            why = self.client.last_failure or "the connection was lost"
            self._lose_requests(why)
            self._report(False, why)

    def _report(self, ready: bool, reason: str) -> None:
        if self._on_connection is not None:
            self._on_connection(self, ready, f"{self}: {reason}")

    async def _subscribe(self, filters: Sequence[str]) -> None:
        try:
            await self.client.subscribe(filters, self.config.qos)
        except SubscriptionError as error:  # lost: the next connection subscribes to everything anyway
            logger.warning("%s", error)

    # -- messages (in paho's read callback, on the event loop) ----------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self._on_malformed(Reason.TOPIC, "<not UTF-8>", "the topic is not UTF-8")
            return
        try:
            self._route(topic, bytes(message.payload))
        except Exception as error:  # a bug, not the message: report it, and keep the connection
            self._on_malformed(Reason.ERROR, topic, f"{type(error).__name__}: {error}")

    def _route(self, topic: str, payload: bytes) -> None:
        head, _, last = topic.rpartition("/")
        if head in self._responses:
            self._respond(head, last, payload)
            return
        prefix, _, device = head.rpartition("/")
        if prefix in self._incoming:
            self._on_incoming(self, prefix, device, last, payload)
            return
        self._on_malformed(Reason.TOPIC, topic, "the topic is neither <IncomingTopic>/<device>/<source> nor a response")

    def _respond(self, prefix: str, request_id: str, payload: bytes) -> None:
        pending = self._pending.get(request_id)
        if pending is None or pending[0] != prefix:
            self.stray_responses += 1
            logger.debug("%s: response %s/%s matches no request waiting for one", self, prefix, request_id)
            return
        future = pending[1]
        if not future.done():
            future.set_result(payload)
