"""The MQTT device simulator on a real Mosquitto, driven by a plain paho client (on its own network thread).

The paho client plays EdgeX device-mqtt: it publishes gets and sets and listens on the response and incoming
topics. Every wait is for a condition with a deadline. Absence (of an answer) is shown by order instead of by
waiting: the broker forwards one client's messages in order and the simulator answers in order, so once the
answer to a later request is in, an earlier request that got none never will.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from yurt_iot.sim.mqtt import DEFAULT_VALUES, MqttDeviceSimulator, Push
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.waiting import async_test, async_wait_for, wait_for

TEST_TIMEOUT = 30.0
DEADLINE = 10.0


class Requester:
    """EdgeX's side: publishes requests to a device and records what arrives on the response and incoming topics."""

    def __init__(self, broker: Mosquitto, device: str, response_topic: str = "command/response") -> None:
        self.device, self.response_topic = device, response_topic
        self._lock = threading.Lock()
        self._messages: list[tuple[str, Any]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edgex-{secrets.token_hex(4)}")
        self.client.on_connect = lambda client, *_: client.subscribe(
            [(f"{response_topic}/#", 0), (f"incoming/data/{device}/#", 0)]
        )
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(DEADLINE), "no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._messages.append((message.topic, json.loads(message.payload)))

    def messages(self, prefix: str) -> list[tuple[str, Any]]:
        with self._lock:
            return [(topic, payload) for topic, payload in self._messages if topic.startswith(prefix)]

    def request(self, resource: str, method: str = "get", payload: bytes = b"") -> str:
        request_id = secrets.token_hex(8)
        self.client.publish(f"command/{self.device}/{resource}/{method}/{request_id}", payload)
        return request_id

    async def answer(self, request_id: str) -> Any:
        topic = f"{self.response_topic}/{request_id}"
        found = await async_wait_for(lambda: self.messages(topic), within=DEADLINE, what=f"a response on {topic}")
        return found[0][1]

    def pushed(self, source: str) -> list[Any]:
        return [payload for _, payload in self.messages(f"incoming/data/{self.device}/{source}")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def requester(broker: Mosquitto, device: str) -> Iterator[Requester]:
    client = Requester(broker, device)
    try:
        yield client
    finally:
        client.close()


def unique(stem: str) -> str:
    return f"{stem}-{secrets.token_hex(3)}"


@async_test(TEST_TIMEOUT)
async def test_answers_gets_and_keeps_what_is_set(mosquitto: Mosquitto) -> None:
    name = unique("sim")
    with requester(mosquitto, name) as edgex:
        async with MqttDeviceSimulator(name, port=mosquitto.port, period=None) as sim:
            for resource, value in DEFAULT_VALUES.items():
                assert await edgex.answer(edgex.request(resource)) == {resource: value}
            assert await edgex.answer(edgex.request("message", "set", b'{"message": "written"}')) == {
                "message": "written"
            }
            assert await edgex.answer(edgex.request("message")) == {"message": "written"}
            assert await edgex.answer(edgex.request("pressure")) == {}  # no such resource
            assert await edgex.answer(edgex.request("switch", "set", b"garbage")) == {"switch": False}  # kept
            edgex.client.publish(f"command/{name}/switch/toggle/1", b"")  # no such method: not answered
            assert await edgex.answer(edgex.request("switch")) == {"switch": False}  # answered after the toggle
            assert sim.requests == {"get": 7, "set": 2, "other": 1}
            assert sim.values["message"] == "written"


@async_test(TEST_TIMEOUT)
async def test_pushes_changing_values_as_objects_and_bare_values(mosquitto: Mosquitto) -> None:
    name = unique("pusher")
    pushes = [Push("temperature", bare=True), Push("Climate", ("temperature", "humidity"))]
    with requester(mosquitto, name) as edgex:
        async with MqttDeviceSimulator(name, port=mosquitto.port, pushes=pushes, period=0.02) as sim:
            await async_wait_for(lambda: len(edgex.pushed("Climate")) >= 3, within=DEADLINE, what="3 pushes")
            bare, climate = edgex.pushed("temperature"), edgex.pushed("Climate")
            assert all(isinstance(value, float) for value in bare)
            assert all(set(values) == {"temperature", "humidity"} for values in climate)
            # the values move by a fixed step every period: floats by 0.5, integers by 1
            steps = {(b["temperature"] - a["temperature"], b["humidity"] - a["humidity"]) for a, b in pairwise(climate)}
            assert steps == {(0.5, 1)}
            assert climate[0]["humidity"] - DEFAULT_VALUES["humidity"] == 1  # the first push is after one period
            assert sim.values["message"] == DEFAULT_VALUES["message"]  # not pushed: unchanged
            assert sim.pushed >= len(bare) + len(climate)


@async_test(TEST_TIMEOUT)
async def test_a_silent_device_neither_answers_nor_pushes_but_counts_requests(mosquitto: Mosquitto) -> None:
    name = unique("silent")
    with requester(mosquitto, name) as edgex:
        async with MqttDeviceSimulator(name, port=mosquitto.port, pushes=[Push("humidity")], period=None) as sim:
            sim.silent = True
            unanswered = edgex.request("humidity")
            await async_wait_for(lambda: sim.requests["get"] == 1, within=DEADLINE, what="the request counted")
            pushed = sim.pushed
            sim.push_now()
            assert sim.pushed == pushed
            sim.silent = False
            assert await edgex.answer(edgex.request("humidity")) == {"humidity": DEFAULT_VALUES["humidity"]}
            assert edgex.messages(f"command/response/{unanswered}") == []  # in order: it never will be
            sim.push_now()
            await async_wait_for(lambda: edgex.pushed("humidity") == [{"humidity": 50}], within=DEADLINE, what="push")

            sim.unanswered = {"humidity"}
            ignored = edgex.request("humidity")
            assert await edgex.answer(edgex.request("switch")) == {"switch": False}
            assert edgex.messages(f"command/response/{ignored}") == [] and sim.requests["get"] == 4


@async_test(TEST_TIMEOUT)
async def test_reconnects_and_subscribes_again_after_a_broker_restart(mosquitto: Mosquitto) -> None:
    name = unique("phoenix")
    async with MqttDeviceSimulator(name, port=mosquitto.port, period=None) as sim:
        await asyncio.to_thread(mosquitto.restart)  # blocking: not on the loop the simulator runs on
        await async_wait_for(lambda: sim.subscribed, within=DEADLINE, what="subscribed again")
        with requester(mosquitto, name) as edgex:
            assert await edgex.answer(edgex.request("humidity")) == {"humidity": DEFAULT_VALUES["humidity"]}


def test_push_settings_are_checked(mosquitto: Mosquitto) -> None:
    with pytest.raises(ValueError, match="exactly one resource"):
        Push("Climate", ("temperature", "humidity"), bare=True)
    with pytest.raises(ValueError, match=r"resources the device does not have: \['pressure'\]"):
        MqttDeviceSimulator("x", port=mosquitto.port, pushes=[Push("pressure")])


def test_runs_as_a_process(mosquitto: Mosquitto) -> None:
    name = unique("process")
    command = [sys.executable, "-m", "yurt_iot.sim.mqtt", "--broker-port", str(mosquitto.port), "--device", name,
               "--value", "level=7", "--value", "label=tank", "--push", "level", "--period", "0.05"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"{name}: answering on command/{name}/#"
        with requester(mosquitto, name) as edgex:
            request_id = edgex.request("label")
            wait_for(lambda: edgex.messages(f"command/response/{request_id}"), timeout=DEADLINE, what="an answer")
            assert edgex.messages(f"command/response/{request_id}")[0][1] == {"label": "tank"}
            wait_for(lambda: len(edgex.pushed("level")) >= 2, timeout=DEADLINE, what="pushes")
            assert edgex.pushed("level")[:2] == [8, 9]  # bare values, one step per period
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=DEADLINE)
        assert process.returncode == 0, stderr
        assert "served 1 get, pushed" in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
