"""What an asyncua failure means for the session, and how to say it.

A failure either ends the connection (the socket, the secure channel or the session is gone: the session must be
made again, and the device is unreachable meanwhile) or is the server's answer to one request (a service fault
such as BadTooManyOperations, which says nothing about the connection). `ends_connection` tells them apart;
`describe` turns a failed connect into one line that says what to fix.
"""

from __future__ import annotations

from typing import Final

from asyncua.ua.status_codes import StatusCodes, get_name_and_doc
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

__all__ = ["describe", "ends_connection"]

_CONNECTION_GONE: Final = frozenset({
    StatusCodes.BadCommunicationError,
    StatusCodes.BadConnectionClosed,
    StatusCodes.BadNotConnected,
    StatusCodes.BadSecureChannelClosed,
    StatusCodes.BadSecureChannelIdInvalid,
    StatusCodes.BadSecureChannelTokenUnknown,
    StatusCodes.BadServerHalted,
    StatusCodes.BadServerNotConnected,
    StatusCodes.BadSessionClosed,
    StatusCodes.BadSessionIdInvalid,
    StatusCodes.BadSessionNotActivated,
    StatusCodes.BadShutdown,
    StatusCodes.BadTcpSecureChannelUnknown,
})  # fmt: skip
"""Service results after which no request on the session can succeed."""

_CERTIFICATE_REFUSED: Final = frozenset({
    StatusCodes.BadCertificateInvalid,
    StatusCodes.BadCertificateUntrusted,
    StatusCodes.BadCertificateTimeInvalid,
    StatusCodes.BadCertificateHostNameInvalid,
    StatusCodes.BadCertificateUriInvalid,
    StatusCodes.BadCertificateUseNotAllowed,
    StatusCodes.BadCertificateRevoked,
    StatusCodes.BadCertificatePolicyCheckFailed,
    StatusCodes.BadSecurityChecksFailed,
    StatusCodes.BadSecurityPolicyRejected,
})  # fmt: skip
_USER_REFUSED: Final = frozenset({
    StatusCodes.BadUserAccessDenied,
    StatusCodes.BadIdentityTokenInvalid,
    StatusCodes.BadIdentityTokenRejected,
})  # fmt: skip
_NO_ENDPOINT: Final = "No matching endpoints"
"""How asyncua says that the server offers no endpoint with the client's security policy and mode."""


def ends_connection(error: BaseException) -> bool:
    """Whether, after `error`, the session's connection is unusable (rather than one request refused).

    A timeout is not: OPC UA matches responses to requests, so a late one is dropped and the session goes on;
    whether the server is still there is for the keepalive to find out.
    """
    if isinstance(error, UaStatusCodeError):
        return error.code in _CONNECTION_GONE
    return isinstance(error, OSError) and not isinstance(error, TimeoutError)


def describe(error: BaseException, security: str) -> str:
    """Why connecting failed, for a ConnectionLost message; `security` is e.g. "SecurityPolicy None"."""
    if isinstance(error, TimeoutError):
        return "no answer while connecting (a wrong ServerCertFile looks the same: the server cannot decrypt)"
    if isinstance(error, UaStatusCodeError):
        name, doc = get_name_and_doc(error.code)
        if error.code in _CERTIFICATE_REFUSED:
            return f"the server refused the client certificate: {name} ({doc}); is CertFile trusted by the server?"
        if error.code in _USER_REFUSED:
            return f"the server refused the user: {name} ({doc}); check Username and Password"
        return f"the server refused the session: {name} ({doc})"
    if isinstance(error, UaError) and str(error).startswith(_NO_ENDPOINT):
        return f"the server offers no endpoint with {security}; see its endpoints and set SecurityPolicy/SecurityMode"
    if isinstance(error, OSError):
        return f"cannot connect: {error.strerror or type(error).__name__}"
    return f"cannot connect: {type(error).__name__}: {error}"
