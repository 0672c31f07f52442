"""Many idle or slow clients (slowloris) never stop the server answering a normal request, and
idle ones are dropped: a real waitress server from ``start_server`` and 200 real sockets."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from hikaze_manager.server import start_server

CLIENTS = 200


def _timed_get(port: int, path: str = "/api/tags") -> tuple[int, float]:
    began = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        json.loads(response.read())
        return response.status, time.monotonic() - began
    finally:
        conn.close()


@pytest.fixture
def idle_sockets():
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def _open_slow_clients(port: int, sockets: list) -> None:
    for i in range(CLIENTS):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if i % 2:  # half send a request they never finish, half send nothing at all
            sock.sendall(b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sockets.append(sock)


def test_200_idle_and_slow_connections_do_not_delay_a_normal_request(app, idle_sockets):
    handle = start_server(app, "127.0.0.1", 0)
    try:
        _open_slow_clients(handle.port, idle_sockets)
        time.sleep(0.5)  # let the server accept all of them
        for _ in range(5):
            status, elapsed = _timed_get(handle.port)
            assert status == 200
            assert elapsed < 1.0, f"a normal request waited {elapsed:.2f}s behind {CLIENTS} idle ones"
    finally:
        handle.stop()


def test_idle_and_half_sent_connections_are_dropped_after_the_channel_timeout(app, idle_sockets):
    app.config["CHANNEL_TIMEOUT"] = 2
    handle = start_server(app, "127.0.0.1", 0)
    try:
        _open_slow_clients(handle.port, idle_sockets)
        deadline = time.monotonic() + 15
        for sock in idle_sockets:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(1) == b"", "an idle client was kept past the channel timeout"
        assert len(handle.server._map) <= 3  # only the listener and the trigger remain
        assert _timed_get(handle.port)[0] == 200
    finally:
        handle.stop()


def test_the_limits_are_raised_from_waitress_defaults(app):
    handle = start_server(app, "127.0.0.1", 0)
    try:
        adj = handle.server.adj
        assert adj.connection_limit >= 4 * CLIENTS
        assert adj.channel_timeout <= 30
    finally:
        handle.stop()
