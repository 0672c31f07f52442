"""The throw-away PostgreSQL server of tests/pg_support.py really runs, isolates and stops."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from pg_support import REQUIRE_ENV, PostgresServer, postgres_unavailable


def _db_name(url: str) -> str:
    return unquote(urlsplit(url).path[1:])


def _process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (it holds no port and no files).
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_postgres_url_is_a_working_empty_database(postgres_url):
    assert postgres_url.startswith("postgresql://postgres@127.0.0.1:")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT COLLATE \"C\")")
        conn.execute("INSERT INTO t VALUES (1, 'b'), (2, 'A')")
        assert conn.execute("SELECT name FROM t ORDER BY name").fetchall() == [("A",), ("b",)]
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)


def test_two_databases_are_isolated(postgres_server):
    first, second = postgres_server.new_database(), postgres_server.new_database()
    try:
        assert first != second
        with psycopg.connect(first) as conn:
            conn.execute("CREATE TABLE only_here (x INTEGER)")
        with psycopg.connect(second) as conn:
            assert conn.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
    finally:
        postgres_server.drop_database(_db_name(first))
        postgres_server.drop_database(_db_name(second))


def test_template_database_is_cloned_and_drop_removes_it(postgres_server):
    template = postgres_server.new_database()
    with psycopg.connect(template) as conn:
        conn.execute("CREATE TABLE seeded (x INTEGER)")
        conn.execute("INSERT INTO seeded SELECT generate_series(1, 100)")
    clone = postgres_server.new_database(template=_db_name(template))
    with psycopg.connect(clone) as conn:
        assert conn.execute("SELECT count(*) FROM seeded").fetchone() == (100,)
    held = psycopg.connect(clone)  # a session left open (as an app's pooled connection would)
    postgres_server.drop_database(_db_name(clone))
    postgres_server.drop_database(_db_name(template))
    names = {row[0] for row in postgres_server.admin_execute("SELECT datname FROM pg_database")}
    assert not {_db_name(clone), _db_name(template)} & names
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")
    held.close()


def test_password_role_needs_its_password(postgres_server):
    url = postgres_server.new_role("pw_user", "s3cr:t/p@ss")
    assert "s3cr%3At%2Fp%40ss@" in url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == ("pw_user", True)
    without, wrong = postgres_server.url_for(user="pw_user"), postgres_server.url_for(user="pw_user", password="no")
    for wrong in (without, wrong):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(wrong, connect_timeout=5).close()


def test_server_runs_unprivileged_and_stop_ends_it():
    server = PostgresServer().start()
    try:
        pid, port, root = server.pid, server.port, server.root
        expected = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
        assert _process_uid(pid) == expected
        assert (os.geteuid() == 0) == (server.os_user == "postgres")
        assert server.data_dir.stat().st_uid == expected
        assert _port_open(port)
    finally:
        server.stop()
    assert not _alive(pid)
    assert not _port_open(port)
    assert not root.exists()
    server.stop()  # twice is harmless


def test_server_does_not_outlive_a_killed_test_process():
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from pg_support import PostgresServer; "
            "s = PostgresServer().start(); print(s.pid, s.port, s.root, flush=True); time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parent)],
                             stdout=subprocess.PIPE, text=True)
    try:
        pid, port, root = child.stdout.readline().split()
        assert _alive(int(pid))
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    deadline = time.monotonic() + 30
    while (_alive(int(pid)) or Path(root).exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(pid))
    assert not _port_open(int(port))
    assert not Path(root).exists()


def test_missing_server_fails_when_required_else_skips(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="HIKAZE_REQUIRE_POSTGRES=1"):
        postgres_unavailable("no initdb")
    monkeypatch.delenv(REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="no initdb"):
        postgres_unavailable("no initdb")
