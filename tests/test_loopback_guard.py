"""The test suite's own rule, checked: nothing leaves loopback (see ``_guard_sockets`` in conftest)."""

from __future__ import annotations

import socket

import pytest

import conftest


def test_lookups_and_connections_beyond_loopback_are_refused_and_reported() -> None:
    with pytest.raises(socket.gaierror, match="tests stay on loopback"):
        socket.getaddrinfo("api.example.com", 443)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: refused before any packet is sent
    assert conftest._OUTSIDE == ["name lookup of api.example.com", "connection to 192.0.2.1"]
    conftest._OUTSIDE.clear()  # reported: the autouse check would otherwise fail this test, as it should


def test_loopback_is_allowed() -> None:
    assert socket.getaddrinfo("localhost", 80)
    assert socket.getaddrinfo("127.0.0.1", 80)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
