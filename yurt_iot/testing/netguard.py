"""A process-wide guard that keeps tests on the loopback interface.

Tests must never reach another machine: CI has no network to speak of, a stray connection to a real
broker or cluster would make results depend on the outside world, and a misconfigured default
(``0.0.0.0``, a production hostname) is exactly the bug such a guard should surface. Python's audit
hooks (PEP 578) see every ``socket`` operation before the system call, so the guard can refuse:

* ``socket.connect`` / ``socket.sendto`` to an AF_INET/AF_INET6 address outside 127.0.0.0/8 and ``::1``
  (IPv4-mapped loopback ``::ffff:127.x.y.z`` is loopback too);
* ``socket.bind`` to a non-loopback address, and to the wildcard ``0.0.0.0`` / ``::`` / ``""`` with a
  fixed port, because a server listening on every interface is exposed to the network (the wildcard
  with port 0 passes: that is what every unbound socket gets implicitly at connect);
* ``socket.getaddrinfo`` of a host name other than ``localhost`` (or this machine's own name), since
  resolving it may send a DNS query off the machine. IP literals pass (their connect is checked).

Unix sockets and other families are not checked. Limits: only Python-level socket calls are seen, not
subprocesses or C libraries doing their own I/O; and ``sock.connect(("name", port))`` resolves the name
inside the call before the audit event, so that DNS query cannot be stopped (the connect still is).

Refusals raise :class:`NonLoopbackAddressError`, a ``PermissionError`` (an ``OSError``, like the
EACCES a firewall would give). It has to be an ``OSError``: ``socket.create_connection`` and many
libraries close the half-made socket only for ``OSError``, and with any other exception the socket
leaks and its ``ResourceWarning`` surfaces as an error in some later, unrelated test. The price is
that libraries may wrap it (httpx raises ``ConnectError`` from it) or retry quietly (an MQTT client's
reconnect loop); therefore every refusal is also recorded, and the test suite's autouse fixture fails
any test during which a refusal happened (see :func:`refusals`). Audit hooks cannot be removed, so
:func:`install` is for test processes only.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["NonLoopbackAddressError", "expected_refusals", "install", "installed", "refusals"]

_CHECKED_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.bind", "socket.getaddrinfo"})
_LOCAL_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})

_lock = threading.Lock()
_refusals: list[str] = []
_installed = False


class NonLoopbackAddressError(PermissionError):
    """A test tried to use a network address outside the loopback interface."""


def _is_loopback_ip(text: str) -> bool | None:
    """True/False for an IP literal (scope id allowed), None if `text` is not an IP literal."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _host_text(host: Any) -> str | None:
    if isinstance(host, bytes):
        return host.decode("idna", errors="replace")
    if isinstance(host, str):
        return host
    return None


def _address_problem(event: str, sock: Any, address: Any) -> str | None:
    family = getattr(sock, "family", None)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    if not isinstance(address, tuple) or not address:
        return None
    host = _host_text(address[0])
    if host is None:
        return None
    if event == "socket.bind" and host in ("", "0.0.0.0", "::"):
        # Port 0 on the wildcard is what connect() does implicitly anyway (paho-mqtt binds ("", 0)
        # explicitly before every connect); a fixed port there means a server on all interfaces.
        port = address[1] if len(address) > 1 else 0
        return None if port == 0 else "wildcard address (a server listening on all interfaces)"
    loopback = _is_loopback_ip(host)
    if loopback is None:
        loopback = host.lower() in _LOCAL_NAMES
    return None if loopback else "non-loopback address"


def _name_problem(host: Any) -> str | None:
    name = _host_text(host)
    if name is None or name == "":
        return None
    if _is_loopback_ip(name) is not None:
        return None  # an IP literal needs no DNS; connecting to it is checked separately
    if name.lower() in _LOCAL_NAMES or name.lower() == socket.gethostname().lower():
        return None
    return "host name resolution (DNS may leave the machine)"


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in _CHECKED_EVENTS:
        return
    if event == "socket.getaddrinfo":
        problem = _name_problem(args[0])
        target: Any = args[0]
    else:
        problem = _address_problem(event, args[0], args[1])
        target = args[1]
    if problem is None:
        return
    message = (
        f"test network guard refused {event} to {target!r}: {problem}; "
        "tests may only use 127.0.0.1 / ::1 / localhost (see yurt_iot.testing.netguard)"
    )
    with _lock:
        _refusals.append(message)
    raise NonLoopbackAddressError(errno.EACCES, message)


def install() -> None:
    """Install the audit hook for the rest of this process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        sys.addaudithook(_hook)
        _installed = True


def installed() -> bool:
    return _installed


def refusals() -> list[str]:
    """Messages of all refusals so far that were not consumed by :func:`expected_refusals`."""
    with _lock:
        return list(_refusals)


@contextlib.contextmanager
def expected_refusals() -> Iterator[list[str]]:
    """Collect refusals made inside the block (for tests of the guard itself).

    They are removed from the process-wide record, so a fixture that fails tests with unexpected
    refusals does not count them. The yielded list is filled when the block exits.
    """
    with _lock:
        start = len(_refusals)
    collected: list[str] = []
    try:
        yield collected
    finally:
        with _lock:
            collected.extend(_refusals[start:])
            del _refusals[start:]
