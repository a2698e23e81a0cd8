"""The operations endpoint every yurt-iot process serves: /metrics (Prometheus), /healthz and /readyz, and
whatever JSON API the process adds under /api/ (the gateway's devices, for `yurt-iot devices`).

A few lines of asyncio instead of prometheus_client's threaded server, so the process keeps one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Check = Callable[[], str | None]
"""Returns None when healthy, else the reason it is not."""
Response = tuple[int, str, bytes]
"""Status, content type and body."""
ApiHandler = Callable[[str, str, bytes, str], Awaitable[Response]]
"""Serves (method, path with its query, body, client address) of a request under /api/."""

_MAX_BODY = 1 << 20


class OpsServer:
    """Serves metrics and health on host:port (port 0 picks a free one; see `port` after start)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ready: Check | None = None,
        healthy: Check | None = None,
        api: ApiHandler | None = None,
    ) -> None:
        self.registry, self.host, self.port = registry, host, port
        self._ready, self._healthy, self._api = ready, healthy, api
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _route(self, method: str, target: str, body: bytes, client: str) -> Response:
        path = target.split("?", 1)[0]
        if path.startswith("/api/") and self._api is not None:
            return await self._api(method, target, body, client)
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path in ("/healthz", "/readyz"):
            check = self._healthy if path == "/healthz" else self._ready
            problem = check() if check is not None else None
            return (503, "text/plain", f"{problem}\n".encode()) if problem else (200, "text/plain", b"ok\n")
        return 404, "text/plain", b"not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            parts = request_line.split(" ", 2)
            method, target = (parts[0], parts[1]) if len(parts) > 2 else ("", "")
            headers = dict(line.lower().split(":", 1) for line in header_lines if ":" in line)
            length_text = headers.get("content-length", "0").strip()
            length = int(length_text) if length_text.isdigit() else -1
            if not 0 <= length <= _MAX_BODY:
                status, content_type, body = 400, "text/plain", b"bad or too large Content-Length\n"
            else:
                payload = await asyncio.wait_for(reader.readexactly(length), timeout=10) if length else b""
                peer = writer.get_extra_info("peername")
                client = str(peer[0]) if isinstance(peer, tuple) else ""
                status, content_type, body = await self._route(method, target, payload, client)
            writer.write(
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()
