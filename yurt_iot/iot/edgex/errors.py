"""What can go wrong talking to EdgeX, as one exception tree keyed by the HTTP status EdgeX answers with.

EdgeX maps its error kinds to HTTP statuses (ContractInvalid 400, NotFound 404, DuplicateName and
StatusConflict 409, ServiceLocked 423, ServiceUnavailable 503, ...) and puts a message in an envelope
``{"apiVersion": "v3", "message": ..., "statusCode": ...}``; the per-item answers of a 207 batch carry the
same pair. Callers branch on the class, not on numbers::

    EdgeXError                 status_code, message
     +-- InvalidRequest        400: the request or an item in it broke the contract (also 413, 416)
     +-- NotFound              404: no object of that name / id, or a referenced one is missing
     +-- Conflict              409: duplicate name, or still in use (delete with dependents)
     +-- Locked                423: the object or service is LOCKED
     +-- Unavailable           503, 502, 504, or no HTTP answer at all (connection refused, dropped,
                               timed out): worth retrying later; status_code is None without an answer

Anything else (500 and friends) is a plain :class:`EdgeXError`.
"""

from __future__ import annotations

__all__ = ["Conflict", "EdgeXError", "InvalidRequest", "Locked", "NotFound", "Unavailable", "error_for"]


class EdgeXError(Exception):
    """EdgeX refused or failed a request; `status_code` is the HTTP (or per-item) status, `message` its text."""

    def __init__(self, status_code: int | None, message: str) -> None:
        super().__init__(f"{status_code}: {message}" if status_code is not None else message)
        self.status_code = status_code
        self.message = message


class InvalidRequest(EdgeXError):
    """The request broke the API contract (a missing or malformed field, a limit out of range)."""


class NotFound(EdgeXError):
    """The object, or one it refers to, does not exist."""


class Conflict(EdgeXError):
    """The name is taken, or the object is still in use by others."""


class Locked(EdgeXError):
    """The object or its service is administratively LOCKED."""


class Unavailable(EdgeXError):
    """EdgeX (or the device service behind core-command) could not be reached or did not answer in time."""


_BY_STATUS: dict[int, type[EdgeXError]] = {
    400: InvalidRequest,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    416: InvalidRequest,
    423: Locked,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_for(status_code: int, message: str) -> EdgeXError:
    """The exception for an EdgeX error status and message."""
    return _BY_STATUS.get(status_code, EdgeXError)(status_code, message)
