"""A test-wide guard: no socket may connect beyond loopback.

Installed by conftest.py before any test runs, so a bug that follows a
redirect to the internet, or a feed URL that escaped a fixture, fails the test
with ``NetworkGuardError`` instead of sending a packet off this machine.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any


class NetworkGuardError(ConnectionRefusedError):
    """A test tried to connect beyond loopback."""


_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def _is_loopback(sock: socket.socket, address: Any) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True  # unix sockets never leave the machine
    host = address[0] if isinstance(address, tuple) else address
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return False  # a name here means someone bypassed resolution; refuse
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _is_loopback(self, address):
        raise NetworkGuardError(f"test network guard: refused connection to {address!r}")
    return _original_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _is_loopback(self, address):
        raise NetworkGuardError(f"test network guard: refused connection to {address!r}")
    return _original_connect_ex(self, address)


def install() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
