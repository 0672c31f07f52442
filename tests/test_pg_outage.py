"""The shared PostgreSQL store when its server misbehaves: down, restarted, sessions ended, turned
read-only, a role without a privilege, a writer holding the lock: every request answers (JSON 503
with the reason, never a 500), each thread's connection heals by itself once the server is back,
and background jobs report what requests do. A real server of their own when they stop it."""

from __future__ import annotations

import concurrent.futures
import http.client
import io
import json
import time
import uuid
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from PIL import Image

from hikaze_manager import create_app
from hikaze_manager.db import errors as db_errors
from hikaze_manager.db import pg
from hikaze_manager.server import start_server
from hikaze_manager.state import get_state

from conftest import TEST_MACHINE
from metadata_support import write_safetensors
from pg_support import serve_for_tests

SHA = "ab" * 32
READS = ("/api/tags", "/api/library/missing", "/api/migration/pending_models", f"/api/models/{SHA}")


@pytest.fixture(scope="module")
def own_server():
    """A server of this module's own, which its tests stop and start (the session's is shared)."""
    yield from serve_for_tests()


def _make_app(tmp_path, url: str):
    roots = {}
    for kind in ("checkpoints", "loras"):
        (tmp_path / "models" / kind).mkdir(parents=True, exist_ok=True)
        roots[kind] = {"roots": [str(tmp_path / "models" / kind)]}
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "MODEL_TYPES": roots,
                      "DATABASE_URL": url, "MACHINE_NAME": TEST_MACHINE})
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: an unexpected error is a 500
    return app


@pytest.fixture
def own_app(own_server, tmp_path):
    app = _make_app(tmp_path, own_server.new_database())
    yield app
    _close(app)


def _close(app) -> None:
    state = get_state(app)
    for job in state.jobs.list():
        state.jobs.cancel(job.id)
        state.jobs.wait(job.id, timeout=30)
    state.lists.close()
    state.store.close()


def _add_model(app) -> None:
    with get_state(app).store.connection() as conn:
        conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
                     "VALUES (?, 'a.safetensors', 'a', 'loras', 1, 1700000000000)", (SHA,))


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(out, "PNG")
    return out.getvalue()


def _assert_503(response, words: str) -> None:
    body = response.get_json()
    assert response.status_code == 503, (response.status_code, body)
    assert words in body["error"], body


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgresql_down_is_a_json_503_and_once_back_every_request_works_first_time(
        own_server, own_app, mode):
    client = own_app.test_client()
    _add_model(own_app)
    for path in READS:  # this thread now holds a connection, as every server thread does
        assert client.get(path).status_code == 200, path
    own_server.halt(mode)
    try:
        for path in READS:
            _assert_503(client.get(path), "cannot be reached")
        _assert_503(client.post("/api/tags_add", json={"newtags": ["while-down"]}),
                    "cannot be reached")
    finally:
        own_server.resume()
    for path in READS:  # the connection the server ended is never handed out again
        assert client.get(path).status_code == 200, path
    assert client.post("/api/tags_add", json={"newtags": ["back"]}).status_code == 200
    assert [t["name"] for t in client.get("/api/tags").get_json()["tags"]] == ["back"]


def _call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload,
                     headers={"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        data = response.read()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(data)
        return response.status, len(data)
    finally:
        conn.close()


@pytest.fixture
def pg_app(app_config, postgres_library_url):
    app_config.update(DATABASE_URL=postgres_library_url, MACHINE_NAME=TEST_MACHINE)
    app = create_app(app_config)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    _add_model(app)
    yield app
    _close(app)


def _end_sessions(server, url: str) -> None:
    """End every session of the library (an administrator, a pooler or a failover did this)."""
    database = unquote(urlsplit(url).path[1:])
    server.admin_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
    time.sleep(0.2)  # each session has had its goodbye sent


def test_sessions_ended_by_the_server_are_replaced_on_every_thread_without_an_error(
        pg_app, postgres_server, postgres_library_url):
    client = pg_app.test_client()
    upload = {"sha256": SHA, "image": (io.BytesIO(_png()), "a.png")}
    assert client.post("/api/images/upload", data=upload,
                       content_type="multipart/form-data").status_code == 200
    picture = f"/api/images/{SHA}_0.webp"
    handle = start_server(pg_app, "127.0.0.1", 0, threads=4)
    try:
        requests = [("GET", path, None) for path in (*READS, picture)] * 8
        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # every thread, both connections
            assert {s for s, _ in pool.map(lambda r: _call(handle.port, *r), requests)} == {200}
        _end_sessions(postgres_server, postgres_library_url)
        writes = [("POST", "/api/tags_add", {"newtags": [f"t{i}"]}) for i in range(16)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda r: _call(handle.port, *r), requests + writes))
        assert [a for a in answers if a[0] != 200] == []
    finally:
        handle.stop()


def test_a_database_turned_read_only_at_run_time_answers_writes_with_a_503(
        pg_app, postgres_server, postgres_library_url):
    client = pg_app.test_client()
    database = unquote(urlsplit(postgres_library_url).path[1:])
    postgres_server.admin_execute(
        f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    _end_sessions(postgres_server, postgres_library_url)  # a failover: new sessions, on a standby
    _assert_503(client.post("/api/tags_add", json={"newtags": ["x"]}), "read-only")
    _assert_503(client.patch(f"/api/models/{SHA}", json={"name": "n"}), "read-only")
    _assert_503(client.post("/api/models/tags", json={"sha256": [SHA], "add": ["y"]}), "read-only")
    assert client.get(f"/api/models/{SHA}").get_json()["name"] == "a"  # reads still work


def test_a_role_without_a_privilege_gets_a_503_naming_it(postgres_server, postgres_url, tmp_path):
    role = f"hk_{uuid.uuid4().hex[:10]}"
    database = unquote(urlsplit(postgres_url).path[1:])
    postgres_server.admin_execute(f'CREATE ROLE "{role}" LOGIN')
    postgres_server.admin_execute(f'GRANT CREATE, CONNECT ON DATABASE "{database}" TO "{role}"')
    app = _make_app(tmp_path, postgres_server.url_for(database, user=role))
    try:
        with psycopg.connect(postgres_url, autocommit=True) as admin:  # its owner limits it
            admin.execute(f'REVOKE INSERT ON hikaze.tags FROM "{role}"')
        client = app.test_client()
        _assert_503(client.post("/api/tags_add", json={"newtags": ["x"]}), "privilege")
        assert client.get("/api/tags").get_json() == {"tags": []}
    finally:
        _close(app)
        postgres_server.drop_database(database)
        postgres_server.admin_execute(f'DROP ROLE "{role}"')


def _holder(app):
    """Another writer: a connection of the library's own kind inside a write transaction."""
    conn = get_state(app).store.connect()
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_a_write_waiting_out_another_writers_lock_says_who_holds_it(monkeypatch, app_config,
                                                                     postgres_library_url):
    monkeypatch.setattr(pg, "LOCK_TIMEOUT", "1s")
    app_config.update(DATABASE_URL=postgres_library_url, MACHINE_NAME=TEST_MACHINE)
    app = create_app(app_config)
    holder = _holder(app)
    try:
        client = app.test_client()
        _assert_503(client.post("/api/tags_add", json={"newtags": ["x"]}), "write lock")
        holder.execute("ROLLBACK")
        assert client.post("/api/tags_add", json={"newtags": ["x"]}).status_code == 200
    finally:
        holder.close()
        _close(app)


def test_a_frozen_writer_loses_the_lock_after_the_idle_in_transaction_timeout(
        monkeypatch, app_config, postgres_library_url):
    app_config.update(DATABASE_URL=postgres_library_url, MACHINE_NAME=TEST_MACHINE)
    app = create_app(app_config)
    with get_state(app).store.connection() as conn:  # the settings every connection gets
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "1min"
        assert conn.execute("SHOW tcp_keepalives_idle").fetchone()[0] == "30"
        given = conn.raw.info.get_parameters()
        assert (given["keepalives"], given["keepalives_idle"], given["keepalives_count"]) == (
            "1", "30", "6")
    own = pg.connect(postgres_library_url + "?keepalives_idle=7", ("hikaze",))
    try:  # a URL's own keepalive settings win
        assert own.raw.info.get_parameters()["keepalives_idle"] == "7"
    finally:
        own.close()
    monkeypatch.setattr(pg, "IDLE_IN_TRANSACTION_TIMEOUT", "1s")
    holder = _holder(app)  # a machine put to sleep in the middle of a write: it says nothing more
    try:
        began = time.monotonic()
        response = app.test_client().post("/api/tags_add", json={"newtags": ["x"]})
        assert response.status_code == 200, response.get_json()
        assert time.monotonic() - began < 10
        with pytest.raises(db_errors.Error) as woke:  # when it wakes, its transaction is gone
            holder.execute("SELECT 1")
        assert db_errors.is_unreachable(woke.value)
        assert not holder.in_transaction and not holder.usable()
    finally:
        holder.close()
        _close(app)


def test_a_job_that_meets_a_held_lock_fails_with_the_503_a_request_gets(
        monkeypatch, app_config, postgres_library_url, models_root, caplog):
    monkeypatch.setattr(pg, "LOCK_TIMEOUT", "1s")
    app_config.update(DATABASE_URL=postgres_library_url, MACHINE_NAME=TEST_MACHINE)
    app = create_app(app_config)
    write_safetensors(models_root / "loras" / "new.safetensors", {"seed": "1"})
    holder = _holder(app)
    try:
        started = app.test_client().post("/api/scan?async=1")
        assert started.status_code == 202, started.get_json()
        job = get_state(app).jobs.wait(started.get_json()["job_id"], timeout=60)
        snap = job.snapshot()
        assert (snap["state"], snap["status_code"]) == ("failed", 503), snap
        assert "write lock" in snap["error"]
        assert "Traceback" not in caplog.text  # not logged as a bug of ours
    finally:
        holder.close()
        _close(app)


def test_a_job_that_loses_the_database_fails_with_a_503(own_server, own_app):
    own_server.halt("fast")
    try:
        job = get_state(own_app).jobs.submit("demo", lambda _job: _read_tags(own_app))
        get_state(own_app).jobs.wait(job.id, timeout=60)
    finally:
        own_server.resume()
    snap = job.snapshot()
    assert (snap["state"], snap["status_code"]) == ("failed", 503), snap
    assert "cannot be reached" in snap["error"]


def _read_tags(app):
    with get_state(app).store.connection() as conn:
        return 200, [row[0] for row in conn.execute("SELECT name FROM tags")]
