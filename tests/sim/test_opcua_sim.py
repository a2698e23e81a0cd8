"""The OPC-UA simulator, driven over real sockets by asyncua's client (the gateway's own client library).

Starting an asyncua server takes about a second, so the tests that only look share one simulator, served from
its own thread (`SimulatorThread`); tests that stop it, or need security or users, make their own. Every wait is
for a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from asyncua.client.client import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.crypto.uacrypto import CertProperties
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from asyncua.ua.uaprotocol_auto import MessageSecurityMode
from asyncua.ua.uatypes import DataValue, NodeId, Variant, VariantType

from yurt_iot.sim.opcua import (
    ADD,
    COUNTER,
    DEVICE,
    SCALARS,
    SINE,
    OpcUaSimulator,
    SimulatorThread,
    extra_node,
    make_certificate,
    numeric_node,
    sine_value,
    string_node,
)
from yurt_iot.testing.ports import stable_free_port
from yurt_iot.testing.waiting import async_test, async_wait_for

TEST_TIMEOUT = 30.0
DEADLINE = 5.0
EXTRA = 150
CLIENT_URI = "urn:yurt-iot:test:client"


@pytest.fixture(scope="module")
def shared() -> Iterator[OpcUaSimulator]:
    with SimulatorThread(OpcUaSimulator(extra_nodes=EXTRA, update_period=0.05)) as sim:
        yield sim


@contextlib.asynccontextmanager
async def client(url: str, **options: str) -> AsyncIterator[Client]:
    connection = Client(url, timeout=2)
    connection.application_uri = CLIENT_URI
    if "user" in options:
        connection.set_user(options["user"])
        connection.set_password(options.get("password", ""))
    await connection.connect()
    try:
        yield connection
    finally:
        await connection.disconnect()


def ids(*texts: str) -> list[NodeId]:
    return [NodeId.from_string(text) for text in texts]


@async_test(TEST_TIMEOUT)
async def test_every_scalar_type_has_a_string_and_a_numeric_node_of_its_own_type(shared: OpcUaSimulator) -> None:
    nodes = [node for name in SCALARS for node in (string_node(name), numeric_node(name))]
    async with client(shared.endpoint) as ua:
        values = await ua.uaclient.read_attributes(ids(*nodes), AttributeIds.Value)
        types = await ua.uaclient.read_attributes(ids(*nodes), AttributeIds.DataType)
    for (name, (variant_type, initial)), pair in zip(
        SCALARS.items(), zip(values[::2], values[1::2], strict=True), strict=True
    ):
        for value in pair:
            assert value.Value is not None
            assert (value.Value.VariantType, value.Value.Value) == (variant_type, initial), name
    assert [t.Value.Value for t in types if t.Value] == [NodeId(vt.value) for vt, _ in SCALARS.values() for _ in "sn"]
    assert numeric_node("Int16") == "ns=2;i=1004" and string_node("Int16") == "ns=2;s=Int16"
    with pytest.raises(KeyError):
        string_node("Decimal")


@async_test(TEST_TIMEOUT)
async def test_writes_of_the_nodes_type_are_kept_and_other_types_refused(shared: OpcUaSimulator) -> None:
    int16, byte = ids(numeric_node("Int16"), string_node("Byte"))
    async with client(shared.endpoint) as ua:
        refused = await ua.uaclient.write_attributes(
            [int16], [DataValue(Variant(7, VariantType.Int32))], AttributeIds.Value
        )
        assert refused[0].value == StatusCodes.BadTypeMismatch
        written = await ua.uaclient.write_attributes(
            [int16, byte], [DataValue(Variant(7, VariantType.Int16)), DataValue(Variant(9, VariantType.Byte))],
            AttributeIds.Value,
        )  # fmt: skip
        assert all(status.is_good() for status in written)
        assert await ua.get_node(int16).read_value() == 7
    assert shared.value(numeric_node("Int16")) == 7
    assert shared.value(string_node("Int16")) == SCALARS["Int16"][1]  # the two nodes of a type are independent
    assert shared.stats.write_requests >= 2


@async_test(TEST_TIMEOUT)
async def test_one_read_request_of_many_nodes_counts_once_with_all_its_nodes(shared: OpcUaSimulator) -> None:
    nodes = [extra_node(k) for k in range(EXTRA)]
    async with client(shared.endpoint) as ua:
        before = shared.stats.read_requests
        values = await ua.uaclient.read_attributes(ids(*nodes), AttributeIds.Value)
        assert [v.Value.Value for v in values if v.Value] == list(range(EXTRA))
    assert shared.stats.reads(extra_node(0)) == [tuple(nodes)]
    assert shared.stats.read_requests > before
    assert shared.stats.nodes_read >= EXTRA


@async_test(TEST_TIMEOUT)
async def test_counter_and_sine_move_with_the_tick_and_notify_subscribers(shared: OpcUaSimulator) -> None:
    changes: list[int] = []

    class Handler:
        def datachange_notification(self, node: object, value: int, data: object) -> None:
            changes.append(value)

    async with client(shared.endpoint) as ua:
        subscription = await ua.create_subscription(20, Handler())
        await subscription.subscribe_data_change(ua.get_node(COUNTER))
        await async_wait_for(lambda: len(changes) >= 3, within=DEADLINE, what="three counter changes")
        assert changes == sorted(changes) and len(set(changes)) == len(changes)
        counter, sine = await ua.read_values([ua.get_node(COUNTER), ua.get_node(SINE)])
        assert sine == pytest.approx(sine_value(counter))
        assert counter <= shared.tick


@async_test(TEST_TIMEOUT)
async def test_add_takes_two_int32_and_refuses_other_types(shared: OpcUaSimulator) -> None:
    async with client(shared.endpoint) as ua:
        device, add = ua.get_node(DEVICE), ua.get_node(ADD)
        assert await device.call_method(add, Variant(2, VariantType.Int32), Variant(-5, VariantType.Int32)) == -3
        with pytest.raises(UaStatusCodeError) as refused:
            await device.call_method(add, "2", "3")  # Strings, as EdgeX sends its inputMap
        assert refused.value.code == StatusCodes.BadInvalidArgument
        with pytest.raises(UaStatusCodeError) as missing:
            await device.call_method(add, Variant(2, VariantType.Int32))
        assert missing.value.code == StatusCodes.BadArgumentsMissing
        arguments = await (await add.get_child("0:InputArguments")).read_value()
        assert [(a.Name, a.DataType) for a in arguments] == [("a", NodeId(6)), ("b", NodeId(6))]
    assert shared.stats.calls >= 3
    assert shared.value(extra_node(EXTRA - 1)) == EXTRA - 1


@async_test(TEST_TIMEOUT)
async def test_read_delay_holds_reads_back(shared: OpcUaSimulator) -> None:
    async with client(shared.endpoint) as ua:
        node = ua.get_node(string_node("Double"))
        shared.read_delay = 0.3
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await node.read_value()
            assert loop.time() - started >= 0.3
        finally:
            shared.read_delay = 0.0


@async_test(TEST_TIMEOUT)
async def test_a_restart_drops_sessions_and_keeps_port_values_and_tick() -> None:
    async with OpcUaSimulator(update_period=0.05) as sim:
        port = sim.port
        await sim.set_value(string_node("String"), "kept")
        async with client(sim.endpoint) as ua:
            await async_wait_for(lambda: sim.tick >= 2, within=DEADLINE, what="two ticks")
            await sim.stop()
            assert not sim.running
            await async_wait_for(lambda: ua.uaclient.state.value == "disconnected", within=DEADLINE, what="loss seen")
            tick = sim.tick
            await sim.set_value(string_node("Int32"), 42)  # while off, as a value the device keeps
            await sim.start()
        assert sim.port == port and sim.tick == tick
        async with client(sim.endpoint) as ua:
            text, number = await ua.read_values([ua.get_node(string_node("String")), ua.get_node(string_node("Int32"))])
            assert (text, number) == ("kept", 42)
            assert await ua.get_node(COUNTER).read_value() >= tick
        assert sim.stats.sessions == 2


@async_test(TEST_TIMEOUT)
async def test_frozen_simulator_does_not_tick() -> None:
    async with OpcUaSimulator(update_period=None) as sim, client(sim.endpoint) as ua:
        await asyncio.sleep(0)  # let a ticker run, were there one
        assert sim.tick == 0 and await ua.get_node(COUNTER).read_value() == 0


@async_test(TEST_TIMEOUT)
async def test_secured_simulator_offers_basic256sha256_only_and_trusts_the_given_clients(tmp_path: Path) -> None:
    trusted, stranger = make_certificate(CLIENT_URI), make_certificate("urn:yurt-iot:test:stranger")
    async with OpcUaSimulator(secured=True, trusted_clients=[trusted.der]) as sim:
        assert sim.server_certificate is not None
        probe = Client(sim.endpoint, timeout=2)
        endpoints = await probe.connect_and_get_server_endpoints()
        assert sorted((e.SecurityPolicyUri.rpartition("#")[2], e.SecurityMode.name) for e in endpoints) == [
            ("Basic256Sha256", "Sign"),
            ("Basic256Sha256", "SignAndEncrypt"),
        ]
        assert endpoints[0].ServerCertificate == sim.server_certificate.der

        async def connect(certificate_owner: str, mode: MessageSecurityMode) -> Client:
            identity = trusted if certificate_owner == "trusted" else stranger
            ua = Client(sim.endpoint, timeout=2)
            ua.application_uri = identity.application_uri
            await ua.set_security(
                SecurityPolicyBasic256Sha256,
                CertProperties(identity.der, "der"),
                CertProperties(identity.private_key, "pem"),
                server_certificate=CertProperties(sim.server_certificate.der, "der")
                if sim.server_certificate
                else None,
                mode=mode,
            )
            await ua.connect()
            return ua

        for mode in (MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt):
            ua = await connect("trusted", mode)
            assert await ua.get_node(string_node("Boolean")).read_value() is True
            await ua.disconnect()
        with pytest.raises(UaStatusCodeError) as untrusted:
            await connect("stranger", MessageSecurityMode.SignAndEncrypt)
        assert untrusted.value.code == StatusCodes.BadCertificateUntrusted
        with pytest.raises(UaError, match="No matching endpoints"):
            async with client(sim.endpoint):
                pass
        assert sim.stats.sessions == 2
        cert_path, key_path = trusted.write(tmp_path, "client")
        assert cert_path.read_bytes() == trusted.der and key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY")


@async_test(TEST_TIMEOUT)
async def test_users_need_their_password() -> None:
    async with OpcUaSimulator(users={"operator": "s3cret"}) as sim:
        async with client(sim.endpoint, user="operator", password="s3cret") as ua:
            assert await ua.get_node(string_node("Int64")).read_value() == SCALARS["Int64"][1]
        for options in ({}, {"user": "operator", "password": "wrong"}, {"user": "intruder", "password": "s3cret"}):
            with pytest.raises(UaStatusCodeError):
                async with client(sim.endpoint, **options):
                    pass
        assert sim.stats.sessions == 1


def test_cli_prints_the_endpoint_and_stops_on_sigterm() -> None:
    port = stable_free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "yurt_iot.sim.opcua", "--port", str(port), "--extra-nodes", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line == f"opc.tcp://127.0.0.1:{port}/"

        async def read() -> int:
            async with client(line) as ua:
                value: int = await ua.get_node(extra_node(2)).read_value()
                return value

        assert asyncio.run(read()) == 2
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=DEADLINE)
        assert process.returncode == 0, errors
        assert "served 1 sessions" in errors
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
