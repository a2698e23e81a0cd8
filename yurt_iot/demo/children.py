"""The demo's child processes (simulators, the built-in broker): started after a check that their port is free, ready
when they say so, and always stopped, in their own session so that a Ctrl-C reaches the demo alone and the
demo stops them in order (the gateway before the devices it reads). Also which broker to run: mosquitto when it
is installed, else the built-in one, so that the demo needs nothing beyond the package.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import socket
import sys
from enum import StrEnum
from pathlib import Path

from yurt_iot.demo.plan import DemoError
from yurt_iot.sim.process import die_with_parent
from yurt_iot.testing.ports import LOOPBACK

_READY_TIMEOUT = 30.0
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")
_STOP_TIMEOUT = 5.0


def check_port_free(port: int, purpose: str) -> None:
    """DemoError naming the port and what it was for if something listens on it already."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
        try:
            probe.bind((LOOPBACK, port))
        except OSError as error:
            reason = "is in use" if error.errno == errno.EADDRINUSE else f"cannot be used ({error.strerror})"
            raise DemoError(
                f"port {port} ({purpose}) {reason}: stop what listens there, or edit the port in the manifests "
                "and pass them with --manifests"
            ) from None


class BrokerChoice(StrEnum):
    """Which MQTT broker the demo runs: mosquitto when installed (auto), or the one built in (`demo.broker`)."""

    auto = "auto"
    builtin = "builtin"
    mosquitto = "mosquitto"


def find_mosquitto() -> Path | None:
    """The mosquitto binary on PATH or where Debian and Homebrew install it (often not on a user's PATH); None if
    it is not installed."""
    found = shutil.which("mosquitto", path=os.pathsep.join((os.environ.get("PATH", ""), *_SBIN)))
    return None if found is None else Path(found)


def choose_broker(choice: BrokerChoice) -> Path | None:
    """The mosquitto binary to run, or None for the built-in broker; DemoError if mosquitto is asked for and
    missing."""
    if choice == BrokerChoice.builtin:
        return None
    binary = find_mosquitto()
    if binary is None and choice == BrokerChoice.mosquitto:
        raise DemoError(
            "--broker mosquitto, but mosquitto is not installed: install it (Debian/Ubuntu: apt install mosquitto, "
            "macOS: brew install mosquitto), or leave --broker out to use the built-in broker"
        )
    return binary


def builtin_broker(port: int, workdir: Path) -> Child:
    """The built-in broker's process on `port` (see `yurt_iot.demo.broker`), logging to `workdir`."""
    argv = (sys.executable, "-m", "yurt_iot.demo.broker", "--port", str(port))
    return Child("MQTT broker", argv, workdir / f"broker-{port}.log")


class Child:
    """One child process that prints a line on stdout once it serves."""

    def __init__(self, purpose: str, argv: tuple[str, ...], log: Path) -> None:
        self.purpose, self.argv, self.log = purpose, argv, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        """Start it and return its first line; DemoError with the tail of its log if it exits or hangs first."""
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log,
                start_new_session=True, preexec_fn=die_with_parent,
            )  # fmt: skip
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), _READY_TIMEOUT)
        except TimeoutError:
            line = b""
        if not line:
            await self.stop()
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-5:])
            raise DemoError(f"the {self.purpose} did not start:\n{tail}")
        return line.decode().strip()

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
