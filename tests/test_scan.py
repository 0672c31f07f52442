"""GET/POST /api/scan on real model trees: what becomes pending, what is counted, what is never
re-hashed, relinking of moved files."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from hikaze_manager import create_app
from hikaze_manager.services import hashing, scan as scan_service
from hikaze_manager.services.model_types import ModelType, ModelTypeIndex
from hikaze_manager.state import get_state

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL


def _pending(db_conn) -> dict[str, dict]:
    return {row["path"]: dict(row) for row in db_conn.execute("SELECT * FROM pending_import")}


@pytest.fixture
def messy_tree(models_root, make_model_file, tmp_path):
    """A tree with nesting, links, odd names and files that must not become models."""
    ck = models_root / "checkpoints"
    make_model_file("checkpoints/a.safetensors")
    make_model_file("checkpoints/sdxl/base/b.ckpt")
    make_model_file("checkpoints/UPPER.SAFETENSORS")
    make_model_file("checkpoints/empty.safetensors", b"")
    make_model_file("checkpoints/naïve 模型 🎨.safetensors")
    make_model_file("checkpoints/readme.txt", b"not a model")
    make_model_file("checkpoints/a.preview.png", b"\x89PNG")
    make_model_file("checkpoints/.git/objects/x.safetensors")  # never walked
    make_model_file("loras/style/l1.safetensors")
    make_model_file("loras/l2.pt")
    (ck / "sdxl" / "loop").symlink_to(ck)  # a loop back to the root
    (ck / "self.safetensors").symlink_to(ck / "self.safetensors")  # ELOOP on stat
    (ck / "broken.safetensors").symlink_to(tmp_path / "nowhere.safetensors")  # vanished target
    bad_name = os.fsencode(str(ck)) + b"/bad-\xff-name.safetensors"
    with open(bad_name, "wb") as fh:
        fh.write(b"non utf-8 name")
    outside = tmp_path / "external"
    outside.mkdir()
    (outside / "ext.safetensors").write_bytes(os.urandom(64))
    (models_root / "loras" / "linked").symlink_to(outside)  # followed
    (models_root / "loras" / "same-file.pt").symlink_to(models_root / "loras" / "l2.pt")
    return models_root


def test_scan_real_tree(client, db_conn, messy_tree):
    response = client.get("/api/scan")
    assert response.status_code == 200
    report = response.get_json()
    assert list(report) == ["status", "scanned", "added", "pending_ids", "skipped", "relinked",
                            "errors", "metadata"]
    rows = _pending(db_conn)
    ck, lo = messy_tree / "checkpoints", messy_tree / "loras"
    expected = {
        str(ck / "a.safetensors"): "checkpoints",
        str(ck / "sdxl" / "base" / "b.ckpt"): "checkpoints",
        str(ck / "UPPER.SAFETENSORS"): "checkpoints",
        str(ck / "empty.safetensors"): "checkpoints",
        str(ck / "naïve 模型 🎨.safetensors"): "checkpoints",
        str(lo / "style" / "l1.safetensors"): "loras",
        str(lo / "l2.pt"): "loras",
        str(lo / "linked" / "ext.safetensors"): "loras",
    }
    assert {path: row["type"] for path, row in rows.items()} == expected
    assert report["status"] == "success"
    assert report["added"] == 8
    assert sorted(report["pending_ids"]) == sorted(row["id"] for row in rows.values())
    # broken link, self loop, non-UTF-8 name: counted, skipped, not fatal; same-file.pt is a
    # second link to l2.pt (skipped, not an error).
    assert report["errors"] == 3
    assert report["scanned"] == 12
    assert report["skipped"] == 4
    assert report["relinked"] == 0
    row = rows[str(ck / "a.safetensors")]
    st = (ck / "a.safetensors").stat()
    assert row["name"] == "a.safetensors"
    assert row["sha256"] == ""
    assert row["size_bytes"] == 4096
    assert row["created_at"] == st.st_mtime_ns // 1_000_000
    stored = json.loads(row["meta_json"])
    assert stored.pop("file_metadata")["problems"][0]["file"] == "a.safetensors"  # random bytes
    assert stored == scan_service.EMPTY_OLD_META
    assert rows[str(ck / "empty.safetensors")]["size_bytes"] == 0


def test_rescan_of_unchanged_tree_adds_and_hashes_nothing(client, db_conn, messy_tree):
    first = client.get("/api/scan").get_json()
    before_rows = _pending(db_conn)
    before_hashes = hashing.STATS.files
    second = client.get("/api/scan").get_json()
    assert second["added"] == 0 and second["pending_ids"] == []
    assert second["scanned"] == first["scanned"]
    assert second["skipped"] == first["scanned"]
    assert hashing.STATS.files == before_hashes
    assert _pending(db_conn) == before_rows


def test_post_scan_and_get_needs_same_origin(client):
    assert client.post("/api/scan").status_code == 200
    assert client.post("/api/scan", json={}).status_code == 200
    refused = client.get("/api/scan", headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403
    bad = client.post("/api/scan", json={"async": "maybe"})
    assert bad.status_code == 400 and bad.get_json()["error"].startswith("async")
    unknown = client.post("/api/scan", json={"deep": True})
    assert unknown.status_code == 400 and "deep" in unknown.get_json()["error"]
    assert client.post("/api/scan", json=[1]).status_code == 400


def test_scan_without_types_is_503(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data")})
    response = app.test_client().get("/api/scan")
    assert response.status_code == 503
    assert "error" in response.get_json()
    roots_missing = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "d2"),
                                "MODEL_TYPES": {"checkpoints": {"roots": []}}})
    assert roots_missing.test_client().post("/api/scan").status_code == 503


def test_missing_root_is_not_an_error(app_config, tmp_path, make_model_file):
    make_model_file("checkpoints/a.safetensors")
    app_config["MODEL_TYPES"]["vae"] = {"roots": [str(tmp_path / "no-such-folder")]}
    report = create_app(app_config).test_client().get("/api/scan").get_json()
    assert report["added"] == 1 and report["errors"] == 0


def test_known_paths_are_compared_normalised(client, db_conn, add_model, make_model_file, models_root):
    path, sha = make_model_file("checkpoints/a.safetensors")
    other, _ = make_model_file("loras/b.safetensors")
    add_model(sha, str(models_root / "checkpoints" / "." / "sub" / ".." / "a.safetensors"))
    db_conn.execute("INSERT INTO pending_import(path, name) VALUES (?, 'b')",
                    (str(models_root) + "//loras/b.safetensors",))
    report = client.get("/api/scan").get_json()
    assert report["added"] == 0 and report["skipped"] == 2


def test_many_files_in_batches(client, db_conn, models_root):
    folder = models_root / "loras" / "many"
    folder.mkdir()
    count = scan_service.INSERT_BATCH * 2 + 7
    for i in range(count):
        (folder / f"l{i:04d}.safetensors").write_bytes(b"%d" % i)
    report = client.post("/api/scan").get_json()
    assert report["added"] == count
    assert db_conn.execute("SELECT COUNT(*) FROM pending_import").fetchone()[0] == count


def test_moved_library_file_is_relinked(client, db_conn, add_model, make_model_file, models_root):
    data = os.urandom(10_000)
    old, sha = make_model_file("checkpoints/old/place.safetensors", data)
    add_model(sha, str(old), name="My model", size_bytes=len(data),
              meta_json=json.dumps({"description": "keep me"}))
    tag_id = db_conn.execute("INSERT INTO tags(name, name_key) VALUES ('fav', 'fav')").lastrowid
    db_conn.execute("INSERT INTO model_tags(model_hash, tag_id) VALUES (?, ?)", (sha, tag_id))
    new = models_root / "checkpoints" / "new" / "moved.safetensors"
    new.parent.mkdir()
    os.rename(old, new)
    # Same size, different content: a new model, not the moved one.
    decoy, _ = make_model_file("checkpoints/decoy.safetensors", os.urandom(len(data)))
    report = client.get("/api/scan").get_json()
    assert report["relinked"] == 1
    assert report["added"] == 1
    assert list(_pending(db_conn)) == [str(decoy)]
    row = db_conn.execute("SELECT * FROM models WHERE sha256 = ?", (sha,)).fetchone()
    assert row["path"] == str(new)
    assert row["name"] == "My model"
    assert json.loads(row["meta_json"]) == {"description": "keep me"}
    assert db_conn.execute("SELECT tag_id FROM model_tags WHERE model_hash = ?", (sha,)).fetchall()[0][0] == tag_id
    # The relink hashed the candidates once; a rescan hashes nothing.
    before = hashing.STATS.files
    again = client.get("/api/scan").get_json()
    assert again["relinked"] == 0 and again["added"] == 0
    assert hashing.STATS.files == before


def test_present_library_files_are_never_hashed(client, add_model, make_model_file):
    path, sha = make_model_file("checkpoints/a.safetensors")
    add_model(sha, str(path), size_bytes=4096)
    make_model_file("checkpoints/b.safetensors")  # same size, but nothing is missing
    before = hashing.STATS.files
    report = client.get("/api/scan").get_json()
    assert report["added"] == 1 and report["relinked"] == 0
    assert hashing.STATS.files == before


def test_merged_duplicate_is_not_queued_again(client, db_conn, make_model_file):
    data = os.urandom(3000)
    make_model_file("checkpoints/a.safetensors", data)
    make_model_file("checkpoints/copy.safetensors", data)
    ids = client.get("/api/scan").get_json()["pending_ids"]
    report = client.post("/api/migration/import_models", json={"id": ids}).get_json()
    assert len(report["success"]) == 1 and len(report["conflict"]) == 1
    client.post("/api/migration/import_models",
                json={"id": [report["conflict"][0]["pending"]["id"]], "conflict_strategy": "merge"})
    again = client.get("/api/scan").get_json()
    assert again["added"] == 0
    assert db_conn.execute("SELECT COUNT(*) FROM pending_import").fetchone()[0] == 0


def test_async_scan_reports_progress_and_the_same_report(client, app, make_model_file):
    for i in range(5):
        make_model_file(f"loras/l{i}.safetensors")
    response = client.get("/api/scan?async=1")
    assert response.status_code == 202
    body = response.get_json()
    job = get_state(app).jobs.wait(body["job_id"], timeout=30)
    assert job is not None
    polled = client.get(response.headers["Location"]).get_json()
    assert polled["state"] == "succeeded"
    assert polled["status_code"] == 200
    assert polled["result"]["added"] == 5
    assert polled["progress"]["files_done"] == polled["progress"]["files_total"] == 5
    sync = client.get("/api/scan").get_json()
    assert set(sync) == set(polled["result"])


def test_walk_dedupes_directories_reached_twice(tmp_path):
    root = tmp_path / "r"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "m.safetensors").write_bytes(b"m")
    (root / "alias").symlink_to(root / "sub")
    index = ModelTypeIndex({
        "a": ModelType("a", (str(root),)),
        "b": ModelType("b", (str(root / "sub"),)),
    })
    stats = scan_service.WalkStats()
    found = list(scan_service.walk_models(index, stats))
    assert [(f[0], f[1]) for f in found] in (
        [(str(root / "sub" / "m.safetensors"), "a")], [(str(root / "alias" / "m.safetensors"), "a")])
    assert stats.duplicates == 0 and stats.unusable == 0


def test_unreadable_folder_is_an_error_but_not_a_skipped_model(client, db_conn, make_model_file,
                                                               models_root):
    """A folder whose path is longer than the system allows cannot be listed (ENAMETOOLONG, even
    for root): it is counted in ``errors`` only, and the counts still add up."""
    make_model_file("checkpoints/ok.safetensors")
    fd = os.open(models_root / "checkpoints", os.O_RDONLY)
    try:
        for _ in range(20):  # 20 x 250 characters: past PATH_MAX (4096)
            os.mkdir("d" * 250, dir_fd=fd)
            inner = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("deep.safetensors", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as fh:
            fh.write(b"unreachable")
    finally:
        os.close(fd)
    report = client.post("/api/scan").get_json()
    assert report["errors"] >= 1
    assert report["added"] == 1
    assert report["scanned"] == report["added"] + report["skipped"] + report["relinked"]
    assert list(_pending(db_conn)) == [str(models_root / "checkpoints" / "ok.safetensors")]


def test_files_removed_while_the_scan_runs_are_never_fatal(client, db_conn, models_root):
    """A real concurrent deleter removes files while the scan lists and stats them; whatever
    the timing, the scan answers, its counts add up, and only files that existed are queued."""
    import threading

    folder = models_root / "checkpoints" / "churn"
    folder.mkdir()
    created = []
    for i in range(3000):
        path = folder / f"m{i:04}.safetensors"
        path.write_bytes(b"x")
        created.append(path)
    started = threading.Event()

    def deleter():
        started.wait()
        for path in created[::2]:
            path.unlink()

    thread = threading.Thread(target=deleter)
    thread.start()
    started.set()
    try:
        response = client.post("/api/scan")
    finally:
        thread.join()
    assert response.status_code == 200
    report = response.get_json()
    assert report["scanned"] == report["added"] + report["skipped"] + report["relinked"]
    queued = set(_pending(db_conn))
    assert queued <= {str(p) for p in created}
    assert {str(p) for p in created[1::2]} <= queued  # the files never removed are all there


def test_a_new_copy_is_queued_even_when_a_same_size_model_lost_its_file(
        client, db_conn, add_model, make_model_file, models_root):
    """The move check hashes the copy (and caches that hash); the copy must still reach Pending."""
    kept = os.urandom(5000)
    path, sha = make_model_file("checkpoints/kept.safetensors", kept)
    add_model(sha, str(path), size_bytes=len(kept))
    lost = os.urandom(5000)
    add_model(hashlib.sha256(lost).hexdigest(), str(models_root / "checkpoints" / "gone.safetensors"),
              size_bytes=len(lost))  # its file is gone: same size as the copy below
    copy, _ = make_model_file("checkpoints/copy-of-kept.safetensors", kept)
    report = client.get("/api/scan").get_json()
    assert report["relinked"] == 0
    assert report["added"] == 1
    assert list(_pending(db_conn)) == [str(copy)]
    assert client.get("/api/scan").get_json()["added"] == 0  # queued once, not twice
    assert list(_pending(db_conn)) == [str(copy)]


def test_a_pending_id_once_used_never_names_another_model(client, db_conn, make_model_file):
    make_model_file("checkpoints/first.safetensors")
    [first] = client.get("/api/scan").get_json()["pending_ids"]
    report = client.post("/api/migration/import_models", json={"id": [first]}).get_json()
    assert report["success"] == [first]
    make_model_file("checkpoints/second.safetensors")
    [second] = client.get("/api/scan").get_json()["pending_ids"]
    assert second > first
    stale = client.post("/api/migration/import_models", json={"id": [first]}).get_json()
    assert stale["failed"] == [{"id": first, "error": "Pending model not found"}]
    assert db_conn.execute("SELECT id FROM pending_import").fetchall()[0][0] == second


def test_walk_yields_hard_links_once_and_enters_folders_named_like_models(tmp_path):
    root = tmp_path / "r"
    (root / "bundle.safetensors").mkdir(parents=True)  # a folder, not a model file
    (root / "bundle.safetensors" / "inner.pt").write_bytes(b"i")
    (root / "a.ckpt").write_bytes(b"a")
    os.link(root / "a.ckpt", root / "b.ckpt")
    (root / ".pt").write_bytes(b"hidden, no suffix")
    index = ModelTypeIndex({"a": ModelType("a", (str(root),))})
    stats = scan_service.WalkStats()
    found = sorted(f[0] for f in scan_service.walk_models(index, stats))
    assert found[0] in (str(root / "a.ckpt"), str(root / "b.ckpt"))
    assert found[1:] == [str(root / "bundle.safetensors" / "inner.pt")]
    assert (stats.scanned, stats.duplicates, stats.unusable) == (3, 1, 0)


def test_walk_reports_a_model_whose_full_path_is_too_long_to_open(tmp_path):
    """The folder can be listed but the file's path passes PATH_MAX: the file could never be
    opened by that path, so it is a problem, not a pending model."""
    path_max = os.pathconf("/", "PC_PATH_MAX")
    root = tmp_path / "r"
    folder = str(root)
    while len(folder) < path_max - 200:
        folder = os.path.join(folder, "d" * min(200, path_max - 150 - len(folder)))
    os.makedirs(folder)
    fd = os.open(folder, os.O_RDONLY)
    try:
        long_name = "m" * (path_max - len(folder) - 12) + ".safetensors"  # full path: PATH_MAX + 1
        for name in (long_name, "ok.safetensors"):
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)
    index = ModelTypeIndex({"a": ModelType("a", (str(root),))})
    stats = scan_service.WalkStats()
    found = [f[0] for f in scan_service.walk_models(index, stats)]
    assert found == [os.path.join(folder, "ok.safetensors")]
    assert (stats.scanned, stats.unusable) == (2, 1)
    assert "File name too long" in stats.problems[0]
