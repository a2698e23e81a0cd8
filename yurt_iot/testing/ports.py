"""Free TCP ports on the loopback interface.

Two flavours exist because they fail differently: a port from the kernel's ephemeral range is
guaranteed free right now, but the kernel may hand the same number to some outgoing connection as
soon as we close our probe socket. That is fine for a service that binds it immediately and keeps it,
but not for a service that tests deliberately stop and restart on the same port (the MQTT broker): a
port *below* the ephemeral range is never chosen by the kernel for outgoing connections, so it stays
available for the restart.
"""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"

_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Return `count` distinct ports that are free on `host` right now.

    All probe sockets are held open until every port is chosen, so the ports are distinct.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = LOOPBACK) -> int:
    """Return one port that is free on `host` right now (from the kernel's ephemeral range)."""
    return free_ports(1, host)[0]


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = _EPHEMERAL_RANGE_FILE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux default


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def stable_free_port(host: str = LOOPBACK, attempts: int = 200) -> int:
    """Return a free port outside the kernel's ephemeral range (see module docstring for why).

    Falls back to an ephemeral port if no candidate below the range could be bound.
    """
    low, _ = _ephemeral_range()
    first = 10000 if low > 12000 else 1024
    last = low - 1
    if last > first:
        rng = random.SystemRandom()
        for _ in range(attempts):
            port = rng.randint(first, last)
            if _can_bind(host, port):
                return port
    return free_port(host)
