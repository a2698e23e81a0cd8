"""The OPC-UA driver against the OPC-UA simulator (asyncua's server) over real sockets.

The driver is used through the SDK only (`add_device`, `read`, `write`, `close`, and the push sink), with
bindings built from a DeviceProfile as the runtime builds them, and once end to end through `Gateway`. The
simulator's counters show how many Read requests a read took and how many sessions the driver opened. Tests that
only read and write share one simulator, served from its own thread; tests that restart a server or need
security make their own. Every wait is for a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from wait_for2 import CancelledWithResultError
from yurt_iot_drivers.opcua import OpcUaDriver
from yurt_iot_drivers.opcua.config import Endpoint
from yurt_iot_drivers.opcua.session import Connection, Session

from yurt_iot.api.iot import Device, DeviceProfile
from yurt_iot.runtime.gateway import Gateway
from yurt_iot.runtime.sdk import (
    ConfigurationError,
    ConnectionLost,
    DeviceBinding,
    ReadResult,
    ResourceBinding,
    ResourceFailure,
    Value,
)
from yurt_iot.sim.opcua import (
    ADD,
    COUNTER,
    DEVICE,
    OpcUaSimulator,
    SimulatorThread,
    extra_node,
    make_certificate,
    numeric_node,
    string_node,
)
from yurt_iot.testing.ports import stable_free_port
from yurt_iot.testing.waiting import async_test, async_wait_for

TEST_TIMEOUT = 60.0
DEADLINE = 5.0
BATCH = 100
CLIENT_URI = "urn:yurt-iot:test:gateway"

VALUE_TYPES = {
    "Boolean": "Bool", "SByte": "Int8", "Byte": "Uint8", "Int16": "Int16", "UInt16": "Uint16", "Int32": "Int32",
    "UInt32": "Uint32", "Int64": "Int64", "UInt64": "Uint64", "Float": "Float32", "Double": "Float64",
    "String": "String", "ByteString": "Binary",
}  # fmt: skip
"""The EdgeX valueType of each OPC UA scalar type."""
EXTREMES: dict[str, Value] = {
    "Boolean": False, "SByte": -128, "Byte": 255, "Int16": -32768, "UInt16": 65535, "Int32": 2**31 - 1,
    "UInt32": 2**32 - 1, "Int64": -(2**63), "UInt64": 2**64 - 1, "Float": 3.25, "Double": 1e300,
    "String": "héllo wörld", "ByteString": b"\xff\x00\x7f",
}  # fmt: skip
"""A value at the edge of each type's range, to write."""


# --- helpers ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared() -> Iterator[SimulatorThread]:
    """One simulator for the tests that do not stop it, with the `BATCH` extra nodes, frozen (no ticks)."""
    thread = SimulatorThread(OpcUaSimulator(extra_nodes=BATCH, update_period=None))
    with thread:
        yield thread


def resource(name: str, value_type: str, read_write: str = "RW", **attributes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": name,
        "isHidden": False,
        "properties": {"valueType": value_type, "readWrite": read_write},
        "attributes": attributes,
    }


def profile(name: str, resources: list[dict[str, Any]], commands: list[dict[str, Any]] | None = None) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {"metadata": {"name": name}, "spec": {"deviceResources": resources, "deviceCommands": commands or []}}
    )


def bindings(resources: list[dict[str, Any]]) -> dict[str, ResourceBinding]:
    """The resources of a DeviceProfile, bound as the runtime binds them."""
    return {r.name: ResourceBinding.from_resource(r) for r in profile("test", resources).spec.device_resources or []}


def device(name: str, endpoint: str, resources: list[dict[str, Any]], **properties: str) -> DeviceBinding:
    return DeviceBinding(name, "opcua", {"Endpoint": endpoint, **properties}, bindings(resources))


class Pushes:
    """The push sink of a driver under test: every (time, device, source, values) it got."""

    def __init__(self) -> None:
        self.items: list[tuple[float, str, str, dict[str, Value]]] = []

    def __call__(self, device: str, source: str, values: Any) -> None:
        self.items.append((time.monotonic(), device, source, dict(values)))

    def of(self, device: str, source: str) -> list[Value]:
        return [values[source] for _, d, s, values in self.items if d == device and s == source]


@contextlib.asynccontextmanager
async def opcua_driver(**options: Any) -> AsyncIterator[OpcUaDriver]:
    driver = OpcUaDriver(**options)
    try:
        yield driver
    finally:
        await driver.close()


def values_of(result: ReadResult) -> dict[str, Value]:
    assert not result.errors, result.errors
    return result.values


async def read_until_up(driver: OpcUaDriver, name: str, resources: list[str]) -> ReadResult:
    """Read until the device answers; the ConnectionLost errors on the way are the outage."""
    while True:
        try:
            return await driver.read(name, resources)
        except ConnectionLost:
            await asyncio.sleep(0.02)


# --- reads and writes ---------------------------------------------------------------------------------------


@async_test(TEST_TIMEOUT)
async def test_every_scalar_type_is_read_and_written_as_its_own_type(shared: SimulatorThread) -> None:
    sim = shared.simulator
    resources = [resource(f"s{t}", vt, nodeId=string_node(t)) for t, vt in VALUE_TYPES.items()]
    resources += [resource(f"n{t}", vt, nodeId=numeric_node(t)) for t, vt in VALUE_TYPES.items()]
    names = [r["name"] for r in resources]
    nodes = {r["name"]: r["attributes"]["nodeId"] for r in resources}
    async with opcua_driver() as driver:
        await driver.add_device(device("plc", sim.endpoint, resources))
        result = await driver.read("plc", names)
        assert values_of(result) == {name: sim.value(nodes[name]) for name in names}
        assert result.requests == 1

        reads_before, writes_before = len(sim.stats.reads(*nodes.values())), sim.stats.write_requests
        await driver.write("plc", {f"n{t}": value for t, value in EXTREMES.items()})
        assert sim.stats.write_requests == writes_before + 1  # one Write request for all 13 values
        assert len(sim.stats.reads(*nodes.values())) == reads_before + 1  # and one Read of their DataTypes
        for type_name, value in EXTREMES.items():
            assert sim.value(numeric_node(type_name)) == value, type_name  # the server took it: types matched

        await driver.write("plc", {"nInt16": 1234, "nFloat": -0.5})
        assert len(sim.stats.reads(*nodes.values())) == reads_before + 1  # their DataTypes came from the cache
        await driver.write("plc", {"sInt16": 4321, "sBoolean": False, "nDouble": 0.25})
        assert sim.stats.reads(*nodes.values())[-1] == ("ns=2;s=Int16", "ns=2;s=Boolean")  # only the new ones
        back = values_of(await driver.read("plc", names))
        assert back == {name: sim.value(nodes[name]) for name in names}
        assert (back["nInt16"], back["nFloat"], back["sInt16"], back["sBoolean"], back["nDouble"]) == (
            1234, -0.5, 4321, False, 0.25,
        )  # fmt: skip


@async_test(TEST_TIMEOUT)
async def test_values_that_do_not_fit_the_nodes_type_are_refused_before_anything_is_sent(
    shared: SimulatorThread,
) -> None:
    sim = shared.simulator
    resources = [resource(t, VALUE_TYPES[t], nodeId=numeric_node(t)) for t in ("Int16", "Byte", "Boolean", "String")]
    resources.append(resource("sum", "Int32", "R", objectId=DEVICE, methodId=ADD, inputMap="1,2"))
    async with opcua_driver() as driver:
        await driver.add_device(device("plc", sim.endpoint, resources))
        before = sim.value(numeric_node("Int16"))
        writes = sim.stats.write_requests
        for values, reason in (
            ({"Int16": 5, "Byte": 256}, "256 does not fit Byte (0..255)"),
            ({"Int16": 40_000}, "40000 does not fit Int16"),
            ({"Boolean": 1}, "1 is not a Boolean"),
            ({"String": 5}, "5 is not a String"),
            ({"sum": 3}, "is a method call, which can be read only"),
            ({"nothing": 3}, "has no resource 'nothing'"),
        ):
            with pytest.raises(ResourceFailure, match=re.escape(reason)):
                await driver.write("plc", values)
        assert sim.stats.write_requests == writes
        assert sim.value(numeric_node("Int16")) == before
        await driver.write("plc", {"Int16": 12.5})  # a float is rounded to the nearest integer, ties to even
        assert sim.value(numeric_node("Int16")) == 12


@async_test(TEST_TIMEOUT)
async def test_100_nodes_take_one_read_request(shared: SimulatorThread) -> None:
    sim = shared.simulator
    resources = [resource(f"x{k}", "Int32", "R", nodeId=extra_node(k)) for k in range(BATCH)]
    names = [r["name"] for r in resources]
    nodes = [extra_node(k) for k in range(BATCH)]
    async with opcua_driver() as driver:
        await driver.add_device(device("batch", sim.endpoint, resources))
        await driver.read("batch", names[:1])  # connect first, so that the timings are of reads only
        before = len(sim.stats.reads(*nodes))
        latencies = []
        for _ in range(20):
            started = time.perf_counter()
            result = await driver.read("batch", names)
            latencies.append(time.perf_counter() - started)
            assert values_of(result) == {f"x{k}": k for k in range(BATCH)}
            assert result.requests == 1
        requests = sim.stats.reads(*nodes)[before:]
        assert requests == [tuple(nodes)] * 20  # each read: one Read request of exactly the 100 nodes
        assert statistics.median(latencies) < 0.1, latencies


@async_test(TEST_TIMEOUT)
async def test_a_bad_node_fails_that_resource_only(shared: SimulatorThread) -> None:
    sim = shared.simulator
    resources = [
        resource("good", "Int32", "R", nodeId=extra_node(7)),
        resource("missing", "Int32", "R", nodeId="ns=2;s=NoSuchNode"),
        resource("no_namespace", "Int32", "R", nodeId="ns=9;i=1"),
        resource("sum", "Int32", "R", objectId=DEVICE, methodId=ADD, inputMap="[20, 22]"),
        resource("no_method", "Int32", "R", objectId=DEVICE, methodId="ns=2;s=NoSuchMethod"),
    ]
    async with opcua_driver() as driver:
        await driver.add_device(device("plc", sim.endpoint, resources))
        result = await driver.read("plc", [r["name"] for r in resources] + ["unknown"])
        assert result.values == {"good": 7, "sum": 42}
        assert set(result.errors) == {"missing", "no_namespace", "no_method", "unknown"}
        assert all(isinstance(error, ResourceFailure) for error in result.errors.values())
        assert "ns=2;s=NoSuchNode: BadNodeIdUnknown" in str(result.errors["missing"])
        assert "'no_method'" in str(result.errors["no_method"]) and "the call failed" in str(result.errors["no_method"])
        assert result.requests == 2  # one Read and one Call
        with pytest.raises(ResourceFailure, match=r"'missing'.*BadNodeIdUnknown"):
            await driver.write("plc", {"missing": 1})


@async_test(TEST_TIMEOUT)
async def test_a_method_is_called_on_read_with_its_input_map_typed_as_it_declares(shared: SimulatorThread) -> None:
    sim = shared.simulator
    method = {"objectId": DEVICE, "methodId": ADD}
    resources = [
        resource("comma", "Int32", "R", inputMap="2, 3", **method),
        resource("json", "Int32", "R", inputMap="[40, -2]", **method),
        resource("strings", "Int64", "R", inputMap='["7", "8"]', **method),
        resource("yaml_list", "Int32", "R", inputMap=[10, "11"], **method),  # a list in the profile, as in EdgeX
        resource("one_short", "Int32", "R", inputMap="1", **method),
        resource("not_a_number", "Int32", "R", inputMap="1,two", **method),
        resource("overflow", "Int32", "R", inputMap=f"{2**31 - 1},1", **method),
    ]
    async with opcua_driver() as driver:
        await driver.add_device(device("calc", sim.endpoint, resources))
        calls = sim.stats.calls
        result = await driver.read("calc", [r["name"] for r in resources])
        assert result.values == {"comma": 5, "json": 38, "strings": 15, "yaml_list": 21}
        assert "takes 2 input arguments and inputMap has 1" in str(result.errors["one_short"])
        assert "argument 2: 'two' is not an integer" in str(result.errors["not_a_number"])
        assert "BadOutOfRange" in str(result.errors["overflow"])
        assert result.requests == 1  # the five valid calls went in one Call request
        assert sim.stats.calls == calls + 5


# --- subscriptions ------------------------------------------------------------------------------------------


@async_test(TEST_TIMEOUT)
async def test_a_subscription_pushes_each_change_within_one_publishing_interval(shared: SimulatorThread) -> None:
    sim = shared.simulator
    node = string_node("Double")
    pushes = Pushes()
    resources = [
        resource("level", "Float64", nodeId=node, subscribe=True),
        resource("slow", "Int32", nodeId=string_node("Int32"), subscribe="true", publishingInterval="300ms"),
        resource("polled", "Int16", nodeId=string_node("Int16")),
    ]
    async with opcua_driver(push=pushes) as driver:
        await driver.add_device(device("tank", sim.endpoint, resources))  # no read: subscribing connects by itself
        await async_wait_for(lambda: pushes.of("tank", "level"), within=DEADLINE, what="the current value")
        await async_wait_for(lambda: pushes.of("tank", "slow"), within=DEADLINE, what="the other interval's value")
        assert pushes.of("tank", "level") == [sim.value(node)]
        assert not pushes.of("tank", "polled")
        latencies = []
        for step in range(1, 11):
            value = step * 1.5
            started = time.monotonic()
            await shared.call(sim.set_value(node, value))
            await async_wait_for(lambda v=value: v in pushes.of("tank", "level"), within=DEADLINE, what="a change")
            latencies.append(next(t for t, _, s, v in pushes.items if s == "level" and v["level"] == value) - started)
        assert pushes.of("tank", "level")[-10:] == [step * 1.5 for step in range(1, 11)]
        assert max(latencies) < 0.1 + 0.05, latencies  # one 100 ms publishing interval, and scheduling slack
        await driver.remove_device("tank")
        count = len(pushes.items)
        await shared.call(sim.set_value(node, -1.0))
        await asyncio.sleep(0.3)  # three publishing intervals: nothing may come for a removed device
        assert len(pushes.items) == count


# --- failures -----------------------------------------------------------------------------------------------


@async_test(TEST_TIMEOUT)
async def test_a_server_restart_needs_no_gateway_restart() -> None:
    """Values flow again within 2 s of the server's return, polled and subscribed, on the same driver objects."""
    thread = SimulatorThread(OpcUaSimulator(update_period=0.05))
    async with thread as sim:
        pushes = Pushes()
        subscribed = [resource("counter", "Uint32", "R", nodeId=COUNTER, subscribe=True)]
        polled = [resource("value", "Int16", nodeId=string_node("Int16"))]
        async with opcua_driver(push=pushes) as push_driver, opcua_driver() as poll_driver:
            await push_driver.add_device(device("pusher", sim.endpoint, subscribed))  # never read: pushes only
            await poll_driver.add_device(device("poller", sim.endpoint, polled, Timeout="300ms"))
            await poll_driver.write("poller", {"value": 77})
            await async_wait_for(lambda: len(pushes.of("pusher", "counter")) >= 3, within=DEADLINE, what="pushes")
            assert sim.stats.sessions == 2

            await thread.call(sim.stop())
            with pytest.raises(ConnectionLost) as lost:
                for _ in range(100):  # until the driver notices
                    await poll_driver.read("poller", ["value"])
                    await asyncio.sleep(0.01)
            assert sim.endpoint in str(lost.value)
            await asyncio.sleep(1.0)  # an outage longer than the reconnect backoff's cap
            with pytest.raises(ConnectionLost, match=r"cannot connect|next attempt"):
                await poll_driver.read("poller", ["value"])
            pushed_before = len(pushes.items)

            await thread.call(sim.start())
            back = time.monotonic()
            assert values_of(await read_until_up(poll_driver, "poller", ["value"])) == {"value": 77}
            read_again = time.monotonic() - back
            await async_wait_for(lambda: len(pushes.items) > pushed_before + 1, within=DEADLINE, what="pushes again")
            pushed_again = pushes.items[pushed_before][0] - back
            assert read_again < 2.0 and pushed_again < 2.0, (read_again, pushed_again)
            before, after = pushes.items[pushed_before - 1][3]["counter"], pushes.items[-1][3]["counter"]
            assert isinstance(before, int) and isinstance(after, int)
            assert after > before  # the counter moved on: a live subscription, not a replay
            assert sim.stats.sessions == 4  # each driver made a new session


@async_test(TEST_TIMEOUT)
async def test_an_unreachable_server_fails_reads_at_once_and_backs_off() -> None:
    endpoint = f"opc.tcp://127.0.0.1:{stable_free_port()}/"
    async with opcua_driver() as driver:
        await driver.add_device(device("ghost", endpoint, [resource("v", "Int16", nodeId=string_node("Int16"))]))
        with pytest.raises(ConnectionLost, match="cannot connect"):
            await driver.read("ghost", ["v"])
        started = time.monotonic()
        with pytest.raises(ConnectionLost, match="the next attempt is in"):
            await driver.read("ghost", ["v"])
        assert time.monotonic() - started < 0.05


@async_test(TEST_TIMEOUT)
async def test_a_slow_answer_times_out_and_a_cancelled_read_leaves_the_session_usable(shared: SimulatorThread) -> None:
    sim = shared.simulator
    async with opcua_driver() as driver:
        await driver.add_device(
            device("slow", sim.endpoint, [resource("v", "Int32", "R", nodeId=extra_node(3))], Timeout="200ms")
        )
        assert values_of(await driver.read("slow", ["v"])) == {"v": 3}
        sessions = sim.stats.sessions
        sim.read_delay = 0.4
        try:
            sent = len(sim.stats.reads(extra_node(3)))
            pending = asyncio.create_task(driver.read("slow", ["v"]))
            await async_wait_for(lambda: len(sim.stats.reads(extra_node(3))) > sent, within=DEADLINE, what="sent")
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            started = time.monotonic()
            with pytest.raises(ConnectionLost, match=r"no answer within 0.2 s reading 1 node"):
                await driver.read("slow", ["v"])
            assert time.monotonic() - started < 0.35
        finally:
            sim.read_delay = 0.0

        async def read_again() -> ReadResult | None:  # once the late answers are in (and dropped)
            with contextlib.suppress(ConnectionLost):
                return await driver.read("slow", ["v"])
            return None

        result = await async_wait_for(read_again, within=DEADLINE, what="a read on the same session")
        assert values_of(result) == {"v": 3}
        assert sim.stats.sessions == sessions  # the same session: timeouts and cancellation did not drop it


@async_test(TEST_TIMEOUT)
async def test_a_deadline_that_races_a_response_is_a_timeout_and_not_a_cancellation(shared: SimulatorThread) -> None:
    """asyncua's wait (wait_for2 on Python 3.11) raises a CancelledError subclass when a response arrives just as the
    deadline cancels it; that must still be ConnectionLost, while a cancellation of the caller stays one."""

    waiting = asyncio.Event()

    async def answer_at_the_deadline(connection: Connection) -> None:
        waiting.set()
        try:
            await asyncio.sleep(DEADLINE)
        except asyncio.CancelledError as cancelled:
            raise CancelledWithResultError("the late answer", False) from cancelled

    session = Session(Endpoint(shared.simulator.endpoint), 1.0, lambda watch, value: None)
    try:
        with pytest.raises(ConnectionLost, match=r"no answer within 0.05 s reading"):
            await session.request("reading", 0.05, answer_at_the_deadline)
        waiting.clear()
        caller = asyncio.create_task(session.request("reading", DEADLINE, answer_at_the_deadline))
        await asyncio.wait_for(waiting.wait(), DEADLINE)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
    finally:
        await session.close()


@async_test(TEST_TIMEOUT)
async def test_devices_behind_one_endpoint_and_user_share_one_session(shared: SimulatorThread) -> None:
    sim = shared.simulator
    resources = [resource("v", "Int32", "R", nodeId=extra_node(1))]
    async with opcua_driver() as driver:
        sessions = sim.stats.sessions
        for name in ("a", "b", "c"):
            await driver.add_device(device(name, sim.endpoint, resources))
        await driver.add_device(device("other_user", sim.endpoint, resources, Username="operator", Password="x"))
        for name in ("a", "b", "c", "other_user"):
            assert values_of(await driver.read(name, ["v"])) == {"v": 1}
        assert sim.stats.sessions == sessions + 2
        await driver.remove_device("a")
        assert values_of(await driver.read("b", ["v"])) == {"v": 1}
        with pytest.raises(ConfigurationError, match="'a' has not been added"):
            await driver.read("a", ["v"])


# --- security -----------------------------------------------------------------------------------------------


@async_test(TEST_TIMEOUT)
async def test_a_secured_endpoint_needs_the_right_certificate_and_user(tmp_path: Path) -> None:
    gateway, stranger = make_certificate(CLIENT_URI), make_certificate("urn:yurt-iot:test:stranger")
    cert, key = gateway.write(tmp_path, "gateway")
    stranger_cert, stranger_key = stranger.write(tmp_path, "stranger")
    other_server_cert, _ = make_certificate("urn:other:server", server=True).write(tmp_path, "other-server")
    simulator = OpcUaSimulator(secured=True, trusted_clients=[gateway.der], users={"operator": "s3cret"})
    async with SimulatorThread(simulator) as sim:
        assert sim.server_certificate is not None
        server_cert, _ = sim.server_certificate.write(tmp_path, "server")
        secure = {"SecurityPolicy": "Basic256Sha256", "CertFile": str(cert), "KeyFile": str(key)}
        user = {"Username": "operator", "Password": "s3cret", "Timeout": "500ms"}
        good = {
            "encrypted": {**secure, **user},
            "signed": {**secure, **user, "SecurityMode": "Sign"},
            "pinned": {**secure, **user, "ServerCertFile": str(server_cert)},
        }
        bad = {
            "stranger": ({**secure, **user, "CertFile": str(stranger_cert), "KeyFile": str(stranger_key)},
                         "refused the client certificate: BadCertificateUntrusted"),
            "plain": (user, "offers no endpoint with SecurityPolicy None"),
            "anonymous": ({**secure, "Timeout": "500ms"}, "refused the user"),
            "wrong_password": ({**secure, **user, "Password": "guess"}, "refused the user: BadUserAccessDenied"),
            "other_server": ({**secure, **user, "ServerCertFile": str(other_server_cert)}, "no answer"),
        }  # fmt: skip
        resources = [resource("v", "Bool", nodeId=string_node("Boolean"))]
        async with opcua_driver() as driver:
            for name, properties in good.items():
                await driver.add_device(device(name, sim.endpoint, resources, **properties))
                assert values_of(await driver.read(name, ["v"])) == {"v": True}, name
            for name, (properties, reason) in bad.items():
                await driver.add_device(device(name, sim.endpoint, resources, **properties))
                with pytest.raises(ConnectionLost, match=reason):
                    await driver.read(name, ["v"])
            assert sim.stats.sessions == 3


# --- configuration ------------------------------------------------------------------------------------------


def test_properties_and_attributes_are_checked_when_the_device_is_added(tmp_path: Path) -> None:
    endpoint = "opc.tcp://127.0.0.1:4840/"
    cert, key = make_certificate(CLIENT_URI).write(tmp_path, "gateway")
    _, other_key = make_certificate(CLIENT_URI).write(tmp_path, "other")
    node = {"nodeId": string_node("Int16")}
    cases: list[tuple[dict[str, str], dict[str, Any], str]] = [
        ({"Endpoint": ""}, node, "opcua.Endpoint is required"),
        ({"Endpoint": "http://127.0.0.1:4840"}, node, "opcua.Endpoint = 'http://127.0.0.1:4840' is not an opc.tcp"),
        ({"Endpoint": "opc.tcp://127.0.0.1"}, node, "has no port"),
        ({"SecurityPolicy": "Basic512"}, node, "opcua.SecurityPolicy = 'Basic512' is none of None, Basic128Rsa15"),
        ({"SecurityMode": "Sign"}, node, "opcua.SecurityMode = 'Sign' needs a SecurityPolicy other than None"),
        ({"SecurityPolicy": "Basic256Sha256"}, node, "opcua.CertFile is required"),
        ({"SecurityPolicy": "Basic256Sha256", "SecurityMode": "Encrypt", "CertFile": str(cert), "KeyFile": str(key)},
         node, "opcua.SecurityMode = 'Encrypt' is none of Sign, SignAndEncrypt"),
        ({"SecurityPolicy": "Basic256Sha256", "CertFile": str(tmp_path / "nope.der"), "KeyFile": str(key)},
         node, "opcua.CertFile = .* cannot be read"),
        ({"SecurityPolicy": "Basic256Sha256", "CertFile": str(key), "KeyFile": str(key)},
         node, "opcua.CertFile = .* holds no X.509 certificate"),
        ({"SecurityPolicy": "Basic256Sha256", "CertFile": str(cert), "KeyFile": str(other_key)},
         node, "opcua.KeyFile = .* is not the private key of CertFile"),
        ({"Password": "secret"}, node, "opcua.Password is set without a Username"),
        ({"Timeout": "soon"}, node, "opcua.Timeout = 'soon' is not a positive number of seconds"),
        ({"PublishingInterval": "-5"}, node, "opcua.PublishingInterval = '-5' is not a positive number of millisec"),
        ({}, {}, "needs the attribute nodeId, or methodId and objectId"),
        ({}, {"nodeId": "ns=2;x=1"}, "attribute 'nodeId' = 'ns=2;x=1' is not a node id"),
        ({}, {"nodeId": 1001}, "attribute 'nodeId' = 1001 is not a node id string"),
        ({}, {"nodeId": "nsu=urn:x;s=y"}, "names its namespace by URI"),
        ({}, {"nodeId": "ns=70000;i=1"}, "namespace index beyond 65535"),
        ({}, {"nodeId": "ns=2;i=99999999999"}, "numeric identifier beyond 4294967295"),
        ({}, {**node, "methodId": ADD}, "attribute 'methodId' = .* cannot go with nodeId"),
        ({}, {"methodId": ADD}, "'methodId' = 'ns=2;s=Add' needs an objectId"),
        ({}, {"methodId": ADD, "objectId": DEVICE, "subscribe": True}, "applies to a nodeId only"),
        ({}, {"methodId": ADD, "objectId": DEVICE, "inputMap": "[1, "}, "'inputMap' = '\\[1, ' is not a JSON array"),
        ({}, {"methodId": ADD, "objectId": DEVICE, "inputMap": '[{"a": 1}]'}, "is not a JSON array of strings"),
        ({}, {**node, "subscribe": "yes"}, "'subscribe' = 'yes' is not true or false"),
        ({}, {**node, "subscribe": True, "publishingInterval": "often"}, "'publishingInterval' = 'often' is not"),
    ]  # fmt: skip

    async def check() -> None:
        async with opcua_driver() as driver:
            for properties, attributes, reason in cases:
                binding = device("d", endpoint, [resource("r", "Int16", **attributes)], **properties)
                with pytest.raises(ConfigurationError, match=reason):
                    await driver.add_device(binding)
            await driver.add_device(device("d", endpoint, [resource("r", "Int16", **node)]))  # fine, not connected

    asyncio.run(check())


# --- end to end ---------------------------------------------------------------------------------------------


class Events:
    """The sink of a gateway under test: every event it produced, decoded."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, topic: str, payload: bytes) -> bool:
        self.items.append((topic, json.loads(payload)))
        return True

    def readings(self, device: str, source: str) -> list[dict[str, Any]]:
        """The readings of the latest event of the source, by resource."""
        events = [e for _, e in self.items if e["deviceName"] == device and e["sourceName"] == source]
        return [{r["resourceName"]: r.get("value", r.get("binaryValue")) for r in e["readings"]} for e in events]


WRITTEN = {
    "Boolean": "true", "SByte": "-7", "Byte": "250", "Int16": "-300", "UInt16": "65000", "Int32": "-2000000000",
    "UInt32": "4000000000", "Int64": "-9000000000000000000", "UInt64": "18000000000000000000", "Float": "3.25",
    "Double": "110.25", "String": "gateway", "ByteString": "AAEC",
}  # fmt: skip
READ_BACK = {**WRITTEN, "Float": "3.25e+00", "Double": "1.1025e+02"}  # EdgeX's forms of floats


@async_test(TEST_TIMEOUT)
async def test_a_gateway_runs_an_opcua_device_from_its_profile(shared: SimulatorThread) -> None:
    sim = shared.simulator
    resources = [resource(t, vt, nodeId=string_node(t)) for t, vt in VALUE_TYPES.items()]
    resources += [
        resource("alarm", "Int32", nodeId=extra_node(5), subscribe=True),
        resource("sum", "Int32", "R", objectId=DEVICE, methodId=ADD, inputMap="[2, 3]"),
    ]
    commands = [
        {
            "name": "All",
            "isHidden": False,
            "readWrite": "R",
            "resourceOperations": [{"deviceResource": t, "defaultValue": ""} for t in [*VALUE_TYPES, "sum"]],
        }
    ]
    thing = Device.model_validate({
        "metadata": {"name": "plc"},
        "spec": {"serviceName": "device-opcua", "profileName": "all-types", "notify": False,
                 "protocols": {"opcua": {"Endpoint": sim.endpoint, "Timeout": "500ms"}},
                 "autoEvents": [{"sourceName": "All", "interval": "100ms"}]},
    })  # fmt: skip
    events = Events()
    gateway = Gateway(events)
    try:
        runner = await gateway.apply(thing, profile("all-types", resources, commands))
        await runner.write(WRITTEN)
        await async_wait_for(
            lambda: any(r == {**READ_BACK, "sum": "5"} for r in events.readings("plc", "All")),
            within=DEADLINE, what="an event with every written value",
        )  # fmt: skip
        assert sim.value(string_node("Int16")) == -300 and sim.value(string_node("ByteString")) == b"\x00\x01\x02"
        assert events.readings("plc", "alarm")[:1] == [{"alarm": "5"}]  # the subscribed resource: its own events
        assert events.items[-1][0].startswith("edgex/events/device/device-opcua/all-types/plc/")
        assert runner.state == "UP"
    finally:
        await gateway.close()
