"""The HTTP plumbing both EdgeX clients share: one `httpx.AsyncClient`, and the single place where transport
failures and error envelopes become :mod:`yurt_iot.iot.edgex.errors` exceptions."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Self

import httpx

from yurt_iot.iot.edgex.errors import EdgeXError, Unavailable, error_for

__all__ = ["API_BASE", "API_VERSION", "EdgeXService", "envelope_message"]

API_VERSION = "v3"
API_BASE = "/api/v3"
DEFAULT_TIMEOUT_S = 10.0
"""What OpenYurt's yurt-iot-dock uses; core-metadata itself gives up on a request after 5 s."""


def envelope_message(response: httpx.Response) -> str:
    """The `message` of an EdgeX error envelope, or the body's text when it is none (a proxy's or timeout
    middleware's plain-text answer)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text.strip()


class EdgeXService:
    """A client of one EdgeX REST service at `base_url` (e.g. ``http://127.0.0.1:59881``).

    `transport` replaces the network (tests inject failures with ``httpx.MockTransport``). Use as an async
    context manager or call :meth:`aclose`.
    """

    def __init__(
        self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT_S, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url + API_BASE, timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ping(self) -> None:
        """Return once the service answers ``GET /ping``; Unavailable (or another EdgeXError) otherwise."""
        await self._request("GET", "/ping")

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; a 2xx response is returned, anything else raised as an EdgeXError."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(None, f"{method} {self.base_url}{API_BASE}{path}: {exc!r}") from exc
        if not response.is_success:
            raise error_for(response.status_code, envelope_message(response))
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            text = response.text[:200]
            raise EdgeXError(response.status_code, f"{method} {path}: body is not JSON: {text!r}") from exc
