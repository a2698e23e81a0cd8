"""A real Mosquitto MQTT broker for integration tests.

Why the real broker: the gateway's MQTT bridge has to survive broker outages (queueing, reconnect,
re-subscribe), and only a real broker that really goes away and comes back exercises that. Debian's
``mosquitto`` package provides ``/usr/sbin/mosquitto``; ``scripts/test`` installs it.

The broker listens on 127.0.0.1 only, on a port chosen *below* the kernel's ephemeral range (see
:mod:`yurt_iot.testing.ports`), so :meth:`Mosquitto.restart` / :meth:`Mosquitto.start` after a long
:meth:`Mosquitto.stop` can bind the same port again: clients configured with that port must be able
to reconnect to the restarted broker.

Optionally the broker also has a TLS listener on :attr:`Mosquitto.tls_port` (a throw-away CA and a
server certificate for 127.0.0.1/localhost, made with ``cryptography`` in the broker's temp dir; clients
trust :attr:`Mosquitto.ca_file`), and with ``users`` it requires a user name and password on every
listener (mosquitto 2.0's PBKDF2-SHA512 password file format, as ``mosquitto_passwd`` writes it).
"""

from __future__ import annotations

import atexit
import base64
import datetime
import hashlib
import ipaddress
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from yurt_iot.testing.ports import LOOPBACK, stable_free_port
from yurt_iot.testing.process import LoggedProcess, log_tail

__all__ = ["DEFAULT_MOSQUITTO", "Mosquitto", "MosquittoError"]

DEFAULT_MOSQUITTO = "/usr/sbin/mosquitto"


class MosquittoError(RuntimeError):
    """The broker could not be started; the message carries the tail of its log."""


class Mosquitto:
    """A Mosquitto broker subprocess on ``host:port`` (127.0.0.1 and a fixed port for its lifetime).

    Anonymous access is allowed unless `users` (name -> password) is given; :attr:`users` is re-read at
    every :meth:`start`, so a test can change passwords across a restart. With ``tls=True`` a second
    listener on :attr:`tls_port` speaks TLS (its CA is :attr:`ca_file`). Persistence is off by default, so a
    restart starts empty; pass ``persistence=True`` to keep retained messages, subscriptions and
    queued QoS 1/2 messages of persistent sessions across :meth:`restart` (saved on SIGTERM).
    The config, log and persistence database live in one temporary directory that :meth:`close`
    removes; :meth:`stop` keeps it so that a later :meth:`start` continues where the broker left off.
    """

    def __init__(
        self,
        binary: str | Path = DEFAULT_MOSQUITTO,
        *,
        port: int | None = None,
        persistence: bool = False,
        startup_timeout: float = 10.0,
        extra_config: str = "",
        tls: bool = False,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.binary = Path(binary)
        if not os.access(self.binary, os.X_OK):
            raise MosquittoError(f"{self.binary} not found; install Debian's mosquitto package (scripts/test does)")
        self.host = LOOPBACK
        self.port = port if port is not None else stable_free_port(LOOPBACK)
        self.persistence = persistence
        self.startup_timeout = startup_timeout
        self.extra_config = extra_config
        #: The TLS listener's port (also below the ephemeral range), or None without ``tls``.
        self.tls_port = _other_stable_port(self.port) if tls else None
        #: User name -> password; when non-empty, anonymous clients are refused.
        self.users: dict[str, str] = dict(users or {})
        self._dir: Path | None = None
        self._proc: LoggedProcess | None = None
        #: Seconds the last start took until the port accepted a TCP connection.
        self.startup_seconds = 0.0

    @property
    def dir(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="yurt-iot-mosquitto-"))
            atexit.register(self.close)
        return self._dir

    @property
    def log_path(self) -> Path:
        return self.dir / "mosquitto.log"

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) that signed the TLS listener's server certificate."""
        if self.tls_port is None:
            raise MosquittoError("this broker has no TLS listener (pass tls=True)")
        self._ensure_tls_files()
        return self.dir / "ca.crt"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (for its CPU and memory in benchmarks)."""
        return self._proc.popen.pid if self._proc is not None else None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _config(self) -> str:
        lines = [
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
        ]
        if self.tls_port is not None:
            self._ensure_tls_files()
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.dir / 'ca.crt'}",
                f"certfile {self.dir / 'server.crt'}",
                f"keyfile {self.dir / 'server.key'}",
            ]
        if self.users:
            password_file = self.dir / "passwd"
            _write_private(password_file, "".join(f"{u}:{_password_hash(pw)}\n" for u, pw in self.users.items()))
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        lines += [
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "connection_messages true",
        ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.dir}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            # Started as root, mosquitto would switch to the "mosquitto" user, which cannot write the
            # persistence file into our root-owned 0700 temp dir. Staying root is harmless here.
            lines.append("user root")
        return "\n".join(lines) + "\n" + self.extra_config + "\n"

    def start(self) -> None:
        """Start the broker (again) on the same port(s) and wait until every listener accepts TCP connections."""
        if self.running:
            raise MosquittoError(f"mosquitto already running on {self.host}:{self.port}")
        config = self.dir / "mosquitto.conf"
        config.write_text(self._config())
        self._proc = LoggedProcess.spawn(
            "mosquitto", [str(self.binary), "-c", str(config)], self.log_path, cwd=self.dir
        )
        started = self._proc.started
        deadline = started + self.startup_timeout
        waiting = [self.port] if self.tls_port is None else [self.port, self.tls_port]
        while waiting:
            code = self._proc.popen.poll()
            if code is not None:
                self.stop()
                raise MosquittoError(
                    f"mosquitto exited with code {code} during start-up on {self.host}:{self.port}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, waiting[0]), timeout=1.0):
                    pass
            except OSError as exc:
                if time.monotonic() >= deadline:
                    self.stop()
                    raise MosquittoError(
                        f"mosquitto not accepting connections on {self.host}:{waiting[0]} after "
                        f"{self.startup_timeout:.0f} s ({exc!r}):\n{self.log_tail()}"
                    ) from exc
                time.sleep(0.02)
            else:
                waiting.pop(0)
        self.startup_seconds = round(time.monotonic() - started, 3)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, SIGKILL after `timeout`); the port and temp dir are kept."""
        if self._proc is not None:
            self._proc.stop(timeout)
            self._proc = None

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start again on the same port."""
        self.stop(timeout)
        self.start()

    def close(self) -> None:
        """Stop the broker and remove its temporary directory."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        atexit.unregister(self.close)

    def _ensure_tls_files(self) -> None:
        if not (self.dir / "server.key").exists():
            _write_tls_files(self.dir, self.host)

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the broker's log (for error messages); empty once :meth:`close` removed it."""
        return "" if self._dir is None else log_tail(self.log_path, lines)


def _other_stable_port(taken: int) -> int:
    """A second port below the ephemeral range, different from `taken`."""
    while (port := stable_free_port(LOOPBACK)) == taken:
        pass
    return port


def _write_private(path: Path, text: str | bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def _password_hash(password: str) -> str:
    """mosquitto 2.0's password file hash: ``$7$<iterations>$<salt>$<PBKDF2-HMAC-SHA512>``, base64."""
    iterations, salt = 101, os.urandom(12)  # what mosquitto_passwd uses
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _write_tls_files(directory: Path, host: str) -> None:
    """Write ca.crt, server.crt and server.key: a throw-away CA and a server certificate for `host`."""
    # Imported here: only brokers with a TLS listener need the cryptography package.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "yurt-iot test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca_cert.public_bytes(pem))
    (directory / "server.crt").write_bytes(server_cert.public_bytes(pem))
    key = server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_private(directory / "server.key", key)
