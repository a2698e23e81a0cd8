"""What the EdgeX client tests share: unique names, DTO builders, and a message-bus peer that plays a device
service's part in EdgeX 4's device validation (or just listens)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import paho.mqtt.client as mqtt

from yurt_iot.iot.edgex.dtos import (
    Device,
    DeviceCommand,
    DeviceProfile,
    DeviceResource,
    DeviceService,
    ResourceOperation,
    ResourceProperties,
)
from yurt_iot.runtime.mqttclient import MqttClient, MqttSettings
from yurt_iot.testing.mosquitto import Mosquitto

DEADLINE = 10.0


def unique(stem: str) -> str:
    return f"{stem}-{secrets.token_hex(3)}"


def service(name: str, base_address: str = "http://127.0.0.1:9", **fields: Any) -> DeviceService:
    return DeviceService(name=name, base_address=base_address, **fields)


def profile(name: str) -> DeviceProfile:
    """A thermostat: a readable temperature (scaled), a writable setpoint, a hidden raw register, one command."""
    return DeviceProfile(
        name=name,
        manufacturer="Acme",
        model="T-1000",
        labels=["thermostat"],
        device_resources=[
            DeviceResource(
                name="Temperature",
                description="room temperature",
                attributes={"primaryTable": "INPUT_REGISTERS", "startingAddress": 0},
                properties=ResourceProperties(value_type="Float32", read_write="R", scale=0.1, units="C"),
            ),
            DeviceResource(
                name="Setpoint",
                properties=ResourceProperties(value_type="Int16", read_write="RW", minimum=5, maximum=30),
            ),
            DeviceResource(
                name="Raw", is_hidden=True, properties=ResourceProperties(value_type="Uint16", read_write="R")
            ),
        ],
        device_commands=[
            DeviceCommand(
                name="Climate",
                read_write="R",
                resource_operations=[
                    ResourceOperation(device_resource="Temperature"),
                    ResourceOperation(device_resource="Setpoint"),
                ],
            )
        ],
    )


def device(name: str, service_name: str, profile_name: str | None, **fields: Any) -> Device:
    protocols = {"modbus-tcp": {"Address": "127.0.0.1", "Port": "1502", "UnitID": 1}}
    return Device(name=name, service_name=service_name, profile_name=profile_name, protocols=protocols, **fields)


@contextlib.asynccontextmanager
async def bus_peer(
    broker: Mosquitto, topic: str, answer: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """Subscribe to `topic` on the bus; yields the (topic, envelope) pairs received. With `answer`, each request
    envelope gets that reply on ``edgex/response/<service>/<requestID>`` (the service is the topic's 2nd level)."""
    received: list[tuple[str, dict[str, Any]]] = []
    client = MqttClient(MqttSettings(broker.host, broker.port))
    subscribed = asyncio.Event()

    def on_message(paho: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        envelope = json.loads(message.payload)
        received.append((message.topic, envelope))
        fields = answer(envelope) if answer is not None else None
        if fields is not None:
            request_id = envelope["requestID"]
            reply = {"apiVersion": "v3", "requestID": request_id, "correlationID": envelope["correlationID"]}
            reply |= {"contentType": "application/json", **fields}
            service_name = message.topic.split("/")[1]
            paho.publish(f"edgex/response/{service_name}/{request_id}", json.dumps(reply), qos=1)

    async def serve(lost: asyncio.Future[None]) -> None:
        await client.subscribe([topic], 1)
        subscribed.set()
        await lost

    client.paho.on_message = on_message
    task = asyncio.create_task(client.run(serve))
    try:
        await asyncio.wait_for(subscribed.wait(), DEADLINE)
        yield received
    finally:
        await client.close()
        assert task.done()
