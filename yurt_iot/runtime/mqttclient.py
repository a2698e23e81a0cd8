"""paho-mqtt on the asyncio event loop: one client, one broker, connected and kept connected.

The telemetry publisher, the MQTT device driver and the MQTT device simulator all need an MQTT client that never
blocks the event loop and outlives broker outages; this module is that client, once. paho has no network thread
here: its socket callbacks register the socket with ``loop.add_reader``, which calls ``loop_read``; packets it
queues are written by ``loop_write`` at the end of the turn of the loop (with ``add_writer`` only while the socket
buffer is full); and a timer calls ``loop_misc`` (keepalive). Only the blocking part of each connection attempt
(DNS, TCP connect, TLS handshake: paho's ``reconnect()``) runs in a worker thread.

:meth:`MqttClient.run` connects, retries with :class:`~yurt_iot.runtime.backoff.Backoff` (which every CONNACK
resets), and hands each connection to the caller's ``serve`` coroutine until that connection is lost. paho's own
reconnect is off, so that there is one retry policy. Every connection starts clean (MQTT 5's ``clean_start``,
3.1.1's clean session), and paho's queue of unacknowledged messages is dropped when a connection ends: what was
in flight is for the user to send again or not (the publisher re-sends from its spool; a device driver must not
replay a stale command), and subscriptions are for ``serve`` to make again on each connection
(:meth:`MqttClient.subscribe`).

Users publish through the paho client itself (:attr:`MqttClient.paho`) and set its ``on_publish`` /
``on_message`` callbacks; those run on the event loop thread, inside ``loop_read``. An exception that escapes a
paho callback ends the current connection attempt or connection with that exception (``serve`` gets it from the
``lost`` future), so callbacks that must not fail the connection catch their own errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from yurt_iot.runtime.backoff import Backoff

__all__ = ["MqttClient", "MqttSettings", "Serve", "SubscriptionError"]

logger = logging.getLogger(__name__)

_MISC_INTERVAL_S = 1.0  # how often loop_misc() runs: keepalive PINGREQs and their timeout
_PACKETS_PER_READ = 64  # packets read at most each time the socket is readable

Serve = Callable[["asyncio.Future[None]"], Awaitable[None]]
"""Serves one connection: called with a future that is done when the connection is lost, returns after that."""


class SubscriptionError(ConnectionError):
    """A SUBSCRIBE could not be sent, was refused by the broker, or its connection was lost before the SUBACK."""


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where and how to connect. TLS options need ``tls=True``; ``ca_file=None`` trusts the system CAs."""

    host: str
    port: int = 1883
    client_id: str = field(default_factory=lambda: f"yurt-iot-{secrets.token_hex(6)}")
    qos: Literal[0, 1] = 1
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None  # client certificate (PEM), with key_file if the key is not in it
    key_file: Path | None = None
    tls_insecure: bool = False  # skip the host name check (the chain is still verified): tests only
    keepalive: int = 30
    connect_timeout: float = 10.0  # TCP connect, TLS handshake and CONNACK, each
    max_inflight: int = 256
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.2, cap=5.0))
    # MQTT 5, or 3.1.1 (EdgeX device-mqtt's, and every broker's): paho parses MQTT 5 properties of every message
    # received, which is half the CPU a received message costs.
    mqtt5: bool = True

    def __post_init__(self) -> None:
        if self.qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if not 1 <= self.max_inflight <= 65535:  # bounded by the 16-bit MQTT packet ids
            raise ValueError("max_inflight must be between 1 and 65535")
        if not 0 < self.port < 65536 or self.keepalive < 0 or self.connect_timeout <= 0:
            raise ValueError("port, keepalive or connect_timeout out of range")
        if not self.client_id:
            raise ValueError("client_id must not be empty")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        tls_options = (self.ca_file, self.cert_file, self.key_file)
        if not self.tls and (any(o is not None for o in tls_options) or self.tls_insecure):
            raise ValueError("TLS options need tls=True")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")

    @property
    def address(self) -> str:
        """host:port, for log lines and error messages."""
        return f"{self.host}:{self.port}{' (TLS)' if self.tls else ''}"


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when its handshake fails; paho's reconnect() would leave it open (a leaked socket)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def _tls_context(s: MqttSettings) -> ssl.SSLContext:
    """Verify the broker against `ca_file` (or the system CAs) and its host name unless `tls_insecure`."""
    context = ssl.create_default_context(cafile=s.ca_file)
    if s.cert_file is not None:
        context.load_cert_chain(s.cert_file, s.key_file)
    context.check_hostname = not s.tls_insecure  # paho reads this as its own "insecure" setting
    context.sslsocket_class = _ClosingSSLSocket
    return context


def _buffered(sock: object) -> bool:
    """Whether a plain TCP socket has bytes waiting (a peek, which costs a fraction of a turn of the loop)."""
    if isinstance(sock, ssl.SSLSocket) or not isinstance(sock, socket.socket):
        return False
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    except OSError:
        return True  # for loop_read() to find, and report as a lost connection


class MqttClient:
    """A paho MQTT client driven by the running event loop; see the module docstring.

    `on_connack` is called with the CONNACK's properties before a connection counts as established, and
    `on_lost` with the reason when an established connection is lost; both run inside paho callbacks.
    Counters and state are plain attributes, for metrics and tests.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        on_connack: Callable[[Properties | None], None] | None = None,
        on_lost: Callable[[ReasonCode], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_connack_hook, self._on_lost_hook = on_connack, on_lost
        self._backoff = dataclasses.replace(settings.backoff)  # our own failure count
        self.paho = self._new_client()
        """The paho client: publish on it and set its on_publish / on_message callbacks; never connect it."""

        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._task: asyncio.Task[Any] | None = None
        self._closed = False
        self._attempt: asyncio.Future[Any] | None = None  # reconnect() running in a worker thread
        self._connack: asyncio.Future[str | None] | None = None  # None once connected, else why not
        self._lost: asyncio.Future[None] | None = None  # done when the connection is gone
        self._misc: asyncio.TimerHandle | None = None
        self._flush: asyncio.Handle | None = None  # a pending write of paho's queued packets
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}  # by SUBSCRIBE packet id
        self._connected_before = False

        #: Connections established after the first one.
        self.reconnects = 0
        #: Connection attempts that failed (TCP, TLS, CONNACK refused or missing).
        self.connect_failures = 0
        #: True between a successful CONNACK and the loss of that connection.
        self.connected = False
        #: Why the last connection attempt failed or the last connection ended; None before either happened.
        self.last_failure: str | None = None

    def _new_client(self) -> mqtt.Client:
        s = self.settings
        # reconnect_on_failure=False: paho must never reconnect on its own (that would block the loop).
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5 if s.mqtt5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        client.connect_timeout = s.connect_timeout
        client.max_inflight_messages_set(s.max_inflight)  # QoS 1 publishes beyond it wait in paho's queue
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            client.tls_set_context(_tls_context(s))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self, serve: Serve) -> None:
        """Connect (retrying with backoff) and `serve` each connection, until cancelled or closed.

        Raises what `serve` raises, and an exception that escaped a paho callback during a connection attempt.
        """
        if self._task is not None:
            raise RuntimeError("MqttClient.run() is already running")
        if self._closed:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._task = asyncio.current_task()
        try:
            while True:
                failure = await self._connect()
                if failure is None:
                    self._backoff.reset()
                    lost = self._lost
                    assert lost is not None
                    try:
                        await serve(lost)
                    finally:
                        self.paho.drop_out_messages()  # or paho would re-send them itself after the reconnect
                    delay = self._backoff.next_delay()
                else:
                    self.connect_failures += 1
                    self.last_failure = failure
                    delay = self._backoff.next_delay()
                    address = self.settings.address
                    logger.warning("cannot connect to MQTT broker %s: %s; retrying in %.2f s", address, failure, delay)
                await asyncio.sleep(delay)
        finally:
            try:
                await self._teardown()
            finally:
                self._task = None

    async def close(self) -> None:
        """Stop :meth:`run` (cancelling its task) and wait until it has disconnected. Idempotent."""
        self._closed = True
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])

    async def subscribe(self, filters: Sequence[str], qos: int) -> None:
        """Subscribe to `filters` on the current connection and wait for the SUBACK.

        SubscriptionError if there is no connection, the broker refuses any filter, or the connection is lost
        first. Brokers handle one connection's packets in order (mosquitto does), so the answer to a request
        published after the SUBSCRIBE went out finds the subscription in place, SUBACK or not.
        """
        rc, mid = self.paho.subscribe([(topic, qos) for topic in filters])
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise SubscriptionError(f"cannot subscribe on {self.settings.address}: {mqtt.error_string(rc)}")
        future: asyncio.Future[list[ReasonCode]] = asyncio.get_running_loop().create_future()
        self._subacks[mid] = future
        try:
            codes = await future
        finally:
            del self._subacks[mid]
        refused = [f"{topic} ({code})" for topic, code in zip(filters, codes, strict=False) if code.is_failure]
        if refused:
            raise SubscriptionError(f"MQTT broker {self.settings.address} refused the subscription to {refused}")

    async def _connect(self) -> str | None:
        """One connection attempt: None once connected, else why it failed."""
        loop = asyncio.get_running_loop()
        s = self.settings
        connack: asyncio.Future[str | None] = loop.create_future()
        self._connack = connack
        self._lost = loop.create_future()
        self._reset_socket()
        self._attempt = attempt = loop.run_in_executor(None, self.paho.reconnect)  # blocking: DNS, TCP, TLS
        try:
            await asyncio.shield(attempt)  # on cancellation, _teardown() waits for the thread
        except OSError as exc:  # refused, unreachable, timed out, TLS failure (ssl.SSLError)
            return str(exc) or type(exc).__name__
        finally:
            if attempt.done():
                self._attempt = None
        done, _ = await asyncio.wait([connack], timeout=s.connect_timeout)
        if not done:
            self._reset_socket()
            return f"no CONNACK within {s.connect_timeout} s"
        failure = connack.result()  # raises if a paho callback failed
        if failure is None:
            logger.info("connected to MQTT broker %s as %r", s.address, s.client_id)
            if self._connected_before:
                self.reconnects += 1
            self._connected_before = True
        return failure

    async def _teardown(self) -> None:
        attempt, self._attempt = self._attempt, None
        try:
            if attempt is not None:
                # A blocking connect cannot be interrupted: wait for it, and close whatever it opened
                # (also if this wait is cancelled in turn).
                attempt.add_done_callback(self._discard_attempt)
                await asyncio.wait([attempt])
        finally:
            if self.connected:
                self.paho.disconnect()  # a clean DISCONNECT, if it can be written right away
                self.paho.loop_write()
            self._reset_socket()
            self._end_subscriptions("the client was closed")
            self._connack = self._lost = None

    def _discard_attempt(self, attempt: asyncio.Future[Any]) -> None:
        if not attempt.cancelled():
            attempt.exception()  # retrieved: the outcome of an abandoned attempt does not matter
        self._reset_socket()

    def _reset_socket(self) -> None:
        """Close paho's socket now, if any, and set the parameters of the next ``reconnect()``.

        ``connect_async()`` is paho's public call that terminates a connection at once (its socket-close
        callback unregisters the socket from the loop); it does no I/O itself.
        """
        s = self.settings
        if s.mqtt5:
            self.paho.connect_async(s.host, s.port, s.keepalive, clean_start=True)
        else:  # a 3.1.1 client has a clean session on every connection (paho's clean_session default)
            self.paho.connect_async(s.host, s.port, s.keepalive)
        self.connected = False

    def _end_subscriptions(self, why: str) -> None:
        for future in list(self._subacks.values()):
            if not future.done():
                future.set_exception(SubscriptionError(f"MQTT broker {self.settings.address}: {why}"))

    # -- paho callbacks (on the loop thread, except socket ones during reconnect()) --------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode, props: Properties | None
    ) -> None:
        if reason.is_failure:
            self._settle_connack(f"connection refused: {reason}")
            return
        if self._on_connack_hook is not None:
            self._on_connack_hook(props)
        self.connected = True
        self._settle_connack(None)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if self.connected:
            self.connected = False
            self.last_failure = f"connection lost: {reason}"
            level = logging.INFO if reason.value == 0 else logging.WARNING
            logger.log(level, "disconnected from MQTT broker %s: %s", self.settings.address, reason)
            if self._on_lost_hook is not None:
                self._on_lost_hook(reason)
        else:
            self._settle_connack(f"connection closed before CONNACK: {reason}")
        self._end_subscriptions(f"connection lost before the SUBACK: {reason}")
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Properties | None
    ) -> None:
        future = self._subacks.get(mid)
        if future is not None and not future.done():
            future.set_result(codes)

    def _settle_connack(self, failure: str | None) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(failure)

    def _fail(self, exc: Exception) -> None:
        """An exception escaped paho on the loop: make run() raise it."""
        for future in (self._connack, self._lost):
            if future is not None and not future.done():
                future.set_exception(exc)
                return
        logger.error("MQTT client of %s: error after the connection was lost", self.settings.address, exc_info=exc)

    # -- event loop integration ----------------------------------------------------------------------

    def _in_loop(self, func: Callable[..., object], *args: object) -> None:
        """Run `func` now on the loop thread; from reconnect()'s worker thread, schedule it there."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            func(*args)
        else:
            self._loop.call_soon_threadsafe(func, *args)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: mqtt.SocketLike) -> None:
        self._in_loop(self._watch, sock.fileno())

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: mqtt.SocketLike) -> None:
        self._in_loop(self._unwatch, sock.fileno())

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: mqtt.SocketLike) -> None:
        self._in_loop(self._flush_soon)

    def _on_socket_unregister_write(self, client: mqtt.Client, userdata: Any, sock: mqtt.SocketLike) -> None:
        assert self._loop is not None
        self._in_loop(self._loop.remove_writer, sock.fileno())

    def _watch(self, fd: int) -> None:
        assert self._loop is not None
        self._loop.add_reader(fd, self._on_readable)
        self._misc = self._loop.call_later(_MISC_INTERVAL_S, self._on_misc)

    def _unwatch(self, fd: int) -> None:
        assert self._loop is not None
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    def _on_readable(self) -> None:
        client = self.paho
        try:
            # paho reads one packet per loop_read(): read those already in the socket's buffer now, rather than
            # one per turn of the event loop (a quarter of the CPU per received message), but not so many at once
            # that a busy connection holds up the loop.
            for _ in range(_PACKETS_PER_READ):
                client.loop_read()
                if not _buffered(client.socket()):
                    break
            # TLS may hold decrypted bytes that the socket itself no longer reports as readable: read them all.
            while isinstance(sock := client.socket(), ssl.SSLSocket) and sock.pending():
                client.loop_read()
        except Exception as exc:
            self._fail(exc)

    def _flush_soon(self) -> None:
        """Write paho's queued packets at the end of this turn of the loop.

        The socket is almost always writable: waiting for epoll to say so would cost two ``epoll_ctl`` calls and
        a turn of the loop per packet, and packets published in one turn go out in one ``loop_write()``. Only a
        full socket buffer makes us wait for writability.
        """
        if self._flush is None:
            assert self._loop is not None
            self._flush = self._loop.call_soon(self._on_flush)

    def flush(self) -> None:
        """Write paho's queued packets now rather than at the end of this turn of the loop (saving that turn).

        For code that has just published; not from inside a callback of this client (paho forbids writing there).
        """
        if self._flush is not None:
            self._flush.cancel()
            self._on_flush()

    def _on_flush(self) -> None:
        self._flush = None
        self._on_writable()
        sock = self.paho.socket()
        if sock is not None and self.paho.want_write():  # the buffer is full; paho unregisters when it drained
            assert self._loop is not None
            self._loop.add_writer(sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        try:
            self.paho.loop_write()
        except Exception as exc:
            self._fail(exc)

    def _on_misc(self) -> None:
        self._misc = None
        try:
            self.paho.loop_misc()
        except Exception as exc:
            self._fail(exc)
            return
        if self.paho.socket() is not None:
            assert self._loop is not None
            self._misc = self._loop.call_later(_MISC_INTERVAL_S, self._on_misc)
