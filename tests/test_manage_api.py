"""Management API: batch edits, atomic tag edits, tag administration, duplicates, missing, trash."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import io
import urllib.request

import pytest
from PIL import Image

from hikaze_manager.server import start_server
from hikaze_manager.state import get_state

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

SHA = lambda i: hashlib.sha256(str(i).encode()).hexdigest()  # noqa: E731


def _tags_of(db_conn, sha):
    return sorted(r[0] for r in db_conn.execute(
        "SELECT t.name FROM model_tags mt JOIN tags t ON t.id = mt.tag_id WHERE mt.model_hash = ?",
        (sha,)))


def _db_snapshot(db_conn):
    return [db_conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("models", "tags", "model_tags", "pending_model_tags")]


@pytest.fixture
def library(add_model, db_conn, client):
    shas = [add_model(SHA(i), f"/nowhere/m{i}.safetensors", name=f"m{i}") for i in range(3)]
    client.post("/api/tags_add", json={"newtags": ["anime", "style"]})
    return shas


def test_tags_add_and_remove_on_many_models(client, db_conn, library):
    anime = db_conn.execute("SELECT id FROM tags WHERE name = 'anime'").fetchone()[0]
    r = client.post("/api/models/tags", json={"sha256": library, "add": ["Anime", "new one", anime]})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["models"] == 3 and body["links_added"] == 6
    assert [t["name"] for t in body["added"]] == ["anime", "new one"]
    assert all(_tags_of(db_conn, s) == ["anime", "new one"] for s in library)
    r = client.post("/api/models/tags", json={"sha256": library[:1], "remove": ["ANIME"],
                                              "add": ["style"]})
    assert r.status_code == 200 and r.get_json()["links_removed"] == 1
    assert _tags_of(db_conn, library[0]) == ["new one", "style"]


@pytest.mark.parametrize("body, needle", [
    ({"sha256": [SHA(99)], "add": ["x"]}, SHA(99)),
    ({"sha256": [SHA(0)], "add": [987654]}, "987654"),
    ({"sha256": [SHA(0)], "remove": ["no such tag"]}, "no such tag"),
    ({"sha256": [SHA(0)], "add": [True]}, "add"),
    ({"sha256": ["abc"], "add": ["x"]}, "sha256"),
    ({"sha256": [], "add": ["x"]}, "sha256"),
    ({"sha256": [SHA(0)]}, "add or remove"),
    ({"sha256": [SHA(0)], "add": ["\ud800"]}, "add"),
    ({"sha256": [SHA(0)], "add": ["x"], "extra": 1}, "extra"),
])
def test_bad_tag_edits_are_400_and_change_nothing(client, db_conn, library, body, needle):
    before = _db_snapshot(db_conn)
    r = client.post("/api/models/tags", data=json.dumps(body), content_type="application/json")
    assert r.status_code == 400 and needle in r.get_json()["error"], r.get_json()
    assert _db_snapshot(db_conn) == before  # the new tag "x" of a failed request is not created


def test_sixteen_concurrent_clients_each_add_one_tag(app, add_model, db_conn):
    sha = add_model(SHA(1), "/nowhere/one.safetensors")
    handle = start_server(app, "127.0.0.1", 0, threads=8)
    results = []
    try:
        def add(i):
            request = urllib.request.Request(
                f"{handle.url}api/models/tags", method="POST",
                data=json.dumps({"sha256": [sha], "add": [f"tag{i}"]}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                results.append(response.status)
        threads = [threading.Thread(target=add, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        handle.stop()
    assert results == [200] * 16
    assert _tags_of(db_conn, sha) == sorted(f"tag{i}" for i in range(16))


def test_batch_edit_of_5000_models(client, db_conn):
    shas = [SHA(i) for i in range(5000)]
    db_conn.execute("BEGIN")
    db_conn.executemany("INSERT INTO models(sha256, path, name, type) VALUES (?, ?, ?, 'loras')",
                        [(s, f"/x/{s}.safetensors", s[:8]) for s in shas])
    db_conn.execute("COMMIT")
    r = client.post("/api/models/tags", json={"sha256": shas, "add": ["bulk", "more"]})
    assert r.status_code == 200 and r.get_json()["links_added"] == 10_000
    tag_ids = [r[0] for r in db_conn.execute("SELECT id FROM tags WHERE name IN ('bulk', 'more')")]
    assert db_conn.execute("SELECT COUNT(*) FROM model_tags WHERE tag_id IN (?, ?)",
                           tag_ids).fetchone()[0] == 10_000
    r = client.post("/api/models/set_type", json={"sha256": shas, "type": "checkpoints"})
    assert r.get_json() == {"models": 5000, "changed": 5000, "type": "checkpoints"}
    assert db_conn.execute("SELECT COUNT(*) FROM models WHERE type = 'checkpoints'").fetchone()[0] == 5000
    # one unknown model among 5,000: nothing changes
    r = client.post("/api/models/set_type", json={"sha256": shas + [SHA("x")], "type": "vae"})
    assert r.status_code == 400 and SHA("x") in r.get_json()["error"]
    assert db_conn.execute("SELECT COUNT(*) FROM models WHERE type = 'vae'").fetchone()[0] == 0
    r = client.post("/api/models/remove", json={"sha256": shas[:2500]})
    assert r.status_code == 200 and r.get_json()["removed"] == 2500
    assert db_conn.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 2500
    assert db_conn.execute("SELECT COUNT(*) FROM model_tags").fetchone()[0] == 5000


def _upload(client, sha):
    buf = io.BytesIO()
    Image.new("RGB", (64, 80), (10, 200, 30)).save(buf, "PNG")
    r = client.post("/api/images/upload", data={"sha256": sha, "image": (io.BytesIO(buf.getvalue()), "p.png")})
    assert r.status_code == 200, r.get_data()


def test_remove_from_library_deletes_row_links_and_pictures_not_the_file(
        app, client, db_conn, make_model_file, add_model):
    path, sha = make_model_file("checkpoints/keep.safetensors")
    other = add_model(SHA(7), "/nowhere/other.safetensors")
    add_model(sha, str(path))
    client.post("/api/models/tags", json={"sha256": [sha, other], "add": ["a"]})
    _upload(client, sha)
    _upload(client, sha)
    _upload(client, other)
    images = get_state(app).images
    assert images.count(sha) == 2
    r = client.post("/api/models/remove", json={"sha256": [sha]})
    assert r.get_json() == {"removed": 1, "sha256": [sha], "pictures_removed": 2}
    assert db_conn.execute("SELECT COUNT(*) FROM models WHERE sha256 = ?", (sha,)).fetchone()[0] == 0
    assert db_conn.execute("SELECT COUNT(*) FROM model_tags WHERE model_hash = ?", (sha,)).fetchone()[0] == 0
    assert images.count(sha) == 0 and sha not in images.owners()
    if images.images_dir is not None:  # files: not one tier left behind
        assert list(images.images_dir.glob(f"{sha}_*")) == []
    assert images.count(other) == 1 and _tags_of(db_conn, other) == ["a"]
    assert path.is_file()  # the model file is the user's
    assert client.get(f"/api/models/{sha}").status_code == 404
    assert client.post("/api/models/remove", json={"sha256": [sha]}).status_code == 400


def _tag_id(db_conn, name):
    row = db_conn.execute("SELECT id FROM tags WHERE name_key = ?", (name.casefold(),)).fetchone()
    return row and row[0]


def test_tag_usage_rename_and_rename_onto_existing_merges(client, db_conn, library):
    client.post("/api/models/tags", json={"sha256": library[:2], "add": ["anime"]})
    client.post("/api/models/tags", json={"sha256": library[1:], "add": ["anim"]})
    usage = {t["name"]: t["models"] for t in client.get("/api/tags/usage").get_json()["tags"]}
    assert usage == {"anim": 2, "anime": 2, "style": 0}
    anim = _tag_id(db_conn, "anim")
    preview = client.post("/api/tags/rename", json={"id": anim, "name": " ANIME ", "dry_run": True})
    assert preview.get_json()["merged"] is True and preview.get_json()["tag"]["models"] == 3
    assert _tag_id(db_conn, "anim") == anim  # a dry run changes nothing
    r = client.post("/api/tags/rename", json={"id": anim, "name": "ANIME"}).get_json()
    assert r["merged"] and r["tag"] == {"id": _tag_id(db_conn, "anime"), "name": "anime",
                                        "models": 3, "pending": 0}
    assert _tag_id(db_conn, "anim") is None
    assert all(_tags_of(db_conn, s) == ["anime"] for s in library)
    style = _tag_id(db_conn, "style")
    r = client.post("/api/tags/rename", json={"id": style, "name": "Style Art"}).get_json()
    assert r["merged"] is False and r["tag"]["name"] == "Style Art"


def test_merge_several_tags_checked_in_the_db(client, db_conn, library):
    for i, name in enumerate(["a", "b", "c"]):
        client.post("/api/models/tags", json={"sha256": library[i:], "add": [name]})
    ids = [_tag_id(db_conn, n) for n in ("a", "b", "c")]
    r = client.post("/api/tags/merge", json={"source": ids, "target": "Merged"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["tag"]["models"] == 3 and sorted(r.get_json()["removed_ids"]) == sorted(ids)
    assert [_tag_id(db_conn, n) for n in ("a", "b", "c")] == [None] * 3
    merged = _tag_id(db_conn, "merged")
    rows = db_conn.execute("SELECT model_hash, tag_id FROM model_tags ORDER BY 1").fetchall()
    assert sorted(tuple(r) for r in rows) == sorted((s, merged) for s in library)
    # into an existing tag: the target keeps its id
    r = client.post("/api/tags/merge", json={"source": [merged], "target": _tag_id(db_conn, "style")})
    assert r.get_json()["tag"]["name"] == "style" and r.get_json()["tag"]["models"] == 3


def test_delete_tag_leaves_every_model(client, db_conn, library):
    client.post("/api/models/tags", json={"sha256": library, "add": ["gone"]})
    gone = _tag_id(db_conn, "gone")
    r = client.post("/api/tags/delete", json={"id": [gone]}).get_json()
    assert r["deleted"][0]["models"] == 3 and r["removed_ids"] == [gone]
    assert _tag_id(db_conn, "gone") is None
    assert db_conn.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 3
    assert db_conn.execute("SELECT COUNT(*) FROM model_tags").fetchone()[0] == 0


@pytest.mark.parametrize("path, body", [
    ("/api/tags/rename", {"id": 424242, "name": "x"}),
    ("/api/tags/rename", {"id": "9" * 5000, "name": "x"}),
    ("/api/tags/rename", {"id": 1, "name": "   "}),
    ("/api/tags/rename", {"id": 1, "name": "\ud800"}),
    ("/api/tags/merge", {"source": [1, 424242], "target": "x"}),
    ("/api/tags/merge", {"source": [], "target": "x"}),
    ("/api/tags/delete", {"id": [1, 424242]}),
    ("/api/tags/delete", {"id": [1], "dry_run": "yes"}),
    ("/api/models/set_type", {"sha256": [SHA(0)], "type": ""}),
    ("/api/files/trash", {"path": "/etc/passwd", "sha256": SHA(0), "confirm": "x"}),
    ("/api/files/restore", {"id": "../../etc"}),
])
def test_bad_admin_input_is_400_and_changes_nothing(client, db_conn, library, path, body):
    before = _db_snapshot(db_conn)
    r = client.post(path, data=json.dumps(body).replace("\\\\ud800", "\\ud800"),
                    content_type="application/json")
    assert r.status_code == 400, (r.status_code, r.get_json())
    assert "error" in r.get_json()
    assert _db_snapshot(db_conn) == before


def test_duplicates_and_same_name_listed_with_their_space(client, db_conn, make_model_file, add_model):
    data = os.urandom(3000)
    a, sha = make_model_file("checkpoints/a.safetensors", data)
    b, _ = make_model_file("loras/copy/a_copy.safetensors", data)
    c, sha_c = make_model_file("loras/a.safetensors", os.urandom(100))
    add_model(sha, str(a), name="A")
    add_model(sha_c, str(c), name="other a")
    db_conn.execute("INSERT INTO file_hashes(path, size_bytes, mtime_ns, sha256, hashed_at) VALUES (?, 3000, 1, ?, 1)", (str(b), sha))
    db_conn.execute("INSERT INTO file_hashes(path, size_bytes, mtime_ns, sha256, hashed_at) VALUES ('/gone/x.safetensors', 3000, 1, ?, 1)", (sha,))
    report = client.get("/api/library/duplicates").get_json()
    [group] = report["same_content"]
    assert group["sha256"] == sha and group["reclaimable_bytes"] == 3000 and group["total_bytes"] == 6000
    assert [(p["path"], p["source"]) for p in group["paths"]] == [(str(a), "library"), (str(b), "scan")]
    [same_name] = report["same_name"]
    assert sorted(f["path"] for f in same_name["files"]) == sorted([str(a), str(c)])
    assert a.is_file() and b.is_file() and c.is_file()


def test_missing_files_listed_and_relinked_by_rescan(client, db_conn, make_model_file, add_model):
    path, sha = make_model_file("checkpoints/old.safetensors")
    add_model(sha, str(path), size_bytes=path.stat().st_size)
    assert client.get("/api/library/missing").get_json()["models"] == []
    moved = path.with_name("new.safetensors")
    os.rename(path, moved)
    [missing] = client.get("/api/library/missing").get_json()["models"]
    assert missing["sha256"] == sha and missing["path"] == str(path)
    assert client.post("/api/scan", json={}).get_json()["relinked"] == 1
    assert client.get("/api/library/missing").get_json()["models"] == []


def test_sort_keys_give_file_times_and_pending_sizes(client, db_conn, make_model_file, add_model):
    path, sha = make_model_file("checkpoints/t.safetensors")
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    add_model(sha, str(path))
    make_model_file("loras/p.safetensors", b"x" * 77)
    client.post("/api/scan", json={})
    keys = client.get("/api/models/sort_keys").get_json()
    assert keys["models"][sha] == {"mtime": 1_600_000_000_000}
    [pending] = keys["pending"].values()
    assert pending["size_bytes"] == 77
