"""A real Mosquitto MQTT broker for integration tests.

Why the real broker: the gateway's MQTT bridge has to survive broker outages (queueing, reconnect,
re-subscribe), and only a real broker that really goes away and comes back exercises that. Debian's
``mosquitto`` package provides ``/usr/sbin/mosquitto``; ``scripts/test`` installs it.

The broker listens on 127.0.0.1 only, on a port chosen *below* the kernel's ephemeral range (see
:mod:`yurt_iot.testing.ports`), so :meth:`Mosquitto.restart` / :meth:`Mosquitto.start` after a long
:meth:`Mosquitto.stop` can bind the same port again: clients configured with that port must be able
to reconnect to the restarted broker.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from yurt_iot.testing.ports import LOOPBACK, stable_free_port

__all__ = ["DEFAULT_MOSQUITTO", "Mosquitto", "MosquittoError"]

DEFAULT_MOSQUITTO = "/usr/sbin/mosquitto"


class MosquittoError(RuntimeError):
    """The broker could not be started; the message carries the tail of its log."""


class Mosquitto:
    """A Mosquitto broker subprocess on ``host:port`` (127.0.0.1 and a fixed port for its lifetime).

    Anonymous access is allowed (tests need no credentials). Persistence is off by default, so a
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
    ) -> None:
        self.binary = Path(binary)
        if not os.access(self.binary, os.X_OK):
            raise MosquittoError(f"{self.binary} not found; install Debian's mosquitto package (scripts/test does)")
        self.host = LOOPBACK
        self.port = port if port is not None else stable_free_port(LOOPBACK)
        self.persistence = persistence
        self.startup_timeout = startup_timeout
        self.extra_config = extra_config
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
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
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

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
            "allow_anonymous true",
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
        """Start the broker (again) on the same port and wait until it accepts TCP connections."""
        if self.running:
            raise MosquittoError(f"mosquitto already running on {self.host}:{self.port}")
        config = self.dir / "mosquitto.conf"
        config.write_text(self._config())
        log_file = self.log_path.open("ab")
        log_file.write(f"--- starting {self.binary} -c {config}\n".encode())
        log_file.flush()
        started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                [str(self.binary), "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )
        except OSError:
            log_file.close()
            raise
        self._log_file = log_file
        deadline = started + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._reap()
                raise MosquittoError(
                    f"mosquitto exited with code {code} during start-up on {self.host}:{self.port}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    pass
            except OSError as exc:
                if time.monotonic() >= deadline:
                    self.stop()
                    raise MosquittoError(
                        f"mosquitto not accepting connections on {self.host}:{self.port} after "
                        f"{self.startup_timeout:.0f} s ({exc!r}):\n{self.log_tail()}"
                    ) from exc
                time.sleep(0.02)
            else:
                self.startup_seconds = round(time.monotonic() - started, 3)
                return

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, SIGKILL after `timeout`); the port and temp dir are kept."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

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

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the broker's log (for error messages); empty once :meth:`close` removed it."""
        if self._dir is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read {self.log_path}: {exc}>"
        return "\n".join(text.splitlines()[-lines:])
