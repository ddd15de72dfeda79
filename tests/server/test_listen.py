"""The listening socket: bound before anything starts, and a refusal that says what to do."""

from __future__ import annotations

import socket

import pytest

from gengate.server.listen import ListenError, address_of, listen


def test_port_zero_takes_a_free_port_and_says_which() -> None:
    with listen("127.0.0.1", 0) as sock:
        host, port = address_of(sock)
        assert host == "127.0.0.1"
        assert port > 0
        with socket.create_connection((host, port), timeout=5):
            pass  # already listening: a client is queued before the server accepts


def test_a_port_in_use_names_the_address_and_the_way_out() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as refused:
            listen("127.0.0.1", port)
    message = str(refused.value)
    assert f"127.0.0.1:{port}" in message
    assert "address already in use" in message
    assert "--port" in message
    assert "GENGATE_PORT" in message


def test_an_address_not_on_this_machine_points_at_the_host_setting() -> None:
    with pytest.raises(ListenError) as refused:
        listen("192.0.2.1", 0)  # TEST-NET-1: never a local address
    assert "192.0.2.1:0" in str(refused.value)
    assert "GENGATE_HOST" in str(refused.value)


def test_an_unknown_host_name_points_at_the_host_setting() -> None:
    with pytest.raises(ListenError) as refused:
        listen("no-such-host.invalid", 0)
    assert "no-such-host.invalid" in str(refused.value)
    assert "--host" in str(refused.value)
