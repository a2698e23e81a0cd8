"""EdgeX core-metadata and core-command for integration tests: the contract double of
:mod:`yurt_iot.testing.edgex.server`, run as its own process on loopback ports.

The real services (edgex-go) cannot be built here: the Go module proxy refuses every version of
``github.com/edgexfoundry/edgex-go`` (403), so the double stands in, following the REST contract and the
verified 4.0.2 behaviour in shared/reference/edgex-api.md. Given a :class:`~yurt_iot.testing.mosquitto.Mosquitto`,
it uses it as EdgeX 4's message bus (device validation requests, system events), as the real core-metadata
would with ``MESSAGEBUS_HOST``/``MESSAGEBUS_PORT`` pointing at it.
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.ports import LOOPBACK, free_ports
from yurt_iot.testing.process import LoggedProcess, log_tail

__all__ = ["EdgeX", "EdgeXStartError"]


class EdgeXStartError(RuntimeError):
    """The services did not come up; the message carries the tail of their log."""


class EdgeX:
    """core-metadata on :attr:`metadata_url` and core-command on :attr:`command_url` (127.0.0.1, free ports).

    `bus`: the broker used as the message bus; without one, device adds and patches need
    ``bypassValidation`` (as on EdgeX 4 with ``MESSAGEBUS_DISABLED=true``). `request_timeout` is EdgeX's
    ``Service.RequestTimeout`` (5 s): how long a device add waits for its validation answer.
    """

    def __init__(
        self, bus: Mosquitto | None = None, *, request_timeout: float = 5.0, startup_timeout: float = 15.0
    ) -> None:
        self.bus = bus
        self.request_timeout = request_timeout
        self.startup_timeout = startup_timeout
        self.host = LOOPBACK
        self.metadata_port, self.command_port = free_ports(2, LOOPBACK)
        self._proc: LoggedProcess | None = None
        fd, log_path = tempfile.mkstemp(prefix="yurt-iot-edgex-", suffix=".log")
        os.close(fd)
        self._log_path = Path(log_path)
        atexit.register(self.close)
        #: Seconds the last start took until both services answered /api/v3/ping.
        self.startup_seconds = 0.0

    @property
    def metadata_url(self) -> str:
        return f"http://{self.host}:{self.metadata_port}"

    @property
    def command_url(self) -> str:
        return f"http://{self.host}:{self.command_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start both services and wait until each answers ``GET /api/v3/ping`` (with a bus, the double
        subscribes to it before it listens, as core-metadata bootstraps its bus client before serving)."""
        if self.running:
            raise EdgeXStartError("EdgeX already running")
        command = [
            sys.executable, "-m", "yurt_iot.testing.edgex",
            "--metadata-port", str(self.metadata_port), "--command-port", str(self.command_port),
            "--request-timeout", str(self.request_timeout),
        ]  # fmt: skip
        if self.bus is not None:
            command += ["--bus", f"{self.bus.host}:{self.bus.port}"]
        self._proc = LoggedProcess.spawn("EdgeX", command, self._log_path)
        started = self._proc.started
        deadline = started + self.startup_timeout
        with httpx.Client(timeout=1.0) as http:
            for url in (self.metadata_url, self.command_url):
                while not _answers_ping(http, url):
                    if not self._proc.running or time.monotonic() >= deadline:
                        self.stop()
                        raise EdgeXStartError(f"EdgeX did not answer {url}/api/v3/ping:\n{self.log_tail()}")
                    time.sleep(0.02)
        self.startup_seconds = round(time.monotonic() - started, 3)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the services (SIGTERM, SIGKILL after `timeout`); everything they stored is gone."""
        if self._proc is not None:
            self._proc.stop(timeout)
            self._proc = None

    def close(self) -> None:
        """Stop and remove the log."""
        self.stop()
        self._log_path.unlink(missing_ok=True)
        atexit.unregister(self.close)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self._log_path, lines)


def _answers_ping(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(f"{url}/api/v3/ping").status_code == 200
    except httpx.TransportError:
        return False
