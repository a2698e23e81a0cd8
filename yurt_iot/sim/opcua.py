"""An OPC-UA device simulator on asyncua's own server, for tests, benchmarks and the demo.

Why asyncua's server and not a fake: the gateway's OPC-UA driver has to meet the real binary protocol, sessions,
secure channels, subscriptions and the type checks a server makes on writes. On top of that server this adds what
tests of the gateway need to see and provoke.

The address space, in namespace 2 (`NAMESPACE_URI`), under the object ``ns=2;s=Device``:

* every built-in scalar type in `SCALARS`, twice: a variable with a string id ``ns=2;s=<Type>`` and one with a
  numeric id ``ns=2;i=<1000 + the type's VariantType number>`` (``ns=2;s=Int16`` and ``ns=2;i=1004``), both
  writable and independent. Like most servers, this one refuses a write of another type (BadTypeMismatch): an
  Int32 sent to an Int16 node is an error, not a conversion. See `string_node` and `numeric_node`.
* ``ns=2;s=Counter`` (UInt32), the tick, and ``ns=2;s=Sine`` (Double), ``1000 * sin(2*pi*tick/100)``; the tick
  advances every `update_period` seconds, so subscribers see a change every period.
* the method ``ns=2;s=Add`` (Int32 a, Int32 b) -> Int32 a + b on the object, which refuses arguments of other
  types with BadInvalidArgument, as servers that check their methods' signatures do.
* `extra_nodes` read-only Int32 variables ``ns=2;i=10000`` + k holding k (`extra_node`), for batching tests.

It also counts what clients asked for (`SimulatorStats`): Read requests and the nodes of each, Write requests,
method calls and sessions activated, so that a test can prove that 100 nodes took one Read request. The Read
count comes from asyncua's server callback for reads (``CallbackType.PreRead``), which the server runs for every
Read service request of a client session; `read_delay` holds each of them back, to simulate a slow server.

Security and users: with ``secured=True`` the server offers only Basic256Sha256 endpoints (Sign and
SignAndEncrypt) with a certificate made at construction (`server_certificate`); `trusted_clients` limits
sessions to the given client certificates (others get BadCertificateUntrusted); `users` requires a user name and
password (anonymous sessions are refused). `make_certificate` makes client certificates for tests.

`SimulatorThread` runs a simulator in a thread of its own, so that tests with an event loop each can share one.

`stop` and `start` switch the device off and on: connections, sessions and subscriptions are gone, and the port,
the values written and the tick are kept. Each start builds a new asyncua server, which takes about a second
(asyncua builds the standard address space in a worker thread, so the event loop keeps running meanwhile).

It listens on 127.0.0.1 only. As a process::

    python -m yurt_iot.sim.opcua --port 4840 --extra-nodes 100

prints the endpoint URL on stdout, then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import ipaddress
import math
import socket
import sys
import threading
from collections import deque
from collections.abc import Collection, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaprotocol_auto import AnonymousIdentityToken, CallMethodResult, UserNameIdentityToken
from asyncua.ua.uaprotocol_hand import Argument
from asyncua.ua.uatypes import (
    DataValue,
    LocalizedText,
    NodeId,
    SecurityPolicyType,
    StatusCode,
    UInt32,
    Variant,
    VariantType,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from yurt_iot.sim.process import until_signalled
from yurt_iot.testing.ports import LOOPBACK, stable_free_port

__all__ = [
    "ADD",
    "COUNTER",
    "DEVICE",
    "NAMESPACE_URI",
    "SCALARS",
    "SINE",
    "Certificate",
    "OpcUaSimulator",
    "SimulatorStats",
    "SimulatorThread",
    "extra_node",
    "make_certificate",
    "numeric_node",
    "sine_value",
    "string_node",
]

T = TypeVar("T")

NAMESPACE_URI: Final = "urn:yurt-iot:sim:opcua"
SERVER_URI: Final = "urn:yurt-iot:sim:opcua:server"
NAMESPACE: Final = 2
"""The index asyncua gives the first namespace a server registers (0 is OPC UA's, 1 the server's own)."""

SCALARS: Final[Mapping[str, tuple[VariantType, Any]]] = {
    "Boolean": (VariantType.Boolean, True),
    "SByte": (VariantType.SByte, -5),
    "Byte": (VariantType.Byte, 200),
    "Int16": (VariantType.Int16, -300),
    "UInt16": (VariantType.UInt16, 60_000),
    "Int32": (VariantType.Int32, -70_000),
    "UInt32": (VariantType.UInt32, 4_000_000_000),
    "Int64": (VariantType.Int64, -9_000_000_000),
    "UInt64": (VariantType.UInt64, 18_000_000_000_000_000_000),
    "Float": (VariantType.Float, 1.5),
    "Double": (VariantType.Double, -2.25),
    "String": (VariantType.String, "hello"),
    "ByteString": (VariantType.ByteString, b"\x00\x01\xfe"),
}
"""Scalar type name -> (its variant type, the initial value of both of its variables)."""

DEVICE: Final = f"ns={NAMESPACE};s=Device"
COUNTER: Final = f"ns={NAMESPACE};s=Counter"
SINE: Final = f"ns={NAMESPACE};s=Sine"
ADD: Final = f"ns={NAMESPACE};s=Add"

SINE_AMPLITUDE: Final = 1000.0
SINE_TICKS: Final = 100
"""Ticks per period of the sine: 10 s at the default update period."""
EXTRA_NODES_BASE: Final = 10_000
RECENT_READS: Final = 10_000
"""Read requests whose node lists `SimulatorStats` keeps, so that a long-running simulator stays bounded."""


def string_node(type_name: str) -> str:
    """The node id of the string-id variable of a scalar type, e.g. ``ns=2;s=Int16``."""
    _check_scalar(type_name)
    return f"ns={NAMESPACE};s={type_name}"


def numeric_node(type_name: str) -> str:
    """The node id of the numeric-id variable of a scalar type, e.g. ``ns=2;i=1004`` for Int16."""
    variant_type, _ = _check_scalar(type_name)
    return f"ns={NAMESPACE};i={1000 + variant_type.value}"


def extra_node(k: int) -> str:
    """The node id of extra variable `k` (0-based), which holds the Int32 `k`."""
    return f"ns={NAMESPACE};i={EXTRA_NODES_BASE + k}"


def sine_value(tick: int) -> float:
    """What ``ns=2;s=Sine`` holds while `tick` is the simulator's tick."""
    return SINE_AMPLITUDE * math.sin(2 * math.pi * tick / SINE_TICKS)


def _check_scalar(type_name: str) -> tuple[VariantType, Any]:
    found = SCALARS.get(type_name)
    if found is None:
        raise KeyError(f"{type_name!r} is none of the simulated scalar types: {', '.join(SCALARS)}")
    return found


@dataclass(frozen=True, slots=True)
class Certificate:
    """An application instance certificate (DER) with its private key (PEM, unencrypted)."""

    der: bytes
    private_key: bytes
    application_uri: str

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write ``<name>.der`` and ``<name>.pem`` into `directory`; returns (certificate, key) paths."""
        cert_path, key_path = directory / f"{name}.der", directory / f"{name}.pem"
        cert_path.write_bytes(self.der)
        key_path.write_bytes(self.private_key)
        return cert_path, key_path


def make_certificate(application_uri: str, *, server: bool = False, common_name: str | None = None) -> Certificate:
    """A self-signed certificate for `application_uri` on 127.0.0.1, localhost and this host, valid for a year.

    OPC UA identifies applications by the URI in the certificate's subjectAltName, and checks the host name;
    a client certificate has the clientAuth key usage, a server certificate serverAuth as well.
    """
    key = cert_gen.generate_private_key()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(application_uri),
        *(x509.DNSName(name) for name in dict.fromkeys(("localhost", socket.gethostname()))),
        x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
    ]
    cert = cert_gen.generate_self_signed_app_certificate(key, common_name or application_uri, {}, names, usages)
    return Certificate(cert.public_bytes(Encoding.DER), cert_gen.dump_private_key_as_pem(key), application_uri)


class SimulatorStats:
    """What clients asked the simulator for, counted across restarts."""

    def __init__(self) -> None:
        self.read_requests = 0
        """Read service requests."""
        self.nodes_read = 0
        """Nodes the Read requests asked for, in total."""
        self.write_requests = 0
        self.calls = 0
        """Method calls (each method of a Call request counts)."""
        self.sessions = 0
        """Sessions activated."""
        self._recent: deque[tuple[str, ...]] = deque(maxlen=RECENT_READS)

    def reads(self, *node_ids: str) -> list[tuple[str, ...]]:
        """The node ids of each recent Read request that asked for any of `node_ids` (of every one without them).

        Node ids are in their string form, ``ns=2;i=10000``. A client's keepalive reads (asyncua reads the server
        state every second) are Read requests too, which is why a test asks for the requests of its nodes.
        """
        wanted = set(node_ids)
        return [request for request in self._recent if not wanted or not wanted.isdisjoint(request)]

    def reset(self) -> None:
        self.read_requests = self.nodes_read = self.write_requests = self.calls = self.sessions = 0
        self._recent.clear()

    def _record_read(self, nodes: Iterable[NodeId]) -> None:
        ids = tuple(node.to_string() for node in nodes)
        self.read_requests += 1
        self.nodes_read += len(ids)
        self._recent.append(ids)


class _Users:
    """asyncua's user manager hook, called on every ActivateSession: counts sessions and checks passwords."""

    def __init__(self, stats: SimulatorStats, users: Mapping[str, str] | None) -> None:
        self._stats, self._users = stats, users

    def get_user(
        self, iserver: InternalServer, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if self._users is not None and (username is None or self._users.get(username) != password):
            return None  # asyncua answers BadUserAccessDenied
        self._stats.sessions += 1
        return User(role=UserRole.User, name=username)


class OpcUaSimulator:
    """An OPC-UA server on 127.0.0.1 with the address space of the module docstring, counters and faults.

    ``async with OpcUaSimulator() as sim:`` serves at ``sim.endpoint``. Without `port`, a free port below the
    kernel's ephemeral range is chosen, which no outgoing connection can take while the simulator is stopped
    (see :mod:`yurt_iot.testing.ports`). `update_period` None freezes the counter and the sine at tick 0.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        update_period: float | None = 0.1,
        extra_nodes: int = 0,
        secured: bool = False,
        trusted_clients: Collection[bytes] | None = None,
        users: Mapping[str, str] | None = None,
    ) -> None:
        if update_period is not None and update_period <= 0:
            raise ValueError("update_period must be positive, or None to freeze the counter and the sine")
        if not 0 <= extra_nodes <= 100_000:
            raise ValueError(f"extra_nodes must be 0..100000, got {extra_nodes}")
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"port must be 1..65535, or None for a free one; got {port}")
        if trusted_clients is not None and not secured:
            raise ValueError("trusted_clients needs secured=True: only a secure channel carries a client certificate")
        self.host = LOOPBACK
        self.port = stable_free_port(LOOPBACK) if port is None else port
        self.update_period = update_period
        self.extra_nodes = extra_nodes
        self.secured = secured
        self.trusted_clients = None if trusted_clients is None else frozenset(trusted_clients)
        self.users = None if users is None else dict(users)
        self.server_certificate: Certificate | None = (
            make_certificate(SERVER_URI, server=True, common_name="yurt-iot OPC-UA simulator") if secured else None
        )
        """The certificate the secured server presents (None unless `secured`)."""
        self.read_delay = 0.0
        """Seconds each Read request is held before it is answered; requests behind it on its connection wait too."""
        self.stats = SimulatorStats()
        self._tick = 0
        self._values: dict[str, Variant] = {}
        """Values written to the variables, kept while the server is off."""
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> str:
        """The endpoint URL, ``opc.tcp://127.0.0.1:<port>/``."""
        return f"opc.tcp://{self.host}:{self.port}/"

    @property
    def tick(self) -> int:
        """How many update periods have passed while the server was on."""
        return self._tick

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Build the server, with the values kept from before a stop, and listen."""
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        server = await self._build()
        try:
            await server.start()
        except OSError as error:
            raise OSError(f"the OPC-UA simulator cannot listen on {self.host}:{self.port}: {error}") from error
        self._server = server
        if self.update_period is not None:
            self._ticker = asyncio.create_task(self._advance(server, self.update_period), name="opcua-sim-ticker")

    async def stop(self) -> None:
        """Switch the device off: close every connection and forget sessions and subscriptions; keep the values."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        server, self._server = self._server, None
        if server is not None:
            self._values = {node: self._variant(server, node) for node in self._writable()}
            # asyncua keeps a session with subscriptions after its connection closes (for the client to take it
            # over); a device switched off keeps nothing. Without subscriptions, sessions end with the connections.
            subscriptions = server.iserver.subscription_service
            await subscriptions.delete_subscriptions(list(subscriptions.subscriptions))
            # A client that reconnects at once could otherwise slip in between asyncua closing the connections and
            # the listening socket, and its server would wait for that connection forever (Python 3.11's
            # Server.wait_closed waits for every connection): new connections are refused from now on.
            server.iserver.max_connections = 0
            await server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def value(self, node_id: str) -> Any:
        """The value of a variable (while stopped: the value it will have when started)."""
        if self._server is not None:
            return self._variant(self._server, node_id).Value
        if node_id in self._values:
            return self._values[node_id].Value
        return self._initial(node_id).Value

    async def set_value(self, node_id: str, value: Any) -> None:
        """Change a variable as the device itself would (subscribers are notified), keeping its variant type.

        While the simulator is stopped, the value is kept for the next start; the counter, the sine and the extra
        nodes start from the tick and `k` again.
        """
        variant_type = self._initial(node_id).VariantType
        variant = Variant(value, variant_type)
        if self._server is None:
            self._values[node_id] = variant
        else:
            await self._server.write_attribute_value(NodeId.from_string(node_id), DataValue(variant))

    # --- the server ------------------------------------------------------------------------------------------

    async def _build(self) -> Server:
        server = Server(user_manager=_Users(self.stats, self.users))  # type: ignore[arg-type]  # a duck-typed manager
        await server.init()
        server.disable_clock()  # its task would hold up a stop for up to a second
        server.set_endpoint(self.endpoint)
        server.set_server_name("yurt-iot OPC-UA simulator")
        await server.set_application_uri(SERVER_URI)
        if self.server_certificate is not None:
            server.set_security_policy(
                [SecurityPolicyType.Basic256Sha256_Sign, SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
            )
            await server.load_certificate(self.server_certificate.der, format="der")
            await server.load_private_key(self.server_certificate.private_key, format="pem")
        else:
            server.set_security_policy([SecurityPolicyType.NoSecurity])
        if self.users is None:
            server.set_identity_tokens([AnonymousIdentityToken, UserNameIdentityToken])
        else:
            server.set_identity_tokens([UserNameIdentityToken])
        if self.trusted_clients is not None:
            server.set_certificate_validator(self._validate_client)
        namespace = await server.register_namespace(NAMESPACE_URI)
        assert namespace == NAMESPACE, f"asyncua gave the simulator's namespace index {namespace}"
        await self._populate(server)
        server.subscribe_server_callback(CallbackType.PreRead, self._on_read)
        server.subscribe_server_callback(CallbackType.PreWrite, self._on_write)
        return server

    async def _populate(self, server: Server) -> None:
        device = await server.nodes.objects.add_object(NodeId.from_string(DEVICE), "Device")
        for node_id in self._writable():
            name = node_id.rpartition("=")[2]
            variable = await device.add_variable(NodeId.from_string(node_id), name, self._stored(node_id))
            await variable.set_writable()
        await device.add_variable(NodeId.from_string(COUNTER), "Counter", Variant(self._tick, VariantType.UInt32))
        await device.add_variable(NodeId.from_string(SINE), "Sine", Variant(sine_value(self._tick), VariantType.Double))
        for k in range(self.extra_nodes):
            await device.add_variable(NodeId.from_string(extra_node(k)), f"Extra{k}", Variant(k, VariantType.Int32))
        inputs = [_argument("a", VariantType.Int32), _argument("b", VariantType.Int32)]
        await device.add_method(
            NodeId.from_string(ADD), "Add", self._add, inputs, [_argument("sum", VariantType.Int32)]
        )

    def _writable(self) -> list[str]:
        return [node for name in SCALARS for node in (string_node(name), numeric_node(name))]

    def _stored(self, node_id: str) -> Variant:
        return self._values.get(node_id) or self._initial(node_id)

    def _initial(self, node_id: str) -> Variant:
        for name, (variant_type, value) in SCALARS.items():
            if node_id in (string_node(name), numeric_node(name)):
                return Variant(value, variant_type)
        if node_id == COUNTER:
            return Variant(self._tick, VariantType.UInt32)
        if node_id == SINE:
            return Variant(sine_value(self._tick), VariantType.Double)
        number = node_id.removeprefix(f"ns={NAMESPACE};i=")
        if number.isdigit() and 0 <= int(number) - EXTRA_NODES_BASE < self.extra_nodes:
            return Variant(int(number) - EXTRA_NODES_BASE, VariantType.Int32)
        raise KeyError(f"{node_id} is no variable of the simulator")

    @staticmethod
    def _variant(server: Server, node_id: str) -> Variant:
        value = server.read_attribute_value(NodeId.from_string(node_id)).Value
        assert value is not None, f"{node_id} has no value"
        return value

    async def _advance(self, server: Server, period: float) -> None:
        counter, sine = NodeId.from_string(COUNTER), NodeId.from_string(SINE)
        while True:
            await asyncio.sleep(period)
            self._tick += 1
            await server.write_attribute_value(counter, DataValue(Variant(self._tick, VariantType.UInt32)))
            await server.write_attribute_value(sine, DataValue(Variant(sine_value(self._tick), VariantType.Double)))

    # --- hooks -----------------------------------------------------------------------------------------------

    async def _on_read(self, event: ServerItemCallback, _dispatcher: object) -> None:
        if not event.is_external:  # the server's own reads, e.g. of its clock
            return
        self.stats._record_read(item.NodeId for item in event.request_params.NodesToRead)
        if self.read_delay > 0:
            await asyncio.sleep(self.read_delay)

    def _on_write(self, event: ServerItemCallback, _dispatcher: object) -> None:
        if event.is_external:
            self.stats.write_requests += 1

    async def _add(self, parent: NodeId, *arguments: Variant) -> CallMethodResult | list[Variant]:
        self.stats.calls += 1
        if len(arguments) != 2:
            return _status_result(
                StatusCodes.BadArgumentsMissing if len(arguments) < 2 else StatusCodes.BadTooManyArguments
            )
        a, b = arguments
        if a.VariantType is not VariantType.Int32 or b.VariantType is not VariantType.Int32:
            refused = CallMethodResult()
            refused.StatusCode = StatusCode(UInt32(StatusCodes.BadInvalidArgument))
            fits = {True: StatusCodes.Good, False: StatusCodes.BadTypeMismatch}
            refused.InputArgumentResults = [
                StatusCode(UInt32(fits[arg.VariantType is VariantType.Int32])) for arg in (a, b)
            ]
            return refused
        total = a.Value + b.Value
        if not -(2**31) <= total < 2**31:
            return _status_result(StatusCodes.BadOutOfRange)
        return [Variant(total, VariantType.Int32)]

    async def _validate_client(self, certificate: x509.Certificate, _application: object) -> None:
        assert self.trusted_clients is not None
        if certificate.public_bytes(Encoding.DER) not in self.trusted_clients:
            raise ServiceError(StatusCodes.BadCertificateUntrusted)


def _argument(name: str, variant_type: VariantType) -> Argument:
    argument = Argument()
    argument.Name = name
    argument.DataType = NodeId(variant_type.value)  # type: ignore[arg-type]  # asyncua types ids as ua.Int32
    argument.ValueRank = -1  # a scalar
    argument.Description = LocalizedText(name)
    return argument


def _status_result(code: int) -> CallMethodResult:
    result = CallMethodResult()
    result.StatusCode = StatusCode(UInt32(code))
    return result


class SimulatorThread:
    """A simulator serving from a thread with its own event loop.

    For synchronous code, and for tests that share one simulator while each runs in an event loop of its own
    (an asyncua server belongs to the loop it started on). ``with SimulatorThread(OpcUaSimulator()) as sim:``
    (or ``async with``, which waits for the start and the stop without blocking the caller's loop) starts it and
    stops it; `call` runs a coroutine of the simulator (``sim.stop()``, ``sim.set_value(...)``) on its loop.
    Counters and `OpcUaSimulator.value` can be read from any thread.
    """

    def __init__(self, simulator: OpcUaSimulator) -> None:
        self.simulator = simulator
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> OpcUaSimulator:
        loop = self._spawn()
        try:
            asyncio.run_coroutine_threadsafe(self.simulator.start(), loop).result()
        except BaseException:
            self._halt()
            raise
        return self.simulator

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._loop is not None:
                asyncio.run_coroutine_threadsafe(self.simulator.stop(), self._loop).result()
        finally:
            self._halt()

    async def __aenter__(self) -> OpcUaSimulator:
        self._spawn()
        try:
            await self.call(self.simulator.start())
        except BaseException:
            self._halt()
            raise
        return self.simulator

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.call(self.simulator.stop())
        finally:
            self._halt()

    async def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the simulator's loop and wait for it without blocking the caller's loop."""
        assert self._loop is not None, "the simulator thread is not running"
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def _spawn(self) -> asyncio.AbstractEventLoop:
        ready: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            ready.set_result(loop)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        self._thread = threading.Thread(target=serve, name="opcua-simulator", daemon=True)
        self._thread.start()
        self._loop = ready.result()
        return self._loop

    def _halt(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join()
        self._loop = self._thread = None


# --- command line -------------------------------------------------------------------------------------------


def _parse_user(text: str) -> tuple[str, str]:
    name, separator, password = text.partition(":")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:PASSWORD, got {text!r}")
    return name, password


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m yurt_iot.sim.opcua",
        description="Serve a simulated OPC-UA device on 127.0.0.1; prints the endpoint URL, stops on SIGTERM/SIGINT.",
    )
    parser.add_argument("--port", type=int, help="TCP port (default: a free one)")
    parser.add_argument("--extra-nodes", type=int, default=0, help="Int32 variables ns=2;i=10000.. (default 0)")
    parser.add_argument(
        "--update-period", type=float, default=0.1, help="seconds per tick, 0 freezes them (default %(default)s)"
    )
    parser.add_argument(
        "--secured",
        type=Path,
        metavar="DIR",
        help="offer only Basic256Sha256 endpoints, and write the server's certificate to DIR/server.der",
    )
    parser.add_argument("--user", type=_parse_user, action="append", help="NAME:PASSWORD; refuses anonymous sessions")
    return parser.parse_args(argv)


async def _serve(simulator: OpcUaSimulator) -> None:
    async with simulator:
        print(simulator.endpoint, flush=True)
        await until_signalled()
    stats = simulator.stats
    print(
        f"served {stats.sessions} sessions, {stats.read_requests} Read requests ({stats.nodes_read} nodes), "
        f"{stats.write_requests} Write requests, {stats.calls} method calls",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    simulator = OpcUaSimulator(
        port=args.port,
        update_period=args.update_period or None,
        extra_nodes=args.extra_nodes,
        secured=args.secured is not None,
        users=dict(args.user) if args.user else None,
    )
    if args.secured is not None and simulator.server_certificate is not None:
        args.secured.mkdir(parents=True, exist_ok=True)
        (args.secured / "server.der").write_bytes(simulator.server_certificate.der)
    asyncio.run(_serve(simulator))


if __name__ == "__main__":
    main()
