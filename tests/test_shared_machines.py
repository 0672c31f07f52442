"""Machines of one shared library (issue 10): what one machine's tag counts must include of the
others, one machine name per live server, and a role or standby that may only read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from hikaze_manager import create_app
from hikaze_manager.db.errors import MachineTaken
from hikaze_manager.db.pg_claim import claim_key
from hikaze_manager.db.stores import MachineInUse, PostgresStore, StartRefused, machine_schema
from hikaze_manager.state import get_state

from metadata_support import write_safetensors
from test_comfy_loaders import node_module  # noqa: F401 (fixture)
from test_pg_outage import own_server  # noqa: F401 (fixture)
from test_shared_library import machines  # noqa: F401 (fixture)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def link_pending_tag(machine, tag_id: int) -> int:
    """Tag ``machine``'s one pending model (as its legacy migration would): the pending id."""
    pending = machine.ok("GET", "/api/migration/pending_models")["models"]
    with get_state(machine.app).store.connection() as conn:
        conn.execute("INSERT INTO pending_model_tags(model_id, tag_id) VALUES (?, ?)",
                     (pending[0]["id"], tag_id))
    return pending[0]["id"]


@pytest.fixture
def tag_pending_on_b(machines):  # noqa: F811 (the fixture imported above)
    """Machine B has one pending model carrying tag ``legacy``, made on A; the tag's id."""
    write_safetensors(machines.b.models / "loras" / "p.safetensors", {"seed": "p"})
    assert machines.b.scan()["added"] == 1
    tag = machines.a.ok("POST", "/api/tags_add", {"newtags": ["legacy"]})["tags"][0]["id"]
    link_pending_tag(machines.b, tag)
    return tag


def test_tag_usage_counts_every_machines_pending_models(machines, tag_pending_on_b):
    usage = {"id": tag_pending_on_b, "name": "legacy", "models": 0, "pending": 1}
    assert machines.a.ok("GET", "/api/tags/usage")["tags"] == [usage]
    assert machines.b.ok("GET", "/api/tags/usage")["tags"] == [usage]


def test_dry_run_delete_shows_the_pending_links_it_would_remove_on_other_machines(
        machines, tag_pending_on_b):
    a, b = machines.a, machines.b
    dry = a.ok("POST", "/api/tags/delete", {"id": [tag_pending_on_b], "dry_run": True})
    assert dry["deleted"] == [{"id": tag_pending_on_b, "name": "legacy", "models": 0, "pending": 1}]
    done = a.ok("POST", "/api/tags/delete", {"id": [tag_pending_on_b]})
    assert done["deleted"] == dry["deleted"] and done["dry_run"] is False
    assert b.ok("GET", "/api/migration/pending_models")["models"][0]["tags"] == []


def test_merge_and_rename_count_and_move_every_machines_pending_links(machines, tag_pending_on_b):
    a, b = machines.a, machines.b
    other = a.ok("POST", "/api/tags_add", {"newtags": ["other"]})["tags"][0]["id"]
    merged = a.ok("POST", "/api/tags/merge", {"source": [tag_pending_on_b], "target": other,
                                              "dry_run": True})
    assert [t["pending"] for t in merged["before"]] == [1, 0] and merged["tag"]["pending"] == 1
    renamed = a.ok("POST", "/api/tags/rename", {"id": tag_pending_on_b, "name": "OTHER"})
    assert renamed["merged"] is True and renamed["tag"] == {
        "id": other, "name": "other", "models": 0, "pending": 1}
    assert [t["pending"] for t in renamed["before"]] == [1, 0]
    assert [t["name"] for t in b.ok("GET", "/api/migration/pending_models")["models"][0]["tags"]] \
        == ["other"]


# ------------------------------------------------------------------------------------------------
# One live server per machine name


class ServerProcess:
    """``python -m hikaze_manager`` on a shared library, as machine ``name``."""

    def __init__(self, root, url: str, name: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("HIKAZE_")}
        (root / "models" / "loras").mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hikaze_manager", "--data-dir", str(root / "data"), "--port", "0",
             "--models-dir", str(root / "models"), "--database-url", url, "--machine-name", name],
            cwd=PROJECT_ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.first_line = self.process.stdout.readline()

    @property
    def running(self) -> bool:
        return "running at http://127.0.0.1:" in self.first_line

    def refused(self) -> tuple[int, str]:
        """(exit status, stderr) of a server that did not start."""
        assert not self.running, self.first_line
        code = self.process.wait(timeout=30)
        stderr = self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return code, stderr

    def stop(self, sig=signal.SIGINT) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture
def processes():
    started: list[ServerProcess] = []

    def start(*args) -> ServerProcess:
        started.append(ServerProcess(*args))
        return started[-1]

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


def assert_refused(server: ServerProcess, name: str) -> None:
    code, stderr = server.refused()
    assert code == 1 and "Traceback" not in stderr, stderr
    assert (f"another Hikaze Manager is running as machine {name!r} on this library; "
            "give this one --machine-name") in stderr


def start_when_free(processes, root, url: str, name: str) -> ServerProcess:
    """A server of ``name`` started once the database noticed the last holder is gone."""
    for _ in range(50):
        server = processes(root, url, name)
        if server.running:
            return server
        assert_refused(server, name)
        time.sleep(0.2)
    raise AssertionError(f"machine {name!r} stayed claimed")


def test_a_second_live_server_with_the_same_machine_name_is_refused_until_the_first_stops(
        tmp_path, postgres_url, processes):
    first = processes(tmp_path / "a", postgres_url, "box")
    assert first.running, first.first_line + first.process.stderr.read()
    assert_refused(processes(tmp_path / "b", postgres_url, "box"), "box")
    other = processes(tmp_path / "c", postgres_url, "box-2")  # another name is another machine
    assert other.running, other.process.stderr.read()
    first.stop()
    assert start_when_free(processes, tmp_path / "b", postgres_url, "box").running


def test_a_killed_servers_machine_name_is_free_again(tmp_path, postgres_url, processes):
    first = processes(tmp_path / "a", postgres_url, "box")
    assert first.running, first.process.stderr.read()
    first.stop(signal.SIGKILL)
    assert start_when_free(processes, tmp_path / "b", postgres_url, "box").running


def test_an_app_in_this_process_is_refused_while_a_server_runs_as_its_machine(
        tmp_path, postgres_url, processes):
    server = processes(tmp_path / "a", postgres_url, "box")
    assert server.running, server.process.stderr.read()
    config = {"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": postgres_url,
              "MACHINE_NAME": "box", "MODEL_TYPES": {}}
    with pytest.raises(MachineInUse, match="running as machine 'box'"):
        create_app(config)
    # Reading the library, as ComfyUI's nodes do, needs no claim.
    with PostgresStore(postgres_url, "box").connection(read_only=True) as conn:
        assert conn.execute("SELECT name FROM hikaze.machines").fetchall() == [("box",)]
    server.stop()
    for _ in range(50):
        try:
            app = create_app(config)
            break
        except MachineInUse:
            time.sleep(0.2)
    else:
        raise AssertionError("machine 'box' stayed claimed")
    again = create_app(config)  # the same process is the same machine: a restart shares it
    get_state(again).lists.close()
    get_state(again).store.close()
    get_state(app).lists.close()
    get_state(app).store.close()
    assert start_when_free(processes, tmp_path / "b", postgres_url, "box").running


def test_a_server_takes_its_machine_name_again_when_the_database_ended_its_sessions(
        tmp_path, postgres_server, postgres_url, processes):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "MODEL_TYPES": {},
                      "DATABASE_URL": postgres_url, "MACHINE_NAME": "box"})
    app.config["PROPAGATE_EXCEPTIONS"] = False  # the requests that meet the outage may fail
    client = app.test_client()
    assert client.get("/api/models?type=loras").status_code == 200
    postgres_server.admin_execute(  # as a database restart does: every session ends
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()", (unquote(urlsplit(postgres_url).path[1:]),))
    for _ in range(3):  # the first use of each broken connection finds it broken
        try:
            client.get("/api/models?type=loras")
        except psycopg.OperationalError:  # the request teardown's ROLLBACK on it (outage work)
            pass
    assert client.get("/api/models?type=loras").status_code == 200
    try:
        assert_refused(processes(tmp_path / "b", postgres_url, "box"), "box")
    finally:
        get_state(app).lists.close()
        get_state(app).store.close()


def claim_holder(url: str, name: str) -> int | None:
    """The backend pid holding machine ``name``'s claim on the library at ``url``, if any."""
    key = claim_key(machine_schema(name)) & 0xFFFFFFFFFFFFFFFF
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = %s AND objid::bigint = %s", (key >> 32, key & 0xFFFFFFFF)
        ).fetchone()
    return row[0] if row else None


def test_after_a_database_restart_an_idle_server_holds_its_name_again_at_once(
        tmp_path, own_server, processes):  # noqa: F811 (the fixture imported above)
    url = own_server.new_database()
    first = processes(tmp_path / "a", url, "box")
    assert first.running, first.process.stderr.read()
    own_server.halt("fast")
    own_server.resume()
    # No request reaches the first server: it takes its name back by itself, within a second.
    for _ in range(100):
        if claim_holder(url, "box") is not None:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the first server did not take machine 'box' back")
    assert_refused(processes(tmp_path / "b", url, "box"), "box")
    assert first.process.poll() is None


def test_a_server_whose_name_was_taken_meanwhile_refuses_writes_and_serves_reads_until_it_is_back(
        tmp_path, postgres_url):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "MODEL_TYPES": {},
                      "DATABASE_URL": postgres_url, "MACHINE_NAME": "box"})
    client = app.test_client()
    try:
        assert client.post("/api/tags_add", json={"newtags": ["before"]}).status_code == 200
        with psycopg.connect(postgres_url, autocommit=True) as other:
            # The claim's session ends (as in a restart) and another server gets the name first.
            other.execute("SELECT pg_terminate_backend(%s)", (claim_holder(postgres_url, "box"),))
            other.execute("SELECT pg_advisory_lock(%s)", (claim_key(machine_schema("box")),))
            refused = client.post("/api/tags_add", json={"newtags": ["during"]})
            assert refused.status_code == 503, refused.get_json()
            assert refused.get_json()["error"].startswith(
                "another Hikaze Manager is now running as machine 'box' on this library")
            assert client.post("/api/tags/delete", json={"id": [1]}).status_code == 503
            with pytest.raises(MachineTaken, match="now running as machine 'box'"):
                get_state(app).store.connection()  # what jobs and picture writes open
            tags = client.get("/api/tags")
            assert tags.status_code == 200
            assert [t["name"] for t in tags.get_json()["tags"]] == ["before"]
            assert client.get("/api/models?type=loras").status_code == 200
        # The other server stopped: the name is this one's again, and so are writes.
        for _ in range(100):
            done = client.post("/api/tags_add", json={"newtags": ["after"]})
            if done.status_code != 503:
                break
            time.sleep(0.1)
        assert done.status_code == 200, done.get_json()
        assert claim_holder(postgres_url, "box") is not None
    finally:
        get_state(app).lists.close()
        get_state(app).store.close()


def test_the_claim_outlives_a_server_wide_idle_session_limit(tmp_path, postgres_server,
                                                             postgres_url, processes):
    database = unquote(urlsplit(postgres_url).path[1:])
    if postgres_server.major < 14:
        pytest.skip("idle_session_timeout is PostgreSQL 14+")
    postgres_server.admin_execute(f'ALTER DATABASE "{database}" SET idle_session_timeout = 300')
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "MODEL_TYPES": {},
                      "DATABASE_URL": postgres_url, "MACHINE_NAME": "box"})
    try:
        time.sleep(1)  # idle sessions of this database end after 0.3 s; the claim's must not
        assert_refused(processes(tmp_path / "b", postgres_url, "box"), "box")
    finally:
        get_state(app).lists.close()
        get_state(app).store.close()


def test_comfyuis_server_thread_names_the_taken_machine_without_a_traceback(
        tmp_path, postgres_url, processes, node_module, monkeypatch, caplog):  # noqa: F811
    server = processes(tmp_path / "a", postgres_url, "box")
    assert server.running, server.process.stderr.read()
    for key, value in {"DATABASE_URL": postgres_url, "MACHINE_NAME": "box",
                       "DATA_DIR": str(tmp_path / "comfy-data")}.items():
        monkeypatch.setenv(f"HIKAZE_{key}", value)
    node_module._serve()
    failed = [r for r in caplog.records if "did not start" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is None, failed
    assert "another Hikaze Manager is running as machine 'box'" in failed[0].getMessage()
    assert node_module._store is None and node_module._port == 0


# ------------------------------------------------------------------------------------------------
# A role that may only read, or a standby: read-only with the reason, as SQLite on a read-only disk


def read_only_url(postgres_server, postgres_url: str, kind: str) -> str:
    """A role that may only read the library (``select``), or whose sessions are read-only."""
    role = f"ro_{kind}_{uuid.uuid4().hex[:8]}"
    database = unquote(urlsplit(postgres_url).path[1:])
    if kind == "select":
        postgres_server.admin_execute(f'CREATE ROLE "{role}" LOGIN')
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for (schema,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = "
                                          "'hikaze' OR nspname LIKE 'm\\_%'").fetchall():
                conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
                conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    else:  # as on a hot standby: every transaction is read-only, whatever the role may do
        postgres_server.admin_execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
        postgres_server.admin_execute(f'ALTER ROLE "{role}" SET default_transaction_read_only = on')
    return postgres_server.url_for(database, user=role)


@pytest.mark.parametrize("kind", ["select", "standby"])
def test_a_library_that_may_only_be_read_opens_read_only_for_a_machine_it_has(
        tmp_path, postgres_server, postgres_url, kind):
    def config(url, name, folder):
        return {"TESTING": True, "DATA_DIR": str(tmp_path / folder), "DATABASE_URL": url,
                "MACHINE_NAME": name, "MODEL_TYPES": {}}

    writer = create_app(config(postgres_url, "studio-a", "a"))
    assert writer.test_client().post("/api/tags_add", json={"newtags": ["t1"]}).status_code == 200
    get_state(writer).lists.close()
    get_state(writer).store.close()
    url = read_only_url(postgres_server, postgres_url, kind)

    reader = create_app(config(url, "studio-a", "ro"))
    reason = get_state(reader).read_only_reason
    why = ("permission denied for database" if kind == "select" else "accepts only reads")
    assert why in reason and reason.endswith("it is opened read-only."), reason
    client = reader.test_client()
    assert client.get("/api/panel/config").get_json()["read_only_reason"] == reason
    assert [t["name"] for t in client.get("/api/tags").get_json()["tags"]] == ["t1"]
    assert client.get("/api/tags/usage").status_code == 200
    refused = client.post("/api/tags_add", json={"newtags": ["x"]})
    assert refused.status_code == 503 and refused.get_json() == {"error": reason}
    get_state(reader).lists.close()
    get_state(reader).store.close()

    # A machine without tables cannot be served by a role that may not create them.
    fix = "grant role" if kind == "select" else "point this machine at the primary server"
    with pytest.raises(StartRefused, match="no tables for machine 'new-machine' yet") as raised:
        create_app(config(url, "new-machine", "new"))
    assert why in str(raised.value) and fix in str(raised.value)
    code, stderr = ServerProcess(tmp_path / "new-process", url, "new-machine").refused()
    assert code == 1 and "Traceback" not in stderr and "no tables for machine" in stderr, stderr
