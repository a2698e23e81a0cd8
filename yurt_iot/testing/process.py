"""A server the tests run as a subprocess (etcd, kube-apiserver, Mosquitto, the EdgeX double): its output in a
log file, stopped with SIGTERM and, if it lingers, SIGKILL; the end of its log for error messages."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["LoggedProcess", "log_tail"]


@dataclass
class LoggedProcess:
    """One started server; `spawn` starts it, `stop` ends it and closes its log."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> LoggedProcess:
        """Start `argv` with stdout and stderr appended to `log_path`, after a line naming the command."""
        log_file = log_path.open("ab")
        log_file.write(f"$ {' '.join(argv)}\n".encode())
        log_file.flush()
        try:
            popen = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=cwd, env=env
            )
        except OSError:
            log_file.close()
            raise
        return cls(name, popen, log_path, log_file)

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float) -> None:
        """SIGTERM, SIGKILL after `timeout` seconds; the log file is closed either way."""
        try:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(timeout)
        finally:
            self.log_file.close()

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file, for error messages (never raises)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])
