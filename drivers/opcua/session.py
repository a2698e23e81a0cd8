"""One OPC-UA session per endpoint, shared by the devices behind it: made on demand, watched, and made again.

* Connecting: the first request (or the first subscribed resource) connects: TCP, Hello, the secure channel with
  the endpoint's policy, mode, certificate and key, CreateSession and ActivateSession (anonymous, or the user).
  There is one attempt at a time, bounded by the session's timeout; every request that needs the session waits
  for that attempt within its own deadline, and a request that gives up does not cancel the attempt.
* Losing it: asyncua reports (``connection_lost_callback``) a closed socket at once, and a peer that stopped
  answering when its keepalive read of the server state, every `KEEPALIVE` s, fails: a dead server is noticed
  within about two seconds even when nobody reads. A request that fails on the connection (an OS error, or a
  status saying the session or channel is gone, see `errors`) marks it lost at once too. asyncua's own
  reconnect is off (``auto_reconnect=False``): its delays start at a second, and it would try to take over the
  subscriptions of a session that a restarted server no longer has. One policy applies instead, this one.
* Reconnecting: the first attempt after a loss is immediate, later ones are spaced by the runtime's `Backoff`
  (50 ms doubling up to 0.5 s, with jitter), so a server that is back is in use within about half a second.
  Requests meanwhile fail at once with ConnectionLost and the reason. A session with subscribed resources
  reconnects by itself; any other waits for its next request. Each connection is a new session, whose
  subscriptions `Subscriptions` creates again.
* Requests (`Session.request`): one deadline covers waiting for the connection and the request. A request that
  times out or is cancelled leaves the connection alone: OPC UA matches responses to requests by id and asyncua
  drops a late response, so slowness is no reason to reconnect; whether the server is gone is the keepalive's to
  tell. A service fault fails the request with ResourceFailure and leaves the session up.

All state changes happen in the session's task (`_run`) or synchronously in callbacks, on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from asyncua.client.client import Client
from asyncua.crypto.uacrypto import CertProperties
from asyncua.ua.uaerrors import UaStatusCodeError

from yurt_iot.runtime.sdk import Backoff, ConnectionLost, ResourceFailure

from .config import Endpoint
from .datatypes import DataTypes
from .errors import describe, ends_connection
from .subscriptions import KEEPALIVE, Changed, Subscriptions, Watch

__all__ = ["Connection", "Session"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Reachable = Callable[["Session", bool, str], None]
"""Called with (session, connected, reason) when a session opens, or is lost or cannot be opened after being up."""

SESSION_TIMEOUT: Final = 60.0
"""Seconds the server keeps the session of a gateway that stopped talking (the keepalive talks every second)."""
CLIENT_NAME: Final = "yurt-iot gateway"


@dataclass(frozen=True, slots=True)
class Connection:
    """A connected client, and what was learned about its server's types."""

    client: Client
    types: DataTypes


class Session:
    """The session of one endpoint, for the devices behind it (see the module docstring)."""

    def __init__(
        self, endpoint: Endpoint, timeout: float, on_change: Changed, on_connection: Reachable | None = None
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        """Seconds a connect attempt may take; set by the device that opened the session."""
        self.subscriptions = Subscriptions(on_change, self._lose)
        self.connections = 0
        """Connections made so far."""
        self._connection: Connection | None = None
        self._attempt: asyncio.Future[Connection] | None = None
        """The outcome of the connect attempt in progress, or of the next one that a request is waiting for."""
        self._failure = "not connected yet"
        self._retry_at = 0.0
        self._backoff = Backoff()
        self._disposals: set[asyncio.Task[None]] = set()
        """Clients being closed, each in a task of its own (see `_dispose`)."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._on_connection = on_connection
        self._reachable: bool | None = None
        """What `on_connection` was last told; None before the first attempt."""

    def __str__(self) -> str:
        return str(self.endpoint)

    async def request(self, what: str, time_limit: float, operation: Callable[[Connection], Awaitable[T]]) -> T:
        """Run `operation` on the connection, connecting first if needed, all within `time_limit` seconds.

        `what` says what the request does, for messages ("reading 3 nodes"). ConnectionLost if there is no
        connection or it fails, ResourceFailure if the server refuses the request with a service fault, or if
        asyncua fails in a way it should not (logged with its traceback): the runtime expects DriverErrors only.
        """
        connection: Connection | None = None
        try:
            async with _deadline(time_limit):
                connection = await self._connected()
                return await operation(connection)
        except TimeoutError:
            step = what if connection is not None else "waiting for the connection"
            raise ConnectionLost(f"{self}: no answer within {time_limit} s {step}") from None
        except (OSError, UaStatusCodeError) as error:
            if not ends_connection(error):
                raise ResourceFailure(f"{self}: {what}: the server refused the request: {error}") from error
            reason = f"{what}: {type(error).__name__}: {error}"
            if connection is not None:
                self._lose(connection.client, reason)
            raise ConnectionLost(f"{self}: {reason}") from error
        except (ConnectionLost, ResourceFailure):
            raise
        except Exception as error:  # e.g. a response asyncua cannot decode
            logger.debug("%s: %s failed", self, what, exc_info=True)
            raise ResourceFailure(f"{self}: {what}: {type(error).__name__}: {error}") from error

    def watch(self, watch: Watch) -> int:
        """Keep a monitored item for the watch on every connection; returns the handle for `unwatch`."""
        handle = self.subscriptions.add(watch)
        self._poke()
        return handle

    def unwatch(self, handles: list[int]) -> None:
        self.subscriptions.remove(handles)
        self._poke()

    async def close(self) -> None:
        """Close the session (its subscriptions go with it) and stop reconnecting until the next request."""
        self._closing = True  # the task ends at its next turn even if asyncua swallowed the cancellation
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._attempt is not None:
            _settle(self._attempt, ConnectionLost(f"{self}: the session is closing"))
            self._attempt = None
        connection, self._connection = self._connection, None
        self.subscriptions.detach()
        if connection is not None:
            self._dispose(connection.client)
        if self._disposals:
            await asyncio.wait(set(self._disposals))
        self._retry_at = 0.0
        self._reachable = None
        self._closing = False

    # --- the connection ----------------------------------------------------------------------------------------

    async def _connected(self) -> Connection:
        if self._connection is not None:
            return self._connection
        if self._closing:
            raise ConnectionLost(f"{self}: the session is closing")
        wait = self._retry_at - asyncio.get_running_loop().time()
        if wait > 0:
            raise ConnectionLost(f"{self}: {self._failure}; the next attempt is in {wait:.2f} s")
        if self._attempt is None:
            self._attempt = asyncio.get_running_loop().create_future()
        self._poke()
        return await asyncio.shield(self._attempt)

    def _poke(self) -> None:
        """Wake the session's task, starting it first if needed."""
        if self._closing:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"opcua session {self.endpoint.url}")
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            self._wake.clear()
            if self._connection is None:
                wanted = self._attempt is not None or self.subscriptions.active
                delay = self._retry_at - loop.time()
                if wanted and delay <= 0:
                    await self._connect()
                    continue
                await self._sleep(delay if wanted else None)
            elif self.subscriptions.dirty:
                await self._sync(self._connection)
            else:
                await self._sleep(None)

    async def _sleep(self, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = self._attempt = self._attempt or loop.create_future()
        try:
            async with _deadline(self.timeout):
                client = await self._open()
        except Exception as error:  # asyncua's and the OS's, TimeoutError included
            self._failure = describe(error, self._security_text())
            self._retry_at = loop.time() + self._backoff.next_delay()
            log = logger.warning if self._backoff.failures == 1 else logger.debug
            log("%s: %s", self, self._failure)
            self._attempt = None
            _settle(attempt, ConnectionLost(f"{self}: {self._failure}"))
            self._report(False, self._failure)
            return
        connection = self._connection = Connection(client, DataTypes(client))
        self.connections += 1
        self._backoff.reset()
        self.subscriptions.attach(client)
        logger.info("%s: session %d open", self, self.connections)
        self._attempt = None
        _settle(attempt, connection)
        self._report(True, f"session {self.connections} open")

    def _report(self, reachable: bool, reason: str) -> None:
        """Tell `on_connection` of a change (not of every failed attempt while the server stays away)."""
        if reachable != self._reachable and not self._closing:
            self._reachable = reachable
            if self._on_connection is not None:
                self._on_connection(self, reachable, f"{self}: {reason}")

    async def _open(self) -> Client:
        endpoint = self.endpoint
        client = Client(endpoint.url, timeout=self.timeout, watchdog_intervall=KEEPALIVE)
        client.name = client.description = CLIENT_NAME
        client.session_timeout = int(SESSION_TIMEOUT * 1000)
        if endpoint.username is not None:
            client.set_user(endpoint.username)
            client.set_password(endpoint.password or "")
        security = endpoint.security
        if security is not None:
            if security.application_uri is not None:
                client.application_uri = security.application_uri
            server = security.server_certificate
            await client.set_security(
                security.policy_class,
                CertProperties(security.certificate, "der"),
                CertProperties(security.private_key, "der"),
                server_certificate=None if server is None else CertProperties(server, "der"),
                mode=security.message_mode,
            )
        client.connection_lost_callback = self._lost_callback(client)
        try:
            await client.connect()
        except BaseException:  # asyncua closes the socket for Exceptions only, not when the attempt is cancelled
            client.disconnect_socket()
            raise
        return client

    def _lost_callback(self, client: Client) -> Callable[[Exception], Coroutine[Any, Any, None]]:
        async def lost(error: Exception) -> None:
            self._lose(client, f"the connection was lost ({type(error).__name__}: {error})")

        return lost

    def _lose(self, client: Client, reason: str) -> None:
        """Give up the client's connection, if it is the current one, and reconnect at once."""
        connection = self._connection
        if connection is None or connection.client is not client:
            return
        self._connection = None
        self.subscriptions.detach()
        self._dispose(client)
        self._failure = reason
        self._retry_at = asyncio.get_running_loop().time()
        logger.warning("%s: %s; reconnecting", self, reason)
        self._report(False, reason)
        self._poke()

    async def _sync(self, connection: Connection) -> None:
        """Bring the monitored items in line with the watches; a failure to do so costs the connection."""
        try:
            async with _deadline(self.timeout):
                await self.subscriptions.sync()
        except TimeoutError:
            self._lose(connection.client, f"no answer within {self.timeout} s creating monitored items")
        except Exception as error:  # what `sync` raises ends the connection, or is unexpected (then logged)
            if not isinstance(error, OSError | UaStatusCodeError):
                logger.exception("%s: creating monitored items", self)
            self._lose(connection.client, f"creating monitored items: {type(error).__name__}: {error}")

    def _dispose(self, client: Client) -> None:
        """Close the client in a task of its own: asyncua's disconnect awaits tasks it cancelled and catches
        CancelledError, so it would swallow the cancellation of whatever task ran it."""
        task = asyncio.create_task(self._disconnect(client), name=f"opcua close {self.endpoint.url}")
        self._disposals.add(task)
        task.add_done_callback(self._disposals.discard)

    async def _disconnect(self, client: Client) -> None:
        """Close the client's session and socket, politely if the server still answers, at once otherwise."""
        try:
            async with _deadline(self.timeout):
                await client.disconnect()
        except Exception as error:  # it is gone either way
            logger.debug("%s: closing a session: %s", self, error)
        finally:
            client.disconnect_socket()

    def _security_text(self) -> str:
        security = self.endpoint.security
        if security is None:
            return "SecurityPolicy None (no security)"
        return f"SecurityPolicy {security.policy} and SecurityMode {security.mode}"


@contextlib.asynccontextmanager
async def _deadline(seconds: float) -> AsyncIterator[None]:
    """`asyncio.timeout`, also when the deadline's cancellation comes back as a subclass of CancelledError.

    On Python 3.11 asyncua waits for responses with wait_for2, which raises CancelledWithResultError when a
    response arrives just as the wait is cancelled; `asyncio.timeout` turns only CancelledError itself into
    TimeoutError, so the deadline would reach the caller as a cancellation (and end a device's poll loop).
    """
    timeout = asyncio.timeout(seconds)
    try:
        async with timeout:
            yield
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if timeout.expired() and task is not None and not task.cancelling():
            raise TimeoutError from None  # ours, not a cancellation of the caller
        raise


def _settle(attempt: asyncio.Future[Connection], outcome: Connection | ConnectionLost) -> None:
    """Resolve a connect attempt; an error nobody waits for is not logged as "never retrieved"."""
    if attempt.done():
        return
    if isinstance(outcome, ConnectionLost):
        attempt.set_exception(outcome)
        attempt.exception()  # marks it retrieved: callers that gave up need not see it
    else:
        attempt.set_result(outcome)
