"""A device's ``mqtt`` protocol properties: the broker it talks through, its topics and its timeout.

EdgeX device-mqtt keeps the broker in the service's configuration and only ``CommandTopic`` in the device; a
gateway here serves devices on any number of brokers, so the broker settings are device properties too. Every
device with the same `BrokerConfig` (address, credentials, TLS files, QoS) shares one connection.

* ``CommandTopic`` (required): requests go to ``<CommandTopic>/<resource>/get/<uuid>`` and ``.../set/<uuid>``.
* ``Broker``: ``tcp://host:port`` (also ``mqtt://``), or ``ssl://host:port`` (also ``tls://``, ``mqtts://``) for
  TLS; the port defaults to 1883, or 8883 with TLS. Default ``tcp://127.0.0.1:1883``, EdgeX's broker on the node.
* ``Username``, ``Password``: MQTT credentials (a password needs a user name).
* ``CAFile``, ``CertFile``, ``KeyFile``: PEM files for TLS: the CA that signed the broker's certificate (default:
  the system CAs), and a client certificate with its key.
* ``ResponseTopic``: the prefix of ``<ResponseTopic>/<uuid>`` the device answers on; default ``command/response``.
* ``IncomingTopic``: the prefix of ``<IncomingTopic>/<device>/<source>`` the device pushes to; default
  ``incoming/data``. EdgeX's subscription forms ``command/response/#`` and ``incoming/data/#`` are accepted too.
* ``QoS``: 0 (EdgeX's default) or 1, for requests and subscriptions.
* ``Timeout``: seconds (``5``, ``0.5``) or a Go duration (``500ms``) a read or write may take; without it the
  driver's default applies.

Topics must not contain the wildcards ``+`` and ``#``. Other properties are accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from yurt_iot.runtime.sdk import ConfigurationError, parse_seconds

__all__ = [
    "DEFAULT_BROKER",
    "DEFAULT_INCOMING_TOPIC",
    "DEFAULT_RESPONSE_TOPIC",
    "BrokerConfig",
    "DeviceConfig",
    "parse_properties",
]

PROTOCOL: Final = "mqtt"
DEFAULT_BROKER: Final = "tcp://127.0.0.1:1883"
DEFAULT_RESPONSE_TOPIC: Final = "command/response"
DEFAULT_INCOMING_TOPIC: Final = "incoming/data"

_PLAIN: Final = frozenset({"tcp", "mqtt"})
_TLS: Final = frozenset({"ssl", "tls", "mqtts"})


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """What one shared connection is: devices that agree on all of it share one MQTT client."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    qos: Literal[0, 1] = 0

    def __str__(self) -> str:
        user = "" if self.username is None else f"{self.username}@"
        return f"{'ssl' if self.tls else 'tcp'}://{user}{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    broker: BrokerConfig
    command_topic: str
    response_topic: str
    incoming_topic: str
    timeout: float | None
    """Seconds a read or write may take, or None for the driver's default."""


def parse_properties(device: str, properties: Mapping[str, str]) -> DeviceConfig:
    """The device's config; ConfigurationError names the device and the property that is missing or wrong."""
    return _Parser(device, properties).config()


class _Parser:
    def __init__(self, device: str, properties: Mapping[str, str]) -> None:
        self.device, self.properties = device, properties

    def fail(self, name: str, reason: str, *, secret: bool = False) -> ConfigurationError:
        """The error naming property `name`, and its value unless that may hold a password."""
        value = self.properties.get(name)
        shown = "" if value is None or secret or name == "Password" else f" = {value!r}"
        return ConfigurationError(f"device {self.device!r}: protocol property {PROTOCOL}.{name}{shown} {reason}")

    def text(self, name: str, default: str | None = None) -> str | None:
        value = str(self.properties.get(name, "")).strip()
        return value or default

    def topic(self, name: str, default: str | None = None, *, prefix: bool = False) -> str:
        """A topic, or with `prefix` the prefix of topics, which may be given as EdgeX's filter ``<prefix>/#``."""
        value = self.text(name, default)
        if value is None:
            raise self.fail(name, "is required")
        if prefix:
            value = value.removesuffix("/#")
        if "+" in value or "#" in value or "\0" in value:
            raise self.fail(name, "contains an MQTT wildcard (+ or #) or a NUL")
        if value.endswith("/"):
            raise self.fail(name, "ends with /")
        return value

    def path(self, name: str) -> Path | None:
        value = self.text(name)
        return None if value is None else Path(value)

    def timeout(self) -> float | None:
        text = self.text("Timeout")
        if not text:
            return None
        try:
            return parse_seconds(text)
        except ValueError:
            raise self.fail("Timeout", "is not a positive number of seconds or a duration such as 500ms") from None

    def qos(self) -> Literal[0, 1]:
        text = self.text("QoS", "0")
        if text == "0":
            return 0
        if text == "1":
            return 1
        raise self.fail("QoS", "is not 0 or 1")

    def broker(self) -> BrokerConfig:
        url = self.text("Broker", DEFAULT_BROKER)
        assert url is not None
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise self.fail("Broker", "is not a URL such as tcp://127.0.0.1:1883") from None
        scheme = parts.scheme.lower()
        if scheme not in _PLAIN | _TLS:
            raise self.fail("Broker", f"has none of the schemes {', '.join(sorted(_PLAIN | _TLS))}")
        if parts.username is not None or parts.password is not None:
            raise self.fail("Broker", "holds credentials: they go in Username and Password", secret=True)
        if not parts.hostname or port == 0 or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise self.fail("Broker", "is not scheme://host:port")
        tls = scheme in _TLS
        username, password = self.text("Username"), self.properties.get("Password") or None
        if password is not None and username is None:
            raise self.fail("Password", "needs a Username")
        files = {name: self.path(name) for name in ("CAFile", "CertFile", "KeyFile")}
        for name, value in files.items():
            if value is not None and not tls:
                raise self.fail(name, "needs a Broker with TLS (ssl://host:port)")
        if files["KeyFile"] is not None and files["CertFile"] is None:
            raise self.fail("KeyFile", "needs a CertFile")
        return BrokerConfig(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=username,
            password=password,
            ca_file=files["CAFile"],
            cert_file=files["CertFile"],
            key_file=files["KeyFile"],
            qos=self.qos(),
        )

    def config(self) -> DeviceConfig:
        response = self.topic("ResponseTopic", DEFAULT_RESPONSE_TOPIC, prefix=True)
        incoming = self.topic("IncomingTopic", DEFAULT_INCOMING_TOPIC, prefix=True)
        if response == incoming:
            raise self.fail("IncomingTopic", "is the ResponseTopic too: pushed values and responses need their own")
        return DeviceConfig(self.broker(), self.topic("CommandTopic"), response, incoming, self.timeout())
