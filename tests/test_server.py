"""The real server: waitress on loopback, port fallback, and ``python -m hikaze_manager``."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from hikaze_manager.server import start_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _get(port: int, path: str, host: str | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Host": host} if host else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


@pytest.fixture
def server(app):
    handle = start_server(app, "127.0.0.1", 0)
    yield handle
    handle.stop()


def test_waitress_round_trip_on_port_zero(server, client):
    assert server.port > 0
    assert server.server.effective_host == "127.0.0.1"
    client.post("/api/tags_add", json={"newtags": ["over the wire"]})
    status, body = _get(server.port, "/api/tags")
    assert status == 200
    assert body == {"tags": [{"id": 1, "name": "over the wire"}]}


def test_rebinding_host_rejected_over_the_wire(server):
    status, body = _get(server.port, "/api/tags", host="attacker.example")
    assert status == 400
    assert body == {"error": "Host not allowed"}


def test_taken_port_moves_to_the_next_free_one(app):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    try:
        handle = start_server(app, "127.0.0.1", taken)
        try:
            assert handle.port != taken
            assert taken < handle.port <= taken + 20
            assert _get(handle.port, "/api/models/get_types")[0] == 200
        finally:
            handle.stop()
    finally:
        blocker.close()


@contextmanager
def running_module(args: list[str], env: dict):
    """Run ``python -m hikaze_manager``; yield its port once it prints its URL; Ctrl-C it after."""
    process = subprocess.Popen([sys.executable, "-m", "hikaze_manager", *args], cwd=PROJECT_ROOT,
                               env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "running at http://127.0.0.1:" in line, line + process.stderr.read()
        yield int(line.rsplit(":", 1)[1].strip(" /\n"))
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("no clean stop after Ctrl-C:\n" + process.stderr.read()) from None
        assert code == 0, process.stderr.read()  # a clean stop, not a traceback
        assert "stopping" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_python_m_hikaze_manager_starts_prints_url_and_stops_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKAZE_")}
    args = ["--data-dir", str(tmp_path / "data"), "--port", "0", "--models-dir", str(tmp_path)]
    with running_module(args, env) as port:
        assert _get(port, "/api/models/get_types")[0] == 200
    assert (tmp_path / "data" / "hikaze_model_manager.db").is_file()


def test_oversized_body_is_refused_before_it_is_sent(app, server):
    """waitress answers 413 (as JSON) on the headers alone; the 100 MB body is never sent."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/images/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"application/json" in head
    assert "error" in json.loads(body)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_environment_settings_are_used_when_options_are_not_given(tmp_path):
    port = _free_port()
    env = {**os.environ, "HIKAZE_PORT": str(port), "HIKAZE_DATA_DIR": str(tmp_path / "env-data"),
           "HIKAZE_ALLOWED_ORIGINS": '["http://127.0.0.1:8188"]'}
    with running_module([], env) as bound:
        assert bound == port
        status, body = _get(port, "/api/panel/config")
        assert status == 200 and body["allowed_origins"] == ["http://127.0.0.1:8188"]
    assert (tmp_path / "env-data" / "hikaze_model_manager.db").is_file()


def test_command_line_builds_only_the_options_given():
    from hikaze_manager.__main__ import build_config, parse_args

    assert build_config(parse_args([])) == {}
    assert build_config(parse_args(["--host", "0.0.0.0", "--allow-host", "studio.lan",
                                    "--port", "0"])) == {
        "HOST": "0.0.0.0", "PORT": 0, "ALLOWED_HOSTS": ["studio.lan"]}


def test_a_sqlite_server_never_loads_the_postgresql_driver(tmp_path):
    # psycopg costs a SQLite start-up (and ComfyUI) about 0.1 s; only a PostgreSQL store loads it.
    script = (
        "import sys, json\n"
        "from hikaze_manager import create_app\n"
        f"app = create_app({{'DATA_DIR': {str(tmp_path / 'data')!r}, 'MODELS_DIR': {str(tmp_path)!r}}})\n"
        "client = app.test_client()\n"
        "codes = [client.get(u).status_code for u in ('/api/models/get_types',"
        " '/api/models?type=loras', '/api/tags', '/api/models/' + 'a' * 64)]\n"
        "print(json.dumps([codes, 'psycopg' in sys.modules]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKAZE_")}
    out = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    codes, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert codes == [200, 200, 200, 404]
    assert loaded is False


_FREED_BUFFERS = """
import os, sys, threading
sys.path.insert(0, {root!r})
from hikaze_manager.server import return_large_buffers_to_os
tuned = return_large_buffers_to_os() if sys.argv[1] == "tuned" else None
rss = lambda: int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
before, kept = rss(), []
def rebuild():  # what a list rebuild on a worker thread does: big parts, one body, freed
    parts = [os.urandom(1) * (1 << 20) for _ in range(24)]
    body = b"".join(parts)
    kept.append(bytes(1000))
    del parts, body
for _ in range(4):
    worker = threading.Thread(target=rebuild)
    worker.start()
    worker.join()
print(tuned, (rss() - before) // 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_large_buffers_freed_on_worker_threads_go_back_to_the_os():
    script = _FREED_BUFFERS.format(root=str(PROJECT_ROOT))
    grown = {}
    for mode in ("tuned", "default"):
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                             check=True).stdout.split()
        grown[mode] = (out[0], int(out[1]))
    assert grown["tuned"][0] == "True"
    assert grown["tuned"][1] < 10  # MB kept after 4 x 48 MB built and freed
    assert grown["default"][1] > grown["tuned"][1]  # the test can tell the difference


def test_a_304_keeps_the_connection_open_unless_the_client_closes_it(app):
    handle = start_server(app, "127.0.0.1", 0, threads=1)
    conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=10)
    try:
        conn.request("GET", "/api/tags")
        first = conn.getresponse()
        first.read()
        etag, sock = first.getheader("ETag"), conn.sock
        conn.request("GET", "/api/tags", headers={"If-None-Match": etag})
        again = conn.getresponse()
        assert again.read() == b"" and again.status == 304
        assert again.getheader("Connection") is None and not again.will_close
        conn.request("GET", "/api/tags")
        third = conn.getresponse()
        assert third.status == 200 and json.loads(third.read())["tags"] == []
        assert conn.sock is sock  # one connection served all three
        conn.request("GET", "/api/tags", headers={"If-None-Match": etag, "Connection": "close"})
        last = conn.getresponse()
        assert last.status == 304 and last.will_close
    finally:
        conn.close()
        handle.stop()
