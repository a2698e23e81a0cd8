"""A device's protocol properties: the server's endpoint, the security of the session, the user and the timeouts.

Properties of the protocol ``opcua`` (EdgeX device-opc-ua names where it has them):

* ``Endpoint`` (required): ``opc.tcp://host:port[/path]``, with the port.
* ``SecurityPolicy``: None (the default), Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss, or the
  deprecated Basic128Rsa15 and Basic256. EdgeX sets policy and mode per service (``OPCUAServer.Policy``/``Mode``);
  here they are per device, so devices with different settings can share a gateway.
* ``SecurityMode``: None, Sign or SignAndEncrypt. None goes with the policy None only; with another policy the
  default is SignAndEncrypt.
* ``CertFile``, ``KeyFile``: the gateway's application instance certificate and its private key (PEM or DER,
  the key unencrypted), required with a security policy. They are read, checked and paired when the device is
  added, so that a missing file or a key of another certificate is a ConfigurationError and not a failed connect.
  The session's ApplicationUri is taken from the certificate (its URI subjectAltName), as servers check it.
* ``ServerCertFile``: the server's certificate (PEM or DER). With it, a server presenting another one is refused;
  without it, the certificate the server offers in its endpoint list is used.
* ``Username``, ``Password``: a user identity token instead of an anonymous session. EdgeX's ``AuthType`` is
  implied: a Username means Username authentication.
* ``Timeout``: seconds (``5``, ``0.5``) or a Go duration (``500ms``) that each read or write may take, connecting
  included; without it the driver's default applies.
* ``PublishingInterval``: the default publishing interval of the device's subscribed resources (a duration, or
  milliseconds as a plain number, OPC UA's unit); 100 ms without it. See `nodes` for the ``subscribe`` attribute.

Devices whose Endpoint, security and user are equal share one session (`Endpoint` is its key). Other
properties, such as EdgeX's AuthType, AutoReconnect and ReconnectInterval, are accepted and ignored: this
driver always reconnects, with the runtime's backoff.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlparse

from asyncua.crypto import security_policies
from asyncua.ua.uaprotocol_auto import MessageSecurityMode
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from yurt_iot.runtime.sdk import ConfigurationError, parse_duration, parse_seconds

__all__ = ["DEFAULT_PUBLISHING_INTERVAL", "DeviceConfig", "Endpoint", "Security", "parse_properties"]

PROTOCOL: Final = "opcua"
DEFAULT_PUBLISHING_INTERVAL: Final = 0.1
"""Seconds between publish responses of a subscription, when neither the resource nor the device sets one."""

POLICIES: Final[Mapping[str, type[security_policies.SecurityPolicy]]] = {
    "Basic128Rsa15": security_policies.SecurityPolicyBasic128Rsa15,
    "Basic256": security_policies.SecurityPolicyBasic256,
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128Sha256RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256Sha256RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES: Final[Mapping[str, MessageSecurityMode]] = {
    "Sign": MessageSecurityMode.Sign,
    "SignAndEncrypt": MessageSecurityMode.SignAndEncrypt,
}
_NONE: Final = "None"
_MILLISECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


@dataclass(frozen=True, slots=True)
class Security:
    """A secure channel's settings, with the certificates and the key in DER, as asyncua loads them."""

    policy: str
    """A key of `POLICIES`."""
    mode: str
    """A key of `MODES`."""
    certificate: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    application_uri: str | None
    """The URI in the certificate, which the session's ApplicationUri has to match; None if it names none."""
    server_certificate: bytes | None = field(default=None, repr=False)

    @property
    def policy_class(self) -> type[security_policies.SecurityPolicy]:
        return POLICIES[self.policy]

    @property
    def message_mode(self) -> MessageSecurityMode:
        return MODES[self.mode]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A server as a session sees it: its URL, the channel's security and the user. Equal endpoints share a session."""

    url: str
    security: Security | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        text = self.url
        if self.security is not None:
            text += f" ({self.security.policy} {self.security.mode})"
        if self.username is not None:
            text += f" as {self.username}"
        return text


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    endpoint: Endpoint
    timeout: float | None
    """Seconds a read or write may take, or None for the driver's default."""
    publishing_interval: float
    """Seconds; the default of the device's subscribed resources."""


async def parse_properties(device: str, properties: Mapping[str, str]) -> DeviceConfig:
    """The device's config; ConfigurationError names the device and the property that is missing or wrong.

    Certificate and key files are read in a worker thread: a slow disk must not hold up the event loop.
    """
    return await _Parser(device, properties).config()


class _Parser:
    def __init__(self, device: str, properties: Mapping[str, str]) -> None:
        self.device, self.properties = device, properties

    def fail(self, name: str, reason: str, *, show: bool = True) -> ConfigurationError:
        value = self.properties.get(name)
        shown = f" = {value!r}" if value and show else ""
        return ConfigurationError(f"device {self.device!r}: protocol property {PROTOCOL}.{name}{shown} {reason}")

    def text(self, name: str) -> str | None:
        value = str(self.properties.get(name, "")).strip()
        return value or None

    async def config(self) -> DeviceConfig:
        endpoint = Endpoint(self.url(), await self.security(), *self.user())
        interval = self.interval("PublishingInterval")
        return DeviceConfig(endpoint, self.timeout(), interval or DEFAULT_PUBLISHING_INTERVAL)

    def url(self) -> str:
        url = self.text("Endpoint")
        if url is None:
            raise self.fail("Endpoint", "is required")
        parsed = urlparse(url)
        if parsed.scheme != "opc.tcp" or not parsed.hostname:
            raise self.fail("Endpoint", "is not an opc.tcp://host:port URL")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if port is None or port == 0:
            raise self.fail("Endpoint", "has no port (opc.tcp://host:port)")
        if parsed.username is not None:
            raise self.fail("Endpoint", "carries a user; set Username and Password instead", show=False)
        return url

    def user(self) -> tuple[str | None, str | None]:
        username = self.text("Username")
        password = self.properties.get("Password")
        if username is None and password:
            raise self.fail("Password", "is set without a Username", show=False)
        return username, (password if username is not None else None)

    def timeout(self) -> float | None:
        """Seconds, as every driver reads its Timeout (`parse_seconds`)."""
        text = self.text("Timeout")
        if text is None:
            return None
        try:
            return parse_seconds(text)
        except ValueError:
            raise self.fail("Timeout", "is not a positive number of seconds or a duration such as 500ms") from None

    def interval(self, name: str) -> float | None:
        """Seconds, from a Go duration or a plain number of milliseconds (OPC UA's unit for intervals)."""
        text = self.text(name)
        if text is None:
            return None
        try:
            seconds = float(text) / 1000 if _MILLISECONDS.fullmatch(text) else parse_duration(text)
        except ValueError:
            seconds = 0.0
        if seconds <= 0:
            raise self.fail(name, "is not a positive number of milliseconds or a duration such as 500ms")
        return seconds

    async def security(self) -> Security | None:
        policy = self.text("SecurityPolicy") or _NONE
        mode = self.text("SecurityMode")
        if policy == _NONE:
            if mode not in (None, _NONE):
                raise self.fail("SecurityMode", "needs a SecurityPolicy other than None")
            return None
        if policy not in POLICIES:
            raise self.fail("SecurityPolicy", f"is none of None, {', '.join(POLICIES)}")
        mode = mode or "SignAndEncrypt"
        if mode not in MODES:
            raise self.fail("SecurityMode", f"is none of {', '.join(MODES)} (with a SecurityPolicy other than None)")
        certificate = _certificate(await self.file("CertFile", required=True))
        if certificate is None:
            raise self.fail("CertFile", "holds no X.509 certificate (PEM or DER)")
        key = _private_key(await self.file("KeyFile", required=True))
        if key is None:
            raise self.fail("KeyFile", "holds no unencrypted private key (PEM or DER)")
        if key.public_key() != certificate.public_key():
            raise self.fail("KeyFile", "is not the private key of CertFile")
        server_data = await self.file("ServerCertFile", required=False)
        server_certificate = None if server_data is None else _certificate(server_data)
        if server_data is not None and server_certificate is None:
            raise self.fail("ServerCertFile", "holds no X.509 certificate (PEM or DER)")
        return Security(
            policy,
            mode,
            certificate.public_bytes(serialization.Encoding.DER),
            key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            _application_uri(certificate),
            None if server_certificate is None else server_certificate.public_bytes(serialization.Encoding.DER),
        )

    async def file(self, name: str, *, required: bool) -> bytes | None:
        path = self.text(name)
        if path is None:
            if required:
                raise self.fail(name, "is required with a SecurityPolicy other than None")
            return None
        try:
            return await asyncio.to_thread(Path(path).read_bytes)
        except OSError as error:
            raise self.fail(name, f"cannot be read: {error.strerror or error}") from error


def _certificate(data: bytes | None) -> x509.Certificate | None:
    if data is None:
        return None
    for load in (x509.load_pem_x509_certificate, x509.load_der_x509_certificate):
        try:
            return load(data)
        except ValueError:
            continue
    return None


def _private_key(data: bytes | None) -> PrivateKeyTypes | None:
    if data is None:
        return None
    for load in (serialization.load_pem_private_key, serialization.load_der_private_key):
        try:
            return load(data, password=None)
        except (ValueError, TypeError):  # TypeError: the key is encrypted
            continue
    return None


def _application_uri(certificate: x509.Certificate) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None
