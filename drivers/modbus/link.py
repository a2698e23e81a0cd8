"""One Modbus connection, to a TCP endpoint or a serial port, shared by every unit behind it.

Modbus masters send one request and wait for its reply before the next (the simulator and most devices cannot
pipeline, and a serial bus cannot), so a `Link` runs one request at a time, under a lock. Each request has a
deadline, the device's Timeout, that covers the wait for the lock, the connect and the reply: a request gives up
in time even when the link is busy with other devices' requests.

Failures are the link's to handle, and pymodbus's own reconnect and retries are off (``reconnect_delay=0``,
``retries=0``) so that there is one policy:

* A connection that failed in any way (timeout, reset, an undecodable or unexpected reply, or a request
  cancelled in flight, whose late reply would be taken for the next one's) is closed. The next request
  connects again: a reply that comes late cannot desynchronise a connection that no longer exists.
* Connect attempts are spaced by a `Backoff`, so that a hundred devices behind a dead endpoint cause one
  attempt per delay, not a hundred; requests in between fail at once. A reply resets the backoff, and the
  first reconnect after losing a connection that had answered is immediate.
* pymodbus does not fail a request whose connection closes under it; the link notices the close
  (``trace_connect``) and ends that request's wait at once instead of at its deadline.

Every pymodbus or OS error ends here as `ConnectionLost`. A Modbus exception response is a reply like any
other; the caller maps it to `ResourceFailure`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.pdu import ModbusPDU

from yurt_iot.runtime.sdk import Backoff, ConnectionLost

from .config import Endpoint, TcpEndpoint

__all__ = ["Call", "Link"]

Call = Callable[[ModbusBaseClient], Awaitable[ModbusPDU]]
"""One request on a connected client, e.g. ``lambda c: c.read_coils(0, count=8, device_id=1)``."""

_EXCEPTION_FLAG: Final = 0x80
_PYMODBUS_TIMEOUT: Final = 3600.0
"""pymodbus's own connect and reply timeout: a backstop only, the link's deadlines always end a request first."""


class _Connection:
    """One pymodbus client and what the link knows about its connection."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.lost = False
        """The connection is closed or closing; the next request needs a new one."""
        self.proven = False
        """A reply came on this connection."""
        self.waiting: asyncio.Timeout | None = None
        """The deadline of the request waiting for its reply: ended early if the connection goes."""
        self.interrupted: str | None = None
        """Why the connection went while a request waited for its reply."""
        self.client = _client(endpoint, self._on_connect)

    def _on_connect(self, connected: bool) -> None:
        if not connected:
            self.interrupt("closed by the peer, or after a reply that could not be decoded")

    def interrupt(self, why: str) -> None:
        """Mark the connection lost and end the wait of a request in flight now, rather than at its deadline."""
        self.lost = True
        waiting = self.waiting
        if waiting is not None and not waiting.expired():
            self.interrupted = why
            waiting.reschedule(asyncio.get_running_loop().time())

    def close(self) -> None:
        self.lost = True
        self.client.close()  # pymodbus reports no disconnect for a close of its own


def _client(endpoint: Endpoint, on_connect: Callable[[bool], None]) -> ModbusBaseClient:
    if isinstance(endpoint, TcpEndpoint):
        return AsyncModbusTcpClient(
            endpoint.host,
            port=endpoint.port,
            framer=endpoint.framer,
            timeout=_PYMODBUS_TIMEOUT,
            retries=0,
            reconnect_delay=0,
            trace_connect=on_connect,
        )
    return AsyncModbusSerialClient(
        endpoint.path,
        baudrate=endpoint.baudrate,
        bytesize=endpoint.bytesize,
        parity=endpoint.parity,
        stopbits=endpoint.stopbits,
        timeout=_PYMODBUS_TIMEOUT,
        retries=0,
        reconnect_delay=0,
        trace_connect=on_connect,
    )


class Link:
    """Requests to one endpoint, one at a time, over a connection made on first use and remade after failures."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._backoff = Backoff()
        self._lock = asyncio.Lock()
        self._connection: _Connection | None = None
        self._retry_at = 0.0
        """Event loop time before which no connect is attempted."""

    def __str__(self) -> str:
        return str(self.endpoint)

    async def request(
        self, call: Call, function_code: int, time_limit: float, complete: Callable[[ModbusPDU], bool] | None = None
    ) -> ModbusPDU:
        """Send one request and return its reply: an exception response, or a normal one that is `complete`.

        ConnectionLost if the link is backing off, cannot connect, or has no well-formed reply within `time_limit`
        seconds, which include the wait for earlier requests.
        """
        step = "waiting for earlier requests"
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(time_limit) as deadline, self._lock:
                step = "connecting"
                connection = await self._connected()
                step = "waiting for the reply"
                return await self._exchange(connection, call, deadline, function_code, complete)
        except TimeoutError:
            if connection is not None and connection.interrupted:
                raise ConnectionLost(f"{self}: the connection was {connection.interrupted}") from None
            raise ConnectionLost(f"{self}: timed out after {time_limit} s {step}") from None

    async def close(self) -> None:
        """Close the connection; a request in flight fails with ConnectionLost."""
        if self._connection is not None:
            self._connection.close()
            self._connection.interrupt("closed by the driver")
            self._connection = None

    async def _connected(self) -> _Connection:
        connection = self._connection
        if connection is not None and not connection.lost:
            return connection
        if connection is not None:
            self._drop(connection)
        loop = asyncio.get_running_loop()
        wait = self._retry_at - loop.time()
        if wait > 0:
            raise ConnectionLost(f"{self}: unreachable; the next connection attempt is in {wait:.2f} s")
        connection = _Connection(self.endpoint)
        failure = "cannot connect"  # pymodbus logs why: refused, unreachable, no such serial port
        try:
            connected = await connection.client.connect()
        except Exception as error:  # pyserial's termios.error for settings a port refuses, not an OSError
            connected, failure = False, f"cannot connect: {type(error).__name__}: {error}"
        except BaseException:  # the deadline or the caller cancelled the attempt
            self._failed(connection)
            raise
        if not connected:
            self._failed(connection)
            raise ConnectionLost(f"{self}: {failure}")
        self._connection = connection
        return connection

    async def _exchange(
        self,
        connection: _Connection,
        call: Call,
        deadline: asyncio.Timeout,
        function_code: int,
        complete: Callable[[ModbusPDU], bool] | None,
    ) -> ModbusPDU:
        connection.waiting = deadline
        try:
            reply = await call(connection.client)
        except BaseException as error:
            connection.waiting = None
            self._drop(connection)
            if isinstance(error, Exception):  # pymodbus's (ModbusIOException, ConnectionException, ...) or OSError
                raise ConnectionLost(f"{self}: {type(error).__name__}: {error}") from error
            raise  # cancelled: by the deadline (TimeoutError above), a lost connection, or the caller
        connection.waiting = None
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # On Python 3.11 pymodbus's wait_for returns a reply that arrived as the cancellation did (CPython
            # gh-86296), swallowing it: honour the cancellation (a deadline turns it into a timeout).
            self._drop(connection)
            raise asyncio.CancelledError
        if (reply.function_code & ~_EXCEPTION_FLAG) != function_code or not (
            reply.isError() or complete is None or complete(reply)
        ):
            self._drop(connection)
            raise ConnectionLost(f"{self}: malformed reply to function code {function_code}: {reply}")
        connection.proven = True
        self._backoff.reset()
        return reply

    def _drop(self, connection: _Connection) -> None:
        if self._connection is connection:
            self._connection = None
        if connection.proven:
            connection.close()
        else:  # a connection that never answered counts as a failed attempt
            self._failed(connection)

    def _failed(self, connection: _Connection) -> None:
        connection.close()
        self._retry_at = asyncio.get_running_loop().time() + self._backoff.next_delay()
