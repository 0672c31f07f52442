"""One library, two machines: two real waitress servers with their own machine name, data folder
and model folders share one real PostgreSQL database (issue 10). What one writes the other sees at
once; each keeps its own paths; concurrent writers on both lose nothing."""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest
from PIL import Image

from hikaze_manager import create_app
from hikaze_manager.server import start_server
from hikaze_manager.services import image_journal
from hikaze_manager.services.images import picture_digest
from hikaze_manager.state import get_state

from metadata_support import write_safetensors
from test_comfy_loaders import FakeComfy, entry, lora_payload, node_module  # noqa: F401 (fixture)


def request(port: int, method: str, path: str, body=None, headers=None):
    """(status, headers, JSON body) of one request over a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers={**sent, **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw
        return response.status, response.msg, data
    finally:
        conn.close()


class Machine:
    """One machine: its app (own data folder, own model folders, own name) served by waitress."""

    def __init__(self, name: str, root: Path, url: str, threads: int = 4):
        self.name = name
        self.models = root / "models"
        for folder in ("checkpoints", "loras"):
            (self.models / folder).mkdir(parents=True, exist_ok=True)
        self.app = create_app({
            "TESTING": True, "DATA_DIR": str(root / "data"), "DATABASE_URL": url,
            "MACHINE_NAME": name,
            "MODEL_TYPES": {t: {"roots": [str(self.models / t)]} for t in ("checkpoints", "loras")},
        })
        self.handle = start_server(self.app, "127.0.0.1", 0, threads=threads)
        self.port = self.handle.port

    def call(self, method: str, path: str, body=None, headers=None):
        return request(self.port, method, path, body, headers)

    def ok(self, method: str, path: str, body=None, headers=None, status=200):
        got, _, data = self.call(method, path, body, headers)
        assert got == status, (self.name, method, path, got, data)
        return data

    def scan(self) -> dict:
        return self.ok("POST", "/api/scan")

    def import_pending(self) -> dict:
        ids = [m["id"] for m in self.ok("GET", "/api/migration/pending_models")["models"]]
        return self.ok("POST", "/api/migration/import_models", {"id": ids}, status=207)

    def stop(self) -> None:
        assert self.handle.thread.is_alive(), f"{self.name}: the server loop ended on its own"
        self.handle.stop()
        assert not self.handle.thread.is_alive(), f"{self.name}: the server did not stop"
        state = get_state(self.app)
        for job in state.jobs.list():
            state.jobs.cancel(job.id)
            state.jobs.wait(job.id, timeout=30)


@pytest.fixture
def machines(tmp_path, postgres_url):
    """Machines A and B on one database, each with its own folders."""
    started = []
    try:
        for name in ("studio-a", "gpu-box-b"):
            started.append(Machine(name, tmp_path / name, postgres_url, threads=8))
        yield types.SimpleNamespace(a=started[0], b=started[1], url=postgres_url)
    finally:
        for machine in started:
            machine.stop()


def promote_on_a(machines, relative="loras/ink.safetensors", seed="ink") -> tuple[str, Path]:
    """A real model file on A, scanned and imported there: (sha256, A's path)."""
    path = machines.a.models / relative
    sha, _ = write_safetensors(path, {"seed": seed})
    assert machines.a.scan()["added"] == 1
    assert len(machines.a.import_pending()["success"]) == 1
    return sha, path


# ------------------------------------------------------------------------------------------------
# What one machine writes, the other sees at once


def test_a_tag_added_on_a_is_on_b_at_once_and_b_caches_do_not_hide_it(machines):
    a, b = machines.a, machines.b
    sha, _ = promote_on_a(machines)
    status, headers, listed = b.call("GET", "/api/models?type=loras")
    assert status == 200 and [m["sha256"] for m in listed["models"]] == [sha]
    assert listed["models"][0]["tags"] == []
    list_etag = headers["ETag"]
    _, tag_headers, tags_before = b.call("GET", "/api/tags")
    assert tags_before == {"tags": []}
    assert b.call("GET", "/api/models?type=loras", headers={"If-None-Match": list_etag})[0] == 304
    assert b.call("GET", "/api/tags", headers={"If-None-Match": tag_headers["ETag"]})[0] == 304

    a.ok("POST", "/api/models/tags", {"sha256": [sha], "add": ["shared ink"]})

    status, headers, listed = b.call("GET", "/api/models?type=loras",
                                     headers={"If-None-Match": list_etag})
    assert status == 200, "B answered 304 with a body from before A's write"
    assert headers["ETag"] != list_etag
    assert [t["name"] for t in listed["models"][0]["tags"]] == ["shared ink"]
    status, headers, tags_after = b.call("GET", "/api/tags",
                                         headers={"If-None-Match": tag_headers["ETag"]})
    assert status == 200 and headers["ETag"] != tag_headers["ETag"]
    assert [t["name"] for t in tags_after["tags"]] == ["shared ink"]
    assert [t["name"] for t in b.ok("GET", f"/api/models/{sha}")["tags"]] == ["shared ink"]


def test_a_model_promoted_on_a_is_relinked_on_b_by_hash_and_each_keeps_its_own_path(machines):
    a, b = machines.a, machines.b
    sha, a_path = promote_on_a(machines)
    a.ok("PATCH", f"/api/models/{sha}", {"meta_json": {"description": "typed once, on A"}})
    # B has no copy yet: the model is in B's library, without a path here.
    assert b.ok("GET", f"/api/models/{sha}")["path"] == ""
    # B keeps the same bytes elsewhere, under another name.
    b_path = b.models / "loras" / "styles" / "ink-copy.safetensors"
    b_path.parent.mkdir(parents=True)
    shutil.copyfile(a_path, b_path)
    report = b.scan()
    assert report["relinked"] == 1 and report["added"] == 0, report
    assert b.ok("GET", "/api/migration/pending_models")["models"] == []
    on_b = b.ok("GET", f"/api/models/{sha}")
    on_a = a.ok("GET", f"/api/models/{sha}")
    assert on_b["path"] == str(b_path) and on_a["path"] == str(a_path)
    assert on_b["meta_json"]["description"] == "typed once, on A"
    # A scan on B never changes A's path, even when B's copy moves; nor A's scan B's.
    moved = b.models / "loras" / "ink-moved.safetensors"
    os.rename(b_path, moved)
    assert b.scan()["relinked"] == 1
    assert b.ok("GET", f"/api/models/{sha}")["path"] == str(moved)
    assert a.ok("GET", f"/api/models/{sha}")["path"] == str(a_path)
    assert a.scan()["relinked"] == 0
    assert b.ok("GET", f"/api/models/{sha}")["path"] == str(moved)
    listed_b = b.ok("GET", "/api/models?type=loras")["models"]
    listed_a = a.ok("GET", "/api/models?type=loras")["models"]
    assert [m["path"] for m in listed_b] == [str(moved)]
    assert [m["path"] for m in listed_a] == [str(a_path)]


def test_missing_file_is_per_machine(machines):
    a, b = machines.a, machines.b
    sha, a_path = promote_on_a(machines)
    only_a, _ = promote_on_a(machines, "checkpoints/only-a.safetensors", "only a")
    b_path = b.models / "loras" / "ink.safetensors"
    shutil.copyfile(a_path, b_path)
    assert b.scan()["relinked"] == 1
    assert a.ok("GET", "/api/library/missing")["models"] == []
    # B never had only-a: missing here (no path on this machine), not on A.
    missing_b = b.ok("GET", "/api/library/missing")["models"]
    assert [(m["sha256"], m["path"]) for m in missing_b] == [(only_a, "")]
    status, _, body = b.call("POST", "/api/files/trash", {"sha256": only_a, "confirm": "only-a.safetensors"})
    assert (status, body) == (404, {"error": "The model has no file on this machine"})
    reread = b.ok("POST", "/api/models/reread_metadata", {"sha256": [only_a]})
    assert reread["failed"] == [{"sha256": only_a, "error": "Model file not found"}]
    # A loses its ink file: missing on A only; B's copy is fine.
    os.remove(a_path)
    assert [m["sha256"] for m in a.ok("GET", "/api/library/missing")["models"]] == [sha]
    assert [m["sha256"] for m in b.ok("GET", "/api/library/missing")["models"]] == [only_a]


# ------------------------------------------------------------------------------------------------
# Concurrent writers on both machines


def _read_modify_write(machine, sha, change, statuses, conflicts, attempts=300):
    """GET the model, PATCH ``change(record)`` with its ETag; again on 412."""
    for _ in range(attempts):
        status, headers, record = machine.call("GET", f"/api/models/{sha}")
        statuses.append(status)
        assert status == 200, record
        status, _, body = machine.call("PATCH", f"/api/models/{sha}", change(record),
                                       {"If-Match": headers["ETag"]})
        statuses.append(status)
        if status == 200:
            return
        assert status == 412, body
        conflicts.append(machine.name)
    raise AssertionError(f"no write got in on {machine.name} in {attempts} attempts")


def test_sixteen_writers_on_two_machines_lose_nothing(machines):
    a, b = machines.a, machines.b
    x, _ = promote_on_a(machines, "loras/x.safetensors", "x")
    y, _ = promote_on_a(machines, "checkpoints/y.safetensors", "y")
    rounds = 3
    seeds = [f"seed {i}" for i in range(3, 16, 4)]
    a.ok("POST", "/api/models/tags", {"sha256": [x], "add": seeds})
    patch_names = [f"patch {i}.{k}" for i in range(0, 16, 4) for k in range(rounds)]
    tag_ids = {t["name"]: t["id"] for t in b.ok("POST", "/api/tags_add", {"newtags": patch_names})["tags"]}
    statuses: list[int] = []
    conflicts: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def writer(i: int) -> None:
        machine = a if i % 2 == 0 else b
        try:
            start.wait()
            for k in range(rounds):
                kind = i % 4
                if kind == 0:  # the whole tag list, read-modify-write
                    _read_modify_write(machine, x, lambda r: {"tags": [t["id"] for t in r["tags"]]
                                                              + [tag_ids[f"patch {i}.{k}"]]},
                                       statuses, conflicts)
                elif kind == 2:  # the description, one line more each time
                    _read_modify_write(machine, x, lambda r: {"meta_json": {"description": (
                        r["meta_json"].get("description") or "") + f"line {i}.{k}\n"}},
                                       statuses, conflicts)
                else:  # the batch route: add (and, kind 3, remove a seeded tag)
                    body = {"sha256": [x, y] if kind == 1 else [x], "add": [f"batch {i}.{k}"]}
                    if kind == 3 and k == 0:
                        body["remove"] = [f"seed {i}"]
                    status, _, report = machine.call("POST", "/api/models/tags", body)
                    statuses.append(status)
                    assert status == 200, report
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    assert statuses and all(s < 500 for s in statuses), sorted(set(statuses))
    expected_x = set(patch_names) | {f"batch {i}.{k}" for i in range(16) if i % 4 in (1, 3)
                                     for k in range(rounds)}
    expected_y = {f"batch {i}.{k}" for i in range(1, 16, 4) for k in range(rounds)}
    for machine in (a, b):
        record = machine.ok("GET", f"/api/models/{x}")
        assert {t["name"] for t in record["tags"]} == expected_x, machine.name
        lines = record["meta_json"]["description"].splitlines()
        assert sorted(lines) == sorted(f"line {i}.{k}" for i in range(2, 16, 4) for k in range(rounds))
        assert {t["name"] for t in machine.ok("GET", f"/api/models/{y}")["tags"]} == expected_y
    assert conflicts, "16 writers on one model should have met a stale If-Match at least once"


def test_the_same_etag_wins_once_across_machines(machines):
    a, b = machines.a, machines.b
    sha, a_path = promote_on_a(machines)
    _, a_headers, _ = a.call("GET", f"/api/models/{sha}")
    _, b_headers, _ = b.call("GET", f"/api/models/{sha}")
    # B's scan gives B a path: B's record (and ETag) changes, A's open edit is not stale.
    shutil.copyfile(a_path, b.models / "loras" / "ink.safetensors")
    assert b.scan()["relinked"] == 1
    assert a.call("GET", f"/api/models/{sha}")[1]["ETag"] == a_headers["ETag"]
    assert b.call("PATCH", f"/api/models/{sha}", {"name": "x"},
                  {"If-Match": b_headers["ETag"]})[0] == 412
    _, b_headers, _ = b.call("GET", f"/api/models/{sha}")
    assert a.call("PATCH", f"/api/models/{sha}", {"name": "from A"},
                  {"If-Match": a_headers["ETag"]})[0] == 200
    status, _, body = b.call("PATCH", f"/api/models/{sha}", {"name": "from B"},
                             {"If-Match": b_headers["ETag"]})
    assert status == 412, body
    assert b.ok("GET", f"/api/models/{sha}")["name"] == "from A"
    # Both at the same moment, each with its own current ETag: exactly one of them gets in.
    etags = {m.name: m.call("GET", f"/api/models/{sha}")[1]["ETag"] for m in (a, b)}
    results: dict[str, int] = {}
    start = threading.Barrier(2)

    def patch(machine):
        start.wait()
        results[machine.name] = machine.call("PATCH", f"/api/models/{sha}", {"name": machine.name},
                                             {"If-Match": etags[machine.name]})[0]

    threads = [threading.Thread(target=patch, args=(m,)) for m in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results.values()) == [200, 412], results
    winner = next(name for name, status in results.items() if status == 200)
    assert a.ok("GET", f"/api/models/{sha}")["name"] == winner


# ------------------------------------------------------------------------------------------------
# Inside ComfyUI: a payload's SHA-256 resolves to this machine's copy


def test_a_loader_payload_resolves_its_sha256_to_this_machines_path(machines, node_module,
                                                                     monkeypatch):
    a, b = machines.a, machines.b
    sha, a_path = promote_on_a(machines)
    b_path = b.models / "loras" / "mine" / "ink.safetensors"
    b_path.parent.mkdir()
    shutil.copyfile(a_path, b_path)
    assert b.scan()["relinked"] == 1
    # A workflow saved on a third machine: its path exists nowhere here, its hash is the model's.
    payload = lora_payload(entry("/elsewhere/loras/ink.safetensors", sha, name="Ink"))
    for machine, expected in ((b, b_path), (a, a_path)):
        fake = FakeComfy({"loras": [machine.models / "loras"]})
        fake.install(monkeypatch)
        # ComfyUI without the server started: the node opens the library the environment names.
        monkeypatch.setattr(node_module, "_store", None)
        monkeypatch.setenv("HIKAZE_DATABASE_URL", machines.url)
        monkeypatch.setenv("HIKAZE_MACHINE_NAME", machine.name)
        model, _clip, _words = node_module.HikazeLoraPowerLoader().load([], [], payload)
        assert model == [str(expected)] and fake.reads == [str(expected)], machine.name
        # With the server running in ComfyUI's process, the node uses that server's store, whatever
        # the environment says.
        other = a if machine is b else b
        monkeypatch.setenv("HIKAZE_MACHINE_NAME", other.name)
        monkeypatch.setattr(node_module, "_store", get_state(machine.app).store)
        model, _clip, _words = node_module.HikazeLoraPowerLoader().load([], [], payload)
        assert model == [str(expected)], machine.name


def test_a_machine_the_shared_library_does_not_know_gets_a_clear_error(machines, node_module,
                                                                       monkeypatch):
    sha, _ = promote_on_a(machines)
    FakeComfy({"loras": []}).install(monkeypatch)
    monkeypatch.setattr(node_module, "_store", None)
    monkeypatch.setenv("HIKAZE_DATABASE_URL", machines.url)
    monkeypatch.setenv("HIKAZE_MACHINE_NAME", "never-started-here")
    with pytest.raises(FileNotFoundError) as missing:
        node_module.HikazeLoraPowerLoader().load([], [], lora_payload(
            entry("/elsewhere/ink.safetensors", sha, name="Ink")))
    message = str(missing.value)
    assert sha in message and "'never-started-here'" in message
    assert "has no paths of this machine yet (Hikaze Manager has not run here" in message


@pytest.mark.parametrize("written", ["  gpu-box-b\t", '"gpu-box-b"'])
def test_the_node_and_the_server_read_one_machine_name_from_the_environment(
        tmp_path, machines, node_module, monkeypatch, written):
    sha, a_path = promote_on_a(machines)
    b = machines.b
    b_path = b.models / "loras" / "ink.safetensors"
    shutil.copyfile(a_path, b_path)
    assert b.scan()["relinked"] == 1
    monkeypatch.setenv("HIKAZE_DATABASE_URL", machines.url)
    monkeypatch.setenv("HIKAZE_MACHINE_NAME", written)
    # The server started from this environment (not TESTING: it reads HIKAZE_*) is this machine.
    app = create_app({"DATA_DIR": str(tmp_path / "env-data"),
                      "MODEL_TYPES": {"loras": {"roots": [str(b.models / "loras")]}}})
    try:
        server_name = get_state(app).store.machine
    finally:
        get_state(app).lists.close()
        get_state(app).store.close()
    assert server_name == written.strip()
    FakeComfy({"loras": [b.models / "loras"]}).install(monkeypatch)
    monkeypatch.setattr(node_module, "_store", None)
    assert node_module._library_store().machine == server_name
    payload = lora_payload(entry("/elsewhere/loras/ink.safetensors", sha, name="Ink"))
    if server_name == b.name:  # padded: both strip it to gpu-box-b and find B's copy
        model, _clip, _words = node_module.HikazeLoraPowerLoader().load([], [], payload)
        assert model == [str(b_path)]
    else:  # quoted: the name as written on both sides, the machine the server just joined
        with pytest.raises(FileNotFoundError) as missing:
            node_module.HikazeLoraPowerLoader().load([], [], payload)
        assert "knows no file" in str(missing.value)
        assert "has no paths of this machine yet" not in str(missing.value)


def test_a_numeric_machine_name_in_the_environment_names_the_machine(tmp_path, postgres_url,
                                                                      monkeypatch):
    monkeypatch.setenv("HIKAZE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("HIKAZE_MACHINE_NAME", "1234")
    app = create_app({"DATA_DIR": str(tmp_path / "data"), "MODEL_TYPES": {}})
    try:
        assert get_state(app).store.machine == "1234"
    finally:
        get_state(app).lists.close()
        get_state(app).store.close()


@pytest.mark.parametrize("written", ["   ", "tab\tinside", "x" * 101])
def test_a_machine_name_the_server_refuses_the_node_refuses_too(tmp_path, machines, node_module,
                                                                monkeypatch, written):
    monkeypatch.setenv("HIKAZE_DATABASE_URL", machines.url)
    monkeypatch.setenv("HIKAZE_MACHINE_NAME", written)
    with pytest.raises(ValueError, match="MACHINE_NAME must be 1 to 100 printable characters"):
        create_app({"DATA_DIR": str(tmp_path / "data"), "MODEL_TYPES": {}})
    FakeComfy({"loras": []}).install(monkeypatch)
    monkeypatch.setattr(node_module, "_store", None)
    with pytest.raises(FileNotFoundError) as missing:
        node_module.HikazeLoraPowerLoader().load([], [], lora_payload(
            entry("/elsewhere/ink.safetensors", "c" * 64, name="Ink")))
    assert "HIKAZE_MACHINE_NAME must be 1 to 100 printable characters" in str(missing.value)
    import psycopg

    with psycopg.connect(machines.url) as conn:  # no machine joined under the refused name
        assert {r[0] for r in conn.execute("SELECT name FROM hikaze.machines")} == {
            "studio-a", "gpu-box-b"}


# ------------------------------------------------------------------------------------------------
# Security: the token beyond loopback, and the database password never shown


PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PARAMS = {"sha256": "a" * 64, "ident": "a" * 64, "type": "loras", "id": "1", "name": "x",
                 "pending_id": "1", "job_id": "x"}


def test_a_shared_library_server_bound_beyond_loopback_requires_the_token(tmp_path, postgres_url):
    from hikaze_manager.__main__ import require_token_beyond_loopback

    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "HOST": "0.0.0.0",
                      "DATABASE_URL": postgres_url, "MACHINE_NAME": "lan-box"})
    token = require_token_beyond_loopback(app)
    assert token
    client = app.test_client()
    remote = {"REMOTE_ADDR": "192.168.1.20"}
    refused = client.get("/api/tags", environ_base=remote)
    assert refused.status_code == 401 and "X-Hikaze-Token" in refused.get_json()["error"]
    assert client.get("/api/tags", environ_base=remote, headers={"X-Hikaze-Token": "nope"}).status_code == 401
    assert client.get("/api/tags", environ_base=remote,
                      headers={"X-Hikaze-Token": token}).get_json() == {"tags": []}
    assert client.get("/api/tags").status_code == 200  # this machine itself needs none
    loopback = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data2"),
                           "DATABASE_URL": postgres_url, "MACHINE_NAME": "local-box"})
    assert require_token_beyond_loopback(loopback) is None


def _run_module(tmp_path: Path, args: list[str], env: dict | None = None, serve=None):
    """``python -m hikaze_manager ARGS``: (exit code, stdout + stderr); ``serve(port)`` runs while
    it serves, then Ctrl-C stops it."""
    import signal
    import subprocess
    import sys

    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    base = {k: v for k, v in os.environ.items() if not k.startswith("HIKAZE_")}
    with open(out_path, "w") as out, open(err_path, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "hikaze_manager", "--data-dir", str(tmp_path / "data"),
             "--port", "0", "--models-dir", str(tmp_path / "models"), *args],
            cwd=PROJECT_ROOT, env={**base, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=out, stderr=err, text=True)
        try:
            if serve is not None:
                port = None
                for _ in range(600):
                    text = out_path.read_text()
                    if "running at http://" in text:
                        port = int(text.split("running at http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
                        break
                    if process.poll() is not None:
                        break
                    threading.Event().wait(0.1)
                assert port, out_path.read_text() + err_path.read_text()
                serve(port)
                process.send_signal(signal.SIGINT)
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return code, out_path.read_text() + err_path.read_text()


def _get_every_route(port: int, secret: str) -> list[str]:
    """GET every GET route of the OpenAPI document (required parameters filled in); the paths."""
    status, _, document = request(port, "GET", "/api/openapi.json")
    assert status == 200
    seen = []
    for path, operations in document["paths"].items():
        if "get" not in operations or path.startswith("/static"):
            continue
        url = path
        query = []
        for parameter in operations["get"].get("parameters", []):
            name = parameter.get("name")
            if parameter.get("in") == "path":
                url = url.replace("{" + name + "}", SAMPLE_PARAMS[name])
            elif parameter.get("in") == "query" and parameter.get("required"):
                query.append(f"{name}={SAMPLE_PARAMS[name]}")
        url += ("?" + "&".join(query)) if query else ""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("GET", url)
            response = conn.getresponse()
            raw = response.read()
            headers = str(response.msg)
        finally:
            conn.close()
        assert response.status < 500, (url, response.status, raw[:300])
        assert secret.encode() not in raw and secret not in headers, url
        seen.append(url)
    return seen


def test_the_database_password_is_never_logged_nor_shown(tmp_path, postgres_server, postgres_url):
    import uuid

    secret = f"SECRET-{uuid.uuid4().hex}"
    database = postgres_url.rsplit("/", 1)[1]
    user = f"hikaze_{uuid.uuid4().hex[:8]}"
    url = postgres_server.new_role(user, secret, database=database)
    assert secret in url
    (tmp_path / "models" / "loras").mkdir(parents=True)
    seen: list[str] = []
    code, output = _run_module(tmp_path, ["--database-url", url, "--machine-name", "box",
                                          "--host", "0.0.0.0"],
                               serve=lambda port: seen.extend(_get_every_route(port, secret)))
    assert code == 0, output
    assert secret not in output
    assert f"postgresql://{user}:***@127.0.0.1:{postgres_server.port}/{database}" in output
    assert "X-Hikaze-Token" in output  # bound beyond loopback: the token is required and printed
    assert {"/api/tags", "/api/panel/config", "/api/library/missing", "/api/models?type=loras",
            f"/api/models/{'a' * 64}", "/api/jobs"} <= set(seen)
    # The same URL from the environment.
    code, output = _run_module(tmp_path, [], env={"HIKAZE_DATABASE_URL": url,
                                                  "HIKAZE_MACHINE_NAME": "box"},
                               serve=lambda port: _get_every_route(port, secret))
    assert code == 0 and secret not in output, output


@pytest.mark.parametrize("spoil", ["wrong password", "unparsable"])
def test_a_bad_database_url_fails_cleanly_without_showing_the_password(tmp_path, postgres_server,
                                                                       postgres_url, spoil):
    import uuid

    secret = f"SECRET-{uuid.uuid4().hex}"
    database = postgres_url.rsplit("/", 1)[1]
    user = f"hikaze_{uuid.uuid4().hex[:8]}"
    postgres_server.new_role(user, f"right-{secret}", database=database)
    if spoil == "wrong password":
        url = postgres_server.url_for(database, user=user, password=secret)
        expected = "password authentication failed"
    else:  # libpq quotes a URI it cannot parse in its error message
        url = f"postgresql://{user}:{secret}%zz@127.0.0.1:{postgres_server.port}/{database}"
        expected = "invalid percent-encoded token"
    code, output = _run_module(tmp_path, ["--database-url", url])
    assert code == 1, output
    assert "[Hikaze] could not open the library" in output and expected in output, output
    assert "Traceback" not in output
    assert secret not in output


# ------------------------------------------------------------------------------------------------
# The per-machine models view: paths per machine, the record shared


def _path_rows(url: str, sha: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return dict(conn.execute("SELECT machine, path FROM hikaze.model_paths WHERE sha256 = %s",
                                 (sha,)).fetchall())


def test_a_copy_pending_on_b_when_a_promoted_it_becomes_bs_path_on_import(machines):
    a, b = machines.a, machines.b
    b_path = b.models / "loras" / "ink.safetensors"
    sha, _ = write_safetensors(b_path, {"seed": "ink"})
    assert b.scan()["added"] == 1  # queued on B before A promotes the same content
    [pending] = b.ok("GET", "/api/migration/pending_models")["models"]
    promoted, a_path = promote_on_a(machines)
    assert promoted == sha
    a.ok("PATCH", f"/api/models/{sha}", {"meta_json": {"description": "from A"}})
    report = b.import_pending()
    assert report["success"] == [pending["id"]] and report["conflict"] == [], report
    assert b.ok("GET", "/api/migration/pending_models")["models"] == []
    assert b.ok("GET", f"/api/models/{sha}")["path"] == str(b_path)
    assert a.ok("GET", f"/api/models/{sha}")["meta_json"]["description"] == "from A"
    assert _path_rows(machines.url, sha) == {a.name: str(a_path), b.name: str(b_path)}


def test_the_models_view_writes_this_machines_path_only(machines):
    a, b = machines.a, machines.b
    sha, a_path = promote_on_a(machines)
    b_path = b.models / "loras" / "ink.safetensors"
    shutil.copyfile(a_path, b_path)
    assert b.scan()["relinked"] == 1
    # The API: A moves its file and says so; B's path stays.
    renamed = a.models / "loras" / "ink-renamed.safetensors"
    os.rename(a_path, renamed)
    assert a.ok("PATCH", f"/api/models/{sha}", {"path": str(renamed), "name": "Ink"})["path"] == str(renamed)
    assert _path_rows(machines.url, sha) == {a.name: str(renamed), b.name: str(b_path)}
    assert b.ok("GET", f"/api/models/{sha}")["name"] == "Ink"
    # The SQL the services write, on each machine's connection.
    with get_state(b.app).store.connection() as conn:
        conn.execute("UPDATE models SET name = 'Ink B' WHERE sha256 = ?", (sha,))
        assert _path_rows(machines.url, sha) == {a.name: str(renamed), b.name: str(b_path)}
        conn.execute("UPDATE models SET path = ? WHERE sha256 = ?", ("/b/elsewhere.safetensors", sha))
        assert _path_rows(machines.url, sha) == {a.name: str(renamed), b.name: "/b/elsewhere.safetensors"}
        conn.execute("UPDATE models SET path = '' WHERE sha256 = ?", (sha,))  # B has no copy now
        assert _path_rows(machines.url, sha) == {a.name: str(renamed)}
        assert conn.execute("SELECT path, name FROM models WHERE sha256 = ?", (sha,)).fetchone() == ("", "Ink B")
    assert a.ok("GET", f"/api/models/{sha}")["path"] == str(renamed)
    with get_state(a.app).store.connection() as conn, pytest.raises(Exception, match="NOT NULL"):
        conn.execute("UPDATE models SET path = NULL WHERE sha256 = ?", (sha,))
    assert _path_rows(machines.url, sha) == {a.name: str(renamed)}


def test_removing_a_model_removes_the_shared_record_for_every_machine(machines):
    """"Remove from library" is the shared record (tags, texts, every machine's path); a file gone
    on one machine is "missing" there only and removes nothing."""
    a, b = machines.a, machines.b
    sha, a_path = promote_on_a(machines)
    b_path = b.models / "loras" / "ink.safetensors"
    shutil.copyfile(a_path, b_path)
    assert b.scan()["relinked"] == 1
    b.ok("POST", "/api/models/tags", {"sha256": [sha], "add": ["kept?"]})
    os.remove(a_path)  # missing on A: nothing is removed, B still has it
    assert a.scan()["relinked"] == 0
    assert [m["sha256"] for m in a.ok("GET", "/api/library/missing")["models"]] == [sha]
    assert b.ok("GET", f"/api/models/{sha}")["path"] == str(b_path)
    report = a.ok("POST", "/api/models/remove", {"sha256": [sha]})
    assert report["removed"] == 1
    for machine in (a, b):
        assert machine.call("GET", f"/api/models/{sha}")[0] == 404
        assert machine.ok("GET", "/api/models?type=loras")["models"] == []
        assert machine.ok("GET", "/api/library/missing")["models"] == []
    assert _path_rows(machines.url, sha) == {}
    assert [t["models"] for t in b.ok("GET", "/api/tags/usage")["tags"]] == [0]
    # B's file is still on disk; B's next scan offers it as a new model again.
    assert b_path.is_file() and b.scan()["added"] == 1


def test_merging_tags_on_a_keeps_the_tags_of_bs_pending_models(machines):
    a, b = machines.a, machines.b
    write_safetensors(b.models / "loras" / "waiting.safetensors", {"seed": "waiting"})
    assert b.scan()["added"] == 1
    [pending] = b.ok("GET", "/api/migration/pending_models")["models"]
    tags = {t["name"]: t["id"] for t in a.ok("POST", "/api/tags_add", {"newtags": ["ink", "Inks"]})["tags"]}
    # A pending tag, as a legacy import gives B's pending rows.
    with get_state(b.app).store.connection() as conn:
        conn.execute("INSERT INTO pending_model_tags(model_id, tag_id) VALUES (?, ?)",
                     (pending["id"], tags["Inks"]))
    merged = a.ok("POST", "/api/tags/merge", {"source": [tags["Inks"]], "target": tags["ink"]})
    assert merged["tag"]["name"] == "ink"
    record = b.ok("GET", f"/api/migration/pending_model?id={pending['id']}")
    assert [t["name"] for t in record["tags"]] == ["ink"]
    assert [t["name"] for t in b.ok("GET", "/api/tags")["tags"]] == ["ink"]
    # A rename onto an existing name merges too.
    other = a.ok("POST", "/api/tags_add", {"newtags": ["ink2"]})["tags"][0]["id"]
    with get_state(b.app).store.connection() as conn:
        conn.execute("INSERT INTO pending_model_tags(model_id, tag_id) VALUES (?, ?)", (pending["id"], other))
    a.ok("POST", "/api/tags/rename", {"id": tags["ink"], "name": "INK2"})
    record = b.ok("GET", f"/api/migration/pending_model?id={pending['id']}")
    assert [t["name"] for t in record["tags"]] == ["ink2"]


@pytest.mark.parametrize("spoil", ["wrong password", "unparsable"])
def test_the_loader_node_never_shows_the_database_password(postgres_server, postgres_url, node_module,
                                                           monkeypatch, caplog, spoil):
    import uuid

    secret = f"SECRET-{uuid.uuid4().hex}"
    database = postgres_url.rsplit("/", 1)[1]
    user = f"hikaze_{uuid.uuid4().hex[:8]}"
    postgres_server.new_role(user, f"right-{secret}", database=database)
    url = (postgres_server.url_for(database, user=user, password=secret) if spoil == "wrong password"
           else f"postgresql://{user}:{secret}%zz@127.0.0.1:{postgres_server.port}/{database}")
    FakeComfy({"loras": []}).install(monkeypatch)
    monkeypatch.setattr(node_module, "_store", None)
    monkeypatch.setenv("HIKAZE_DATABASE_URL", url)
    monkeypatch.setenv("HIKAZE_MACHINE_NAME", "box")
    with pytest.raises(FileNotFoundError) as missing:
        node_module.HikazeLoraPowerLoader().load([], [], lora_payload(
            entry("/elsewhere/ink.safetensors", "c" * 64, name="Ink")))
    assert "could not be read" in str(missing.value) and f"{user}:***@" in str(missing.value)
    assert secret not in str(missing.value)
    assert caplog.records and not any(secret in r.getMessage() for r in caplog.records)


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_machine_starting_keeps_the_sets_another_machine_has_announced(machines, tmp_path):
    """t4 (hostile test): C's start-up orphan sweep ran while A imported models: a set A has
    written for a model it has not committed yet is announced in A's journal only, and C deleted
    it. A set of no model and no announcement anywhere still goes."""
    in_flight, orphan = "ab" * 32, "cd" * 32
    state = get_state(machines.a.app)
    tiers = state.images.process(in_flight, _png("teal"))
    with state.store.connection() as conn:  # A, mid-promotion: announced and written, no commit
        image_journal.announce(conn, in_flight, picture_digest(tiers))
    state.images.add_processed(in_flight, tiers)
    state.images.add_image(orphan, _png("olive"))  # a removed model's set, left by a kill

    Machine("render-c", tmp_path / "render-c", machines.url).stop()
    assert state.images.count(in_flight) == 1, "C's start removed a set A is about to commit"
    assert state.images.count(orphan) == 0


def test_a_second_server_with_the_same_machine_name_leaves_its_writes_in_progress(
        machines, tmp_path):
    """t4b (hostile test): B, a separate process started with A's machine name while A imports,
    undid A's announcements as if they were a crash's leftovers: A's model lost its picture.
    B is now refused by A's claim on the name before its recovery reads the journal."""
    sha = "ef" * 32
    state = get_state(machines.a.app)
    tiers = state.images.process(sha, _png("navy"))
    with state.store.connection() as conn:  # A's import: announced, written, commit to come
        image_journal.announce(conn, sha, picture_digest(tiers))
        state.images.add_processed(sha, tiers)
        config = {"DATA_DIR": str(tmp_path / "b-data"), "DATABASE_URL": machines.url,
                  "MACHINE_NAME": machines.a.name, "MODEL_TYPES": {}}
        started = subprocess.run(
            [sys.executable, "-c", "import json, sys; from hikaze_manager import create_app; "
             "create_app(json.loads(sys.argv[1]))", json.dumps(config)],
            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
        # A holds its machine's claim: B is refused before it reads or recovers anything
        assert started.returncode != 0
        assert "another Hikaze Manager is running as machine" in started.stderr, started.stderr
        assert state.images.count(sha) == 1, "B removed the set A is about to commit"
        assert conn.execute("SELECT COUNT(*) FROM image_writes").fetchone()[0] == 1
