"""What can go wrong talking to the API server, as exceptions a controller can tell apart.

httpx and JSON errors are translated here, at one boundary, so no caller ever catches an httpx class::

    KubeError
     ├── ApiError            the server answered with a failure Status (code, reason, message)
     │    ├── NotFound       404: the object (or its type) does not exist
     │    ├── AlreadyExists  409 reason AlreadyExists: create of a name that is taken
     │    ├── Conflict       409 otherwise: stale resourceVersion, retry with a fresh read
     │    ├── Gone           410: resourceVersion compacted or continue token expired; relist
     │    └── Invalid        422: the object failed validation; retrying the same object is useless
     └── Unreachable         no answer: connection refused or reset, TLS failure, timeout, broken stream
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["AlreadyExists", "ApiError", "Conflict", "Gone", "Invalid", "KubeError", "NotFound", "Unreachable"]


class KubeError(Exception):
    """Base of every error of `yurt_iot.kube`'s API access."""


class Unreachable(KubeError):
    """The request got no answer from the API server (network, TLS, timeout or a stream cut midway)."""


class ApiError(KubeError):
    """The API server refused a request; `status` is the HTTP code, `reason` the Status reason (e.g. "Conflict")."""

    def __init__(self, status: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message
        self.details = details or {}


class NotFound(ApiError):
    """404: the object, its namespace or its resource type does not exist."""


class AlreadyExists(ApiError):
    """409 AlreadyExists: an object of that name exists already."""


class Conflict(ApiError):
    """409: the write was based on a stale resourceVersion (optimistic concurrency); read again and retry."""


class Gone(ApiError):
    """410: the resourceVersion asked for is older than the server keeps; list again to catch up."""


class Invalid(ApiError):
    """422: the object failed validation (schema, CEL rules, immutable fields); the message names the fields."""


def from_status(code: int, status: Any) -> ApiError:
    """The typed error for an HTTP code and the body the server sent (a Status object when it is well-formed)."""
    if not isinstance(status, dict):
        status = {}
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or f"HTTP {code}")
    code = int(status.get("code") or code)
    details = status.get("details") if isinstance(status.get("details"), dict) else None
    cls: type[ApiError] = ApiError
    if code == 404:
        cls = NotFound
    elif code == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif code == 410 or reason in ("Expired", "Gone"):
        cls = Gone
    elif code == 422:
        cls = Invalid
    return cls(code, reason or cls.__name__, message, details)


def from_body(code: int, body: bytes) -> ApiError:
    """`from_status` for a raw response body, which need not be JSON (e.g. a proxy's HTML error page)."""
    try:
        status = json.loads(body)
    except ValueError:
        status = {"message": body.decode(errors="replace")[:500] or f"HTTP {code}"}
    return from_status(code, status)
