"""The suite's own guard: nothing leaves loopback."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from tests.netguard import NetworkGuardError


@pytest.mark.parametrize("address", [("192.0.2.1", 80), ("10.0.0.1", 443), ("8.8.8.8", 53)])
def test_guard_refuses_non_loopback_sockets(address: tuple[str, int]) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(NetworkGuardError),
    ):
        sock.connect(address)


def test_guard_refuses_ipv6_beyond_loopback() -> None:
    with (
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock,
        pytest.raises(NetworkGuardError),
    ):
        sock.connect(("2001:db8::1", 80, 0, 0))


async def test_guard_stops_aiohttp_too() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get("http://192.0.2.1/feed")
    assert isinstance(caught.value.os_error, NetworkGuardError)


def test_guard_allows_loopback() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=1):
            pass
