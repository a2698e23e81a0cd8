"""core-metadata's system events from EdgeX's message bus: what makes edge-to-cloud sync near-instant.

core-metadata publishes every add, update and delete of a device (and, depending on the release, of services
and profiles) on ``edgex/system-events/core-metadata/<type>/<action>/<owner>/<profile>``, as a message
envelope whose payload is ``{type, action, source, owner, details: <the object>}`` (a JSON object on EdgeX 4,
base64 of it on EdgeX 3). Each event is handed to `on_event`; each new connection calls `on_connected`,
because events published while we were away are lost and a full listing must make up for them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from yurt_iot.runtime.mqttclient import MqttClient, MqttSettings, SubscriptionError

__all__ = ["SYSTEM_EVENTS_TOPIC", "SystemEvents", "decode_event"]

logger = logging.getLogger(__name__)

SYSTEM_EVENTS_TOPIC = "edgex/system-events/core-metadata/#"


def decode_event(payload: bytes | bytearray) -> dict[str, Any] | None:
    """The system event inside a message envelope, or None if the message is not one."""
    try:
        envelope = json.loads(payload)
        inner = envelope.get("payload") if isinstance(envelope, dict) else None
        if isinstance(inner, str):  # EdgeX 3: the payload is a []byte, so JSON carries it as base64
            inner = json.loads(base64.b64decode(inner, validate=True))
    except (ValueError, binascii.Error):
        return None
    return inner if isinstance(inner, dict) else None


class SystemEvents:
    """Subscribes to the system events on the broker of `settings` until `run()` is cancelled."""

    def __init__(
        self,
        settings: MqttSettings,
        on_event: Callable[[dict[str, Any]], None],
        on_connected: Callable[[], None],
    ) -> None:
        self._client = MqttClient(settings)
        self._client.paho.on_message = self._on_message
        self._on_event, self._on_connected = on_event, on_connected

    async def run(self) -> None:
        try:
            await self._client.run(self._serve)
        finally:
            await self._client.close()

    async def _serve(self, lost: asyncio.Future[None]) -> None:
        try:
            await self._client.subscribe([SYSTEM_EVENTS_TOPIC], 1)
        except SubscriptionError as exc:  # lost meanwhile (the next connection subscribes again), or refused
            logger.warning("no EdgeX system events on this connection: %s", exc)
        else:
            self._on_connected()
        await lost

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        event = decode_event(message.payload)
        if event is None:
            logger.debug("ignoring a message on %s that is no system event", message.topic)
            return
        try:
            self._on_event(event)
        except Exception:  # a bad event must not end the connection (see MqttClient's callbacks)
            logger.exception("handling the system event on %s failed", message.topic)
