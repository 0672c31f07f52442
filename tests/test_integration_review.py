"""Hostile review of the merged features together: list cache freshness after every new write
route, ETag changes after batch edits, per-thread connections after failed requests."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from hikaze_manager.state import get_state

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

A, B = "a" * 64, "b" * 64
HEADERS = {"Content-Type": "application/json"}


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def _lists(client):
    return {
        url: client.get(url).get_json()
        for url in ("/api/models?type=checkpoints", "/api/models?type=loras", "/api/tags",
                    "/api/migration/pending_models", "/api/models/get_types")
    }


def _assert_fresh(app, client, what):
    cached = _lists(client)
    get_state(app).lists.clear()
    assert cached == _lists(client), f"stale list after {what}"


def test_every_management_write_is_seen_by_the_next_list(app, client, add_model, make_model_file, db_conn):
    pa, sa = make_model_file("checkpoints/a.safetensors", b"A" * 100)
    pb, sb = make_model_file("checkpoints/b.safetensors", b"B" * 100)
    add_model(sa, str(pa), name="a")
    add_model(sb, str(pb), name="b")
    r = client.post("/api/images/upload", data={"sha256": sa, "image": (io.BytesIO(_png()), "p.png")},
                    content_type="multipart/form-data")
    assert r.status_code in (200, 201), r.get_json()
    _assert_fresh(app, client, "upload")
    steps = [
        ("/api/models/tags", {"sha256": [sa, sb], "add": ["x", "y"]}),
        ("/api/models/set_type", {"sha256": [sb], "type": "loras"}),
    ]
    for url, body in steps:
        _lists(client)
        r = client.post(url, json=body)
        assert r.status_code == 200, (url, r.get_json())
        _assert_fresh(app, client, url)
    tags = {t["name"]: t["id"] for t in client.get("/api/tags").get_json()["tags"]} \
        if isinstance(client.get("/api/tags").get_json(), dict) else \
        {t["name"]: t["id"] for t in client.get("/api/tags").get_json()}
    for url, body in [
        ("/api/tags/rename", {"id": tags["x"], "name": "x2"}),
        ("/api/tags/merge", {"source": [tags["y"]], "target": "x2"}),
        ("/api/tags/delete", {"id": [tags["x"]]}),
        ("/api/models/remove", {"sha256": [sa]}),
    ]:
        _lists(client)
        r = client.post(url, json=body)
        assert r.status_code == 200, (url, r.get_json())
        _assert_fresh(app, client, url)
    assert get_state(app).images.count(sa) == 0


@pytest.mark.sqlite_only  # picture files left in images/
def test_sets_left_by_a_kill_after_removal_commit_are_gone_at_the_next_start(app_config, tmp_path):
    """POST /api/models/remove commits, then deletes the pictures: a kill in between leaves the
    sets of a model that no longer exists. The next start removes them, so a later re-import of
    the same file does not show the removed model's pictures."""
    from hikaze_manager import create_app

    first = create_app(app_config)
    client = first.test_client()
    with get_state(first).store.connection() as conn:
        for sha in (A, B):
            conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
                         "VALUES (?, ?, ?, 'checkpoints', 1, 1)", (sha, f"/m/{sha[:4]}", sha[:4]))
    for sha in (A, B):
        r = client.post("/api/images/upload", data={"sha256": sha, "image": (io.BytesIO(_png()), "p.png")},
                        content_type="multipart/form-data")
        assert r.status_code == 200, r.get_json()
    images_dir = get_state(first).images.images_dir
    with get_state(first).store.connection() as conn:  # what the kill leaves: row gone, files kept
        conn.execute("DELETE FROM models WHERE sha256 = ?", (A,))
    assert any(p.name.startswith(A) for p in images_dir.iterdir())
    get_state(first).lists.close()

    second = create_app(app_config)
    assert not [p.name for p in images_dir.iterdir() if p.name.startswith(A)]
    assert get_state(second).images.count(B) == 1  # a model still in the library keeps its set
    with get_state(second).store.connection() as conn:
        conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
                     "VALUES (?, '/m/a', 'a', 'checkpoints', 1, 1)", (A,))
    record = second.test_client().get(f"/api/models/{A}").get_json()
    assert record["meta_json"]["images_count"] == 0


def test_batch_edits_make_an_open_edit_stale(client, add_model, make_model_file):
    path, sha = make_model_file("checkpoints/e.safetensors", b"E" * 64)
    add_model(sha, str(path), name="e")
    etags = [client.get(f"/api/models/{sha}").headers["ETag"]]
    for url, body in [("/api/models/tags", {"sha256": [sha], "add": ["t"]}),
                      ("/api/models/set_type", {"sha256": [sha], "type": "loras"})]:
        assert client.post(url, json=body).status_code == 200
        etags.append(client.get(f"/api/models/{sha}").headers["ETag"])
    assert len(set(etags)) == 3
    stale = client.patch(f"/api/models/{sha}", json={"tags": []}, headers={"If-Match": etags[0]})
    assert stale.status_code == 412
    assert [t["name"] for t in client.get(f"/api/models/{sha}").get_json()["tags"]] == ["t"]


def test_hostile_ids_on_management_routes_are_400s(no_propagation, add_model):
    client = no_propagation.test_client()
    add_model(A, "/m/a")
    bodies = [
        ("/api/models/tags", {"sha256": [A], "add": [{"id": "9" * 5000}]}),
        ("/api/models/tags", {"sha256": [A], "add": ["\ud800"]}),
        ("/api/models/tags", {"sha256": [A], "remove": [1.5]}),
        ("/api/models/tags", {"sha256": [A], "add": [True]}),
        ("/api/models/tags", {"sha256": [A, None], "add": ["x"]}),
        ("/api/models/tags", {"sha256": "a" * 64, "add": ["x"]}),
        ("/api/models/set_type", {"sha256": [A], "type": "\ud800"}),
        ("/api/tags/rename", {"id": "٣", "name": "x"}),
        ("/api/tags/rename", {"id": 2**70, "name": "x"}),
        ("/api/tags/merge", {"source": ["²"], "target": 1}),
        ("/api/tags/merge", {"source": [1], "target": {"id": "9" * 30}}),
        ("/api/tags/delete", {"id": [-1]}),
        ("/api/files/restore", {"id": "1234567890-abcdef0\u0660"}),
        ("/api/files/trash", {"path": "/etc/passwd", "confirm": "passwd"}),
        ("/api/models/reread_metadata", {"sha256": ["\ud800"]}),
        ("/api/models/reread_metadata", {"sha256": [A], "async": "yes"}),
    ]
    for url, body in bodies:
        import json
        r = client.post(url, data=json.dumps(body), headers=HEADERS)
        assert 400 <= r.status_code < 500, (url, body, r.status_code, r.data[:200])
        assert "error" in r.get_json()


@pytest.mark.sqlite_only  # takes SQLite's write lock from beside the server
def test_a_server_thread_reusing_its_connection_after_failed_requests_sees_fresh_data(app, add_model):
    """One waitress thread serves everything: a 412 raised inside a transaction, a 404 raised inside
    a read transaction, a 304, a 400 must leave its reused connection without a lock or snapshot."""
    import json
    import sqlite3
    import urllib.error
    import urllib.request

    from hikaze_manager.server import start_server

    add_model(A, "/m/a", name="one")
    handle = start_server(app, "127.0.0.1", 0, threads=1)
    base = handle.url.rstrip("/")

    def call(method, path, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={**HEADERS, **(headers or {})} if data else (headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    try:
        status, headers, _ = call("GET", f"/api/models/{A}")
        etag = headers["ETag"]
        assert call("PATCH", f"/api/models/{A}", {"name": "two"})[0] == 200
        assert call("PATCH", f"/api/models/{A}", {"name": "x"}, {"If-Match": etag})[0] == 412
        assert call("GET", f"/api/models/{B}")[0] == 404
        assert call("PATCH", f"/api/models/{A}", {"tags": [999]})[0] == 400
        status, headers, _ = call("GET", "/api/models?type=checkpoints")
        assert call("GET", "/api/models?type=checkpoints", headers={"If-None-Match": headers["ETag"]})[0] == 304
        other = sqlite3.connect(app.config["DATABASE"], timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # no lock left behind by the server's connection
            other.execute("UPDATE models SET name = 'three' WHERE sha256 = ?", (A,))
            other.execute("COMMIT")
        finally:
            other.close()
        assert json.loads(call("GET", f"/api/models/{A}")[2])["name"] == "three"
        listed = json.loads(call("GET", "/api/models?type=checkpoints")[2])
        assert "three" in json.dumps(listed)
        assert call("PATCH", f"/api/models/{A}", {"name": "four"})[0] == 200
    finally:
        handle.stop()


def test_two_rereads_at_once_add_the_preview_beside_the_file_once(app, add_model, models_root):
    """Re-read adds the preview beside the file "if the model has no picture yet": two re-reads
    racing through a real server must not both decide so and give the model two equal sets."""
    import json
    import os
    import threading
    import urllib.request

    from metadata_support import write_safetensors

    from hikaze_manager.server import start_server

    loras = models_root / "loras"
    sha, _ = write_safetensors(loras / "p.safetensors", {})
    noise = Image.frombytes("RGB", (1600, 1600), os.urandom(1600 * 1600 * 3))
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    (loras / "p.preview.png").write_bytes(buf.getvalue())
    add_model(sha, str(loras / "p.safetensors"), type="loras")
    handle = start_server(app, "127.0.0.1", 0, threads=4)
    statuses = []

    def reread():
        req = urllib.request.Request(handle.url + "api/models/reread_metadata", method="POST",
                                     data=json.dumps({"sha256": [sha]}).encode(), headers=HEADERS)
        with urllib.request.urlopen(req, timeout=60) as r:
            statuses.append(r.status)

    try:
        workers = [threading.Thread(target=reread) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        handle.stop()
    assert statuses == [200, 200, 200]
    assert get_state(app).images.count(sha) == 1


def test_two_imports_of_one_pending_model_at_once_keep_its_picture(app, db_conn, make_model_file):
    """The loser of two concurrent promotions undoes its picture set; the winner's equal set
    must survive (undo by picture digest must not take it)."""
    import json
    import os
    import threading
    import urllib.request

    from hikaze_manager.server import start_server

    path, sha = make_model_file("checkpoints/race.safetensors", os.urandom(1 << 16))
    images = get_state(app).images
    noise = Image.frombytes("RGB", (1600, 1600), os.urandom(1600 * 1600 * 3))
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    name = images.save_pending_image("race.png", buf.getvalue())
    pid = db_conn.execute(
        "INSERT INTO pending_import(path, sha256, name, type, size_bytes, created_at, meta_json)"
        " VALUES (?, '', 'race', 'checkpoints', ?, 1, ?)",
        (str(path), 1 << 16, json.dumps({"images": [name]}))).lastrowid
    handle = start_server(app, "127.0.0.1", 0, threads=4)
    reports = []

    def promote():
        req = urllib.request.Request(handle.url + "api/migration/import_models", method="POST",
                                     data=json.dumps({"id": [pid]}).encode(), headers=HEADERS)
        with urllib.request.urlopen(req, timeout=60) as r:
            reports.append(json.loads(r.read()))

    try:
        workers = [threading.Thread(target=promote) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        handle.stop()
    assert sum(len(r["success"]) for r in reports) == 1, reports
    assert db_conn.execute("SELECT 1 FROM models WHERE sha256 = ?", (sha,)).fetchone()
    assert images.count(sha) == 1
