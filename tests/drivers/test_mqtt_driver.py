"""The MQTT driver against a real Mosquitto and the MQTT device simulator, mostly end to end through `Gateway`.

Devices and profiles are the models the CRDs carry, as in tests/runtime/test_gateway.py; every test names its
devices (and, where other devices' messages must not interfere, its topic prefixes) uniquely, since the broker is
shared by the whole session. Every wait is for a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import pytest
from yurt_iot_drivers.mqtt import MqttDriver
from yurt_iot_drivers.mqtt.codec import Codec

from tests.drivers.test_modbus_driver import connections_to
from tests.runtime.test_gateway import Events, command, profile
from yurt_iot.api.iot import Device, DeviceProfile
from yurt_iot.runtime.device import DeviceRunner
from yurt_iot.runtime.gateway import Gateway
from yurt_iot.runtime.sdk import ConfigurationError, ConnectionLost, DeviceBinding, ResourceBinding, ResourceFailure
from yurt_iot.sim.mqtt import DEFAULT_VALUES, MqttDeviceSimulator, Push
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.waiting import async_test, async_wait_for

TEST_TIMEOUT = 60.0
DEADLINE = 10.0
TIMEOUT_S = 0.3
"""The devices' Timeout property."""
VALUES = {**DEFAULT_VALUES, "setpoint": 21.5}
"""What the simulated devices hold: temperature, humidity, switch, message, setpoint."""


def mqtt_resource(name: str, value_type: str, read_write: str = "RW") -> dict[str, Any]:
    return {
        "name": name,
        "description": name,
        "isHidden": False,
        "properties": {"valueType": value_type, "readWrite": read_write},
    }


RESOURCES = [
    mqtt_resource("temperature", "Float64", "R"),
    mqtt_resource("humidity", "Int32", "R"),
    mqtt_resource("switch", "Bool"),
    mqtt_resource("message", "String"),
    mqtt_resource("setpoint", "Float32"),
]
PROFILE = profile("mqtt-thermostat", RESOURCES, [command("Climate", ["temperature", "humidity"])])


def unique(stem: str) -> str:
    return f"{stem}-{secrets.token_hex(3)}"


def mqtt_device(
    name: str,
    broker: Mosquitto,
    *,
    prefix: str | None = None,
    events: Sequence[tuple[str, str]] = (),
    **properties: str,
) -> Device:
    """A Device of protocol mqtt on `broker`; with `prefix`, its response and incoming topics are its own."""
    protocol = {"CommandTopic": f"command/{name}", "Broker": f"tcp://{broker.host}:{broker.port}",
                "Timeout": f"{int(TIMEOUT_S * 1000)}ms"}  # fmt: skip
    if prefix is not None:
        protocol |= {"ResponseTopic": f"{prefix}/response", "IncomingTopic": f"{prefix}/incoming"}
    return Device.model_validate({
        "metadata": {"name": name},
        "spec": {
            "serviceName": "device-mqtt", "profileName": PROFILE.metadata.name, "notify": False,
            "protocols": {"mqtt": protocol | properties},
            "autoEvents": [{"sourceName": source, "interval": interval} for source, interval in events],
        },
    })  # fmt: skip


def simulator(name: str, broker: Mosquitto, *, prefix: str | None = None, **options: Any) -> MqttDeviceSimulator:
    topics = {} if prefix is None else {"response_topic": f"{prefix}/response", "incoming_topic": f"{prefix}/incoming"}
    return MqttDeviceSimulator(name, port=broker.port, values=VALUES, **(topics | options))


@contextlib.asynccontextmanager
async def gateway(events: Events, **options: Any) -> AsyncIterator[Gateway]:
    gw = Gateway(events, **options)
    try:
        yield gw
    finally:
        await gw.close()


def driver_of(gw: Gateway) -> MqttDriver:
    driver = gw.drivers[MqttDriver]
    assert isinstance(driver, MqttDriver)
    return driver


def readings(event: dict[str, Any]) -> dict[str, str]:
    return {r["resourceName"]: r["value"] for r in event["readings"]}


def runner_reads(runner: DeviceRunner) -> Callable[[], Awaitable[bool]]:
    """A condition for `async_wait_for`: a read of the device succeeds."""

    async def check() -> bool:
        try:
            await runner.read(["humidity"])
        except ConnectionLost:
            return False
        return True

    return check


def bindings(resources: list[dict[str, Any]]) -> dict[str, ResourceBinding]:
    model = DeviceProfile.model_validate({"metadata": {"name": "p"}, "spec": {"deviceResources": resources}})
    return {r.name: ResourceBinding.from_resource(r) for r in model.spec.device_resources or []}


# --------------------------------------------------------------------------- pushed values


@async_test(TEST_TIMEOUT)
async def test_pushed_maps_and_bare_values_become_events(mosquitto: Mosquitto) -> None:
    """EdgeX's default topics; a bare value for a resource, a JSON object for a command and for a resource."""
    name, events = unique("pusher"), Events()
    pushes = [Push("temperature", bare=True), Push("Climate", ("temperature", "humidity"))]
    async with simulator(name, mosquitto, pushes=pushes, period=0.05) as sim, gateway(events) as gw:
        runner = await gw.apply(mqtt_device(name, mosquitto), PROFILE)
        await async_wait_for(
            lambda: {"temperature", "Climate"} <= {e["sourceName"] for e in events.of(name)},
            within=DEADLINE, what="pushed events of both sources",
        )  # fmt: skip
        bare = next(e for e in events.of(name) if e["sourceName"] == "temperature")
        assert bare["readings"][0]["valueType"] == "Float64" and set(readings(bare)) == {"temperature"}
        climate = [e for e in events.of(name) if e["sourceName"] == "Climate"]
        assert all(set(readings(e)) == {"temperature", "humidity"} for e in climate)
        humidities = [int(readings(e)["humidity"]) for e in climate]
        assert humidities == sorted(humidities) and humidities[-1] > VALUES["humidity"]  # fresh values each push
        assert events.items[-1][0].startswith(f"edgex/events/device/device-mqtt/{PROFILE.metadata.name}/{name}/")
        assert runner.state == "UP"  # pushes alone show that the device is there

        sim.send("message", "hello")  # a bare JSON string; and an object for a single resource
        sim.send("setpoint", {"setpoint": "2.25e+01"})  # EdgeX's string form of a float
        await async_wait_for(
            lambda: {"message", "setpoint"} <= {e["sourceName"] for e in events.of(name)},
            within=DEADLINE, what="the events sent one by one",
        )  # fmt: skip
        last = {e["sourceName"]: readings(e) for e in events.of(name)}
        assert last["message"] == {"message": "hello"} and last["setpoint"] == {"setpoint": "2.25e+01"}
        assert sum(driver_of(gw).malformed.values()) == 0


@async_test(TEST_TIMEOUT)
async def test_1000_malformed_messages_change_nothing_but_the_counter(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    name, prefix, events = unique("target"), unique("malformed"), Events()
    incoming = f"{prefix}/incoming"
    kinds: list[tuple[str, str, bytes]] = [  # (reason, topic, payload)
        ("json", f"{incoming}/{name}/Climate", b"{not json"),
        ("json", f"{incoming}/{name}/Climate", b"\xff" + os.urandom(31)),  # binary garbage
        ("device", f"{incoming}/nobody-{name}/Climate", b'{"temperature": 1.5}'),
        ("resource", f"{incoming}/{name}/Climate", b'{"pressure": 1013}'),
        ("resource", f"{incoming}/{name}/Climate", b'{"temperature": 1.5, "pressure": 1013}'),  # all or nothing
        ("value", f"{incoming}/{name}/humidity", b'"very humid"'),  # a string that is no Int32
        ("value", f"{incoming}/{name}/Climate", b'{"temperature": {"celsius": 20}}'),
        ("value", f"{incoming}/{name}/humidity", str(2**40).encode()),  # out of Int32 range
        ("shape", f"{incoming}/{name}/Climate", b"21.5"),  # a bare value for a command
        ("shape", f"{incoming}/{name}/Climate", b"{}"),
        ("topic", f"{incoming}/{name}", b'{"temperature": 1.5}'),
        ("topic", f"{incoming}/{name}/Climate/extra", b'{"temperature": 1.5}'),
    ]
    async with simulator(name, mosquitto, prefix=prefix, period=None) as sim, gateway(events) as gw:
        runner = await gw.apply(mqtt_device(name, mosquitto, prefix=prefix), PROFILE)
        driver = driver_of(gw)
        await async_wait_for(runner_reads(runner), within=DEADLINE, what="a first read")  # the driver is subscribed
        state = runner.state
        expected: Counter[str] = Counter()
        with caplog.at_level(logging.WARNING, logger="yurt_iot_drivers.mqtt.driver"):
            for i in range(1000):
                reason, topic, payload = kinds[i % len(kinds)]
                sim.publish(topic, payload)
                expected[reason] += 1
            for _ in range(10):  # responses that no request waits for are strays, not malformed
                sim.publish(f"{prefix}/response/{secrets.token_hex(8)}", b'{"humidity": 1}')
            await async_wait_for(
                lambda: driver.malformed.total() == 1000 and driver.stray_responses == 10,
                within=DEADLINE, what="every malformed message counted",
            )  # fmt: skip
        assert driver.malformed == expected
        assert events.of(name) == [] and runner.state == state
        errors = gw.metrics.registry.get_sample_value("yurt_iot_poll_errors_total", {"device": name, "kind": "reading"})
        assert not errors
        dropped = [r for r in caplog.records if r.name == "yurt_iot_drivers.mqtt.driver"]
        assert 1 <= len(dropped) <= 2, "malformed messages are logged at most once per interval"

        sim.send("Climate", {"temperature": 19.5, "humidity": 40})  # the driver and the gateway carry on
        await async_wait_for(lambda: events.of(name), within=DEADLINE, what="the valid message's event")
        assert [readings(e) for e in events.of(name)] == [{"temperature": "1.95e+01", "humidity": "40"}]
        values, errors_ = await runner.read(["humidity"])
        assert values == {"humidity": VALUES["humidity"]} and not errors_
        assert driver.malformed.total() == 1000


# --------------------------------------------------------------------------- reads and writes


@async_test(TEST_TIMEOUT)
async def test_get_and_set_round_trips_through_the_runtime(mosquitto: Mosquitto) -> None:
    name, prefix = unique("thermostat"), unique("rw")
    async with simulator(name, mosquitto, prefix=prefix, period=None) as sim, gateway(Events()) as gw:
        runner = await gw.apply(mqtt_device(name, mosquitto, prefix=prefix), PROFILE)
        names = [r["name"] for r in RESOURCES]
        values, errors = await runner.read(names)
        assert not errors and values == VALUES
        assert sim.requests["get"] == len(names)  # one request per resource, as EdgeX sends them

        await runner.write({"switch": "true", "message": "on duty", "setpoint": "22.75"})  # desiredValue strings
        assert sim.requests["set"] == 3
        assert (sim.values["switch"], sim.values["message"], sim.values["setpoint"]) == (True, "on duty", 22.75)
        values, errors = await runner.read(["switch", "message", "setpoint"])
        assert values == {"switch": True, "message": "on duty", "setpoint": 22.75} and not errors
        assert runner.state == "UP" and driver_of(gw).stray_responses == 0


@async_test(TEST_TIMEOUT)
async def test_a_resource_the_device_does_not_answer_for_fails_alone(mosquitto: Mosquitto) -> None:
    """An answer without the value fails its resource; so does no answer, once the device answered another."""
    name, prefix = unique("partial"), unique("partial")
    resources = [*RESOURCES, mqtt_resource("pressure", "Uint16", "R")]
    async with simulator(name, mosquitto, prefix=prefix, period=None) as sim, gateway(Events()) as gw:
        runner = await gw.apply(mqtt_device(name, mosquitto, prefix=prefix), profile("with-pressure", resources))
        values, errors = await runner.read(["humidity", "pressure"])  # the simulator answers {} for pressure
        assert values == {"humidity": VALUES["humidity"]}
        assert isinstance(errors["pressure"], ResourceFailure) and "no value for it" in str(errors["pressure"])

        sim.unanswered = {"temperature"}
        values, errors = await runner.read(["humidity", "temperature", "switch"])
        assert values == {"humidity": VALUES["humidity"]}
        assert set(errors) == {"temperature", "switch"}  # the Timeout left no time for switch
        assert all(isinstance(e, ResourceFailure) and "no response" in str(e) for e in errors.values())
        assert runner.state == "UP"
        with pytest.raises(ConnectionLost, match="no response"):  # not one answer: unreachable
            await runner.read(["temperature", "humidity"])


@async_test(TEST_TIMEOUT)
async def test_a_silent_device_goes_down_within_its_timeout_and_comes_back(mosquitto: Mosquitto) -> None:
    name, prefix = unique("sleeper"), unique("silent")
    states: list[str] = []
    events = Events()
    async with (
        simulator(name, mosquitto, prefix=prefix, period=None) as sim,
        gateway(events, on_state=lambda device, state, reason: states.append(state)) as gw,
    ):
        runner = await gw.apply(mqtt_device(name, mosquitto, prefix=prefix, events=[("humidity", "100ms")]), PROFILE)
        await async_wait_for(lambda: states == ["UP"] and events.of(name), within=DEADLINE, what="polls")
        sim.silent = True
        started = time.monotonic()
        with pytest.raises(ConnectionLost, match="no response"):
            await runner.read(["temperature"])
        # at most a poll in flight (one Timeout) ahead of the read, then the read's own Timeout
        assert TIMEOUT_S <= time.monotonic() - started < 2 * TIMEOUT_S + 0.5
        assert runner.state == "DOWN" and states == ["UP", "DOWN"]
        with pytest.raises(ConnectionLost):
            await runner.write({"switch": "true"})

        sim.silent = False
        await async_wait_for(lambda: runner.state == "UP", within=DEADLINE, what="the device UP again")
        stopped_at = len(events.of(name))
        await async_wait_for(lambda: len(events.of(name)) > stopped_at, within=DEADLINE, what="polls again")
        assert states == ["UP", "DOWN", "UP"]
        await runner.write({"switch": "true"})
        assert sim.values["switch"] is True


@async_test(TEST_TIMEOUT)
async def test_a_cancelled_read_leaves_the_driver_usable(mosquitto: Mosquitto) -> None:
    name, prefix = unique("cancel"), unique("cancel")
    async with simulator(name, mosquitto, prefix=prefix, period=None) as sim, gateway(Events()) as gw:
        runner = await gw.apply(mqtt_device(name, mosquitto, prefix=prefix), PROFILE)
        sim.silent = True
        read = asyncio.create_task(runner.read(["humidity", "temperature"]))
        await async_wait_for(lambda: sim.requests["get"] == 1, within=DEADLINE, what="the first request out")
        read.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await read
        sim.silent = False
        values, _ = await runner.read(["humidity"])
        assert values == {"humidity": VALUES["humidity"]}


# --------------------------------------------------------------------------- the broker


@async_test(TEST_TIMEOUT)
async def test_after_a_broker_restart_pushes_and_reads_resume(mosquitto: Mosquitto) -> None:
    name, events = unique("survivor"), Events()
    async with (
        simulator(name, mosquitto, pushes=[Push("Climate", ("temperature", "humidity"))], period=0.05) as sim,
        gateway(events) as gw,
    ):
        runner = await gw.apply(mqtt_device(name, mosquitto), PROFILE)
        await async_wait_for(lambda: len(events.of(name)) >= 3, within=DEADLINE, what="pushed events")
        driver = driver_of(gw)
        await asyncio.to_thread(mosquitto.stop)  # blocking: not on the event loop, which the clients run on
        try:
            with pytest.raises(ConnectionLost, match="not reachable"):
                await runner.read(["humidity"])
            assert runner.state == "DOWN"
        finally:
            if not mosquitto.running:
                await asyncio.to_thread(mosquitto.start)
        restarted_at = len(events.of(name))
        await async_wait_for(lambda: sim.subscribed, within=DEADLINE, what="the simulator back")
        await async_wait_for(lambda: len(events.of(name)) >= restarted_at + 3, within=DEADLINE, what="pushes again")
        await async_wait_for(runner_reads(runner), within=DEADLINE, what="reads again")
        assert runner.state == "UP"
        assert driver.reconnects == 1
        assert driver.malformed.total() == 0


@async_test(TEST_TIMEOUT)
async def test_a_push_only_device_follows_its_broker_down_and_up_without_reads(mosquitto: Mosquitto) -> None:
    """A device that only pushes is never read: its state comes from the driver's view of the broker."""
    name, states = unique("pushonly"), []
    gw = Gateway(Events(), on_state=lambda device, state, reason: states.append(state) if device == name else None)
    try:
        runner = await gw.apply(mqtt_device(name, mosquitto), PROFILE)
        await async_wait_for(lambda: runner.state == "UP", within=DEADLINE, what="UP once the broker is there")
        await asyncio.to_thread(mosquitto.stop)
        try:
            await async_wait_for(lambda: runner.state == "DOWN", within=DEADLINE, what="DOWN with the broker gone")
        finally:
            await asyncio.to_thread(mosquitto.start)
        await async_wait_for(lambda: runner.state == "UP", within=DEADLINE, what="UP again")
        assert states == ["UP", "DOWN", "UP"] and runner.last_connected_ms is not None
    finally:
        await gw.close()


@async_test(TEST_TIMEOUT)
async def test_devices_on_one_broker_share_one_connection(mosquitto: Mosquitto) -> None:
    names = [unique("shared") for _ in range(3)]
    before = connections_to(mosquitto.port)
    async with gateway(Events()) as gw:
        for name in names[:2]:
            await gw.apply(mqtt_device(name, mosquitto), PROFILE)
        await async_wait_for(lambda: connections_to(mosquitto.port) == before + 1, within=DEADLINE, what="1 conn")
        await gw.apply(mqtt_device(names[2], mosquitto, Username="someone-else"), PROFILE)  # other credentials
        await async_wait_for(lambda: connections_to(mosquitto.port) == before + 2, within=DEADLINE, what="2 conns")
        await gw.remove(names[2])
        await gw.remove(names[1])
        await async_wait_for(lambda: connections_to(mosquitto.port) == before + 1, within=DEADLINE, what="1 conn")
    await async_wait_for(lambda: connections_to(mosquitto.port) == before, within=DEADLINE, what="closed")


USER, PASSWORD = "gateway", "pw-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[Mosquitto]:
    with Mosquitto(tls=True, users={USER: PASSWORD}) as broker:
        yield broker


@async_test(TEST_TIMEOUT)
async def test_tls_and_credentials(secure_broker: Mosquitto) -> None:
    name = unique("secure")
    tls = {"Broker": f"ssl://{secure_broker.host}:{secure_broker.tls_port}", "CAFile": str(secure_broker.ca_file)}
    credentials = {"Username": USER, "Password": PASSWORD}
    sim = MqttDeviceSimulator(
        name, port=secure_broker.port, values=VALUES, period=None, username=USER, password=PASSWORD
    )
    async with sim, gateway(Events()) as gw:
        runner = await gw.apply(mqtt_device(name, secure_broker, **tls, **credentials), PROFILE)
        values, _ = await runner.read(["humidity"])
        assert values == {"humidity": VALUES["humidity"]}

        intruder = await gw.apply(mqtt_device(unique("intruder"), secure_broker, **tls, Username=USER,
                                              Password="wrong"), PROFILE)  # fmt: skip
        with pytest.raises(ConnectionLost, match="not reachable: connection refused"):
            await intruder.read(["humidity"])


# --------------------------------------------------------------------------- configuration


COMMAND = {"CommandTopic": "command/bad"}


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({}, "mqtt.CommandTopic is required"),
        ({"CommandTopic": "command/+/x"}, "mqtt.CommandTopic = 'command/+/x' contains an MQTT wildcard"),
        ({"CommandTopic": "command/x/#"}, "mqtt.CommandTopic = 'command/x/#' contains an MQTT wildcard"),
        (COMMAND | {"IncomingTopic": "data/"}, "mqtt.IncomingTopic = 'data/' ends with /"),
        (COMMAND | {"Broker": "http://127.0.0.1:1883"}, "mqtt.Broker = 'http://127.0.0.1:1883' has none of the"),
        (COMMAND | {"Broker": "tcp://user:pw@127.0.0.1"}, "mqtt.Broker holds credentials: they go in Username"),
        (COMMAND | {"Broker": "tcp://127.0.0.1:99999"}, "mqtt.Broker = 'tcp://127.0.0.1:99999' is not a URL"),
        (COMMAND | {"Broker": "tcp://127.0.0.1:1883/path"}, "mqtt.Broker = 'tcp://127.0.0.1:1883/path' is not scheme"),
        (COMMAND | {"QoS": "2"}, "mqtt.QoS = '2' is not 0 or 1"),
        (COMMAND | {"Timeout": "soon"}, "mqtt.Timeout = 'soon' is not a positive number of seconds"),
        (COMMAND | {"Password": "secret"}, "mqtt.Password needs a Username"),
        (COMMAND | {"CAFile": "/ca.pem"}, "mqtt.CAFile = '/ca.pem' needs a Broker with TLS"),
        (COMMAND | {"ResponseTopic": "same", "IncomingTopic": "same/#"}, "mqtt.IncomingTopic = 'same/#' is the"),
    ],
)
@async_test(TEST_TIMEOUT)
async def test_configuration_errors_name_the_device_and_property(properties: dict[str, str], message: str) -> None:
    driver = MqttDriver()
    try:
        with pytest.raises(ConfigurationError, match=f"^device 'bad': protocol property {re.escape(message)}"):
            await driver.add_device(DeviceBinding("bad", "mqtt", properties, bindings(RESOURCES)))
    finally:
        await driver.close()


@async_test(TEST_TIMEOUT)
async def test_a_resource_name_that_cannot_be_a_topic_level_is_refused() -> None:
    driver = MqttDriver()
    resources = bindings([mqtt_resource("temp/inside", "Float64")])
    with pytest.raises(ConfigurationError, match=r"device 'bad' resource 'temp/inside': .* topic level"):
        await driver.add_device(DeviceBinding("bad", "mqtt", {"CommandTopic": "command/bad"}, resources))
    await driver.close()


@async_test(TEST_TIMEOUT)
async def test_the_same_topics_cannot_be_responses_for_one_device_and_pushes_for_another(mosquitto: Mosquitto) -> None:
    driver = MqttDriver()
    broker = {"Broker": f"tcp://{mosquitto.host}:{mosquitto.port}"}
    try:
        await driver.add_device(DeviceBinding("a", "mqtt", {"CommandTopic": "c/a", "ResponseTopic": "x"} | broker))
        with pytest.raises(ConfigurationError, match=r"device 'b': on MQTT broker .* IncomingTopic as ResponseTopic"):
            await driver.add_device(DeviceBinding("b", "mqtt", {"CommandTopic": "c/b", "IncomingTopic": "x"} | broker))
    finally:
        await driver.close()


def test_write_payloads_are_json_as_edgex_writes_them() -> None:
    codec = Codec.compile("d", bindings([mqtt_resource("blob", "Binary"), mqtt_resource("x", "Float64")]))
    assert json.loads(codec.set_payload("blob", b"\x00\xff")) == {"blob": "AP8="}
    with pytest.raises(ResourceFailure, match="resource 'x': cannot write nan as JSON"):
        codec.set_payload("x", float("nan"))
    with pytest.raises(ResourceFailure, match="has no resource 'y'"):
        codec.set_payload("y", 1)
