"""POST /api/migration/import_models: promotion with and without conflicts, every strategy, images,
atomicity, the hash cache and request validation."""

from __future__ import annotations

import io
import json
import os

import pytest
from PIL import Image

from hikaze_manager import create_app
from hikaze_manager.services import hashing, image_journal
from hikaze_manager.services.images import picture_digest
from hikaze_manager.services.jobs import Job, JobCancelled
from hikaze_manager.services.promotion import promote_pending
from hikaze_manager.state import get_state

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

IMPORT = "/api/migration/import_models"


def png_bytes(color="red", size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def add_pending(db_conn):
    """Factory: a pending row for a real file, with optional meta, tags and pending image."""

    def _add(path, *, name=None, type="checkpoints", meta=None, tags=(), created_at=1700000000000):
        pid = db_conn.execute(
            "INSERT INTO pending_import(path, sha256, name, type, size_bytes, created_at, meta_json)"
            " VALUES (?, '', ?, ?, ?, ?, ?)",
            (str(path), name, type, os.path.getsize(path) if os.path.exists(path) else 0,
             created_at, json.dumps(meta or {})),
        ).lastrowid
        for tag in tags:
            row = db_conn.execute("SELECT id FROM tags WHERE name_key = ?", (tag.casefold(),)).fetchone()
            tag_id = row[0] if row else db_conn.execute(
                "INSERT INTO tags(name, name_key) VALUES (?, ?)", (tag, tag.casefold())).lastrowid
            db_conn.execute("INSERT INTO pending_model_tags(model_id, tag_id) VALUES (?, ?)",
                            (pid, tag_id))
        return pid

    return _add


def _model(db_conn, sha):
    row = db_conn.execute("SELECT * FROM models WHERE sha256 = ?", (sha,)).fetchone()
    return dict(row) if row else None


def _model_tags(db_conn, sha):
    return sorted(r[0] for r in db_conn.execute(
        "SELECT t.name FROM model_tags mt JOIN tags t ON t.id = mt.tag_id WHERE mt.model_hash = ?",
        (sha,)))


def _pending_ids(db_conn):
    return [r[0] for r in db_conn.execute("SELECT id FROM pending_import ORDER BY id")]


def _import(client, ids, strategy="absent", **extra):
    body = {"id": ids, **extra}
    if strategy != "absent":
        body["conflict_strategy"] = strategy
    response = client.post(IMPORT, json=body)
    assert response.status_code == 207, response.get_json()
    return response.get_json()


def test_promotion_without_conflict(client, app, db_conn, make_model_file, add_pending):
    path, sha = make_model_file("loras/style.safetensors", os.urandom(50_000))
    images = get_state(app).images
    image_name = images.save_pending_image("model_2_1700000000001_b.png", png_bytes())
    meta = {"description": "desc", "community_links": "https://civitai.com/x",
            "images": [f"/media/{image_name}"], "prompts": {"positive": "pos", "negative": "neg"}}
    pid = add_pending(path, name="Style", type="loras", meta=meta, tags=["anime", "loras"])
    report = _import(client, [pid])
    assert report == {"total": 1, "success": [pid], "conflict": [], "ignored": [], "deleted": [],
                      "failed": []}
    model = _model(db_conn, sha)
    assert model["path"] == str(path)
    assert (model["name"], model["type"], model["size_bytes"]) == ("Style", "loras", 50_000)
    assert model["created_at"] == 1700000000000
    assert json.loads(model["meta_json"]) == {"description": "desc",
                                              "community_links": "https://civitai.com/x",
                                              "prompts": {"positive": "pos", "negative": "neg"}}
    assert _model_tags(db_conn, sha) == ["anime", "loras"]
    assert _pending_ids(db_conn) == []
    assert images.count(sha) == 1
    assert images.pending_image_path(image_name) is None  # promoted, so removed
    record = client.get(f"/api/models/{sha}").get_json()
    assert record["meta_json"]["images_count"] == 1


@pytest.fixture
def conflict_setup(client, app, db_conn, make_model_file, add_pending, add_model):
    """A library model and a pending copy of the same file elsewhere, with its own data."""
    data = os.urandom(20_000)
    old, sha = make_model_file("checkpoints/a.safetensors", data)
    add_model(sha, str(old), name="Library name", type="", size_bytes=len(data),
              meta_json=json.dumps({"description": "library desc", "community_links": "",
                                    "prompts": {"positive": "", "negative": "lib neg"}}))
    db_conn.execute("INSERT INTO tags(name, name_key) VALUES ('kept', 'kept')")
    db_conn.execute("INSERT INTO model_tags(model_hash, tag_id) SELECT ?, id FROM tags WHERE name = 'kept'",
                    (sha,))
    images = get_state(app).images
    images.add_image(sha, png_bytes("blue"))
    copy, _ = make_model_file("checkpoints/copy/a-copy.safetensors", data)
    image_name = images.save_pending_image("copy.png", png_bytes("green"))
    pid = add_pending(copy, name="Pending name", type="checkpoints", tags=["new"],
                      meta={"description": "pending desc", "community_links": "https://p",
                            "images": [image_name], "prompts": {"positive": "pp", "negative": ""}},
                      created_at=1800000000000)
    return {"sha": sha, "old": str(old), "copy": str(copy), "pid": pid, "image": image_name,
            "images": images}


def test_conflict_is_reported_without_changes(client, db_conn, conflict_setup):
    s = conflict_setup
    for strategy in ("absent", None, "null"):
        report = _import(client, [s["pid"]], strategy)
        conflict = report["conflict"]
        assert [{side: {k: v for k, v in ref.items() if k != "name"} for side, ref in c.items()}
                for c in conflict] == [{"pending": {"id": s["pid"], "path": s["copy"]},
                                        "existing": {"id": s["sha"], "path": s["old"]}}]
        assert conflict[0]["pending"]["name"] == "Pending name"
        assert conflict[0]["existing"]["name"] == "Library name"
        assert report["success"] == []
    assert _pending_ids(db_conn) == [s["pid"]]
    assert _model(db_conn, s["sha"])["path"] == s["old"]
    assert s["images"].count(s["sha"]) == 1


def test_override(client, db_conn, conflict_setup):
    s = conflict_setup
    report = _import(client, [s["pid"]], "override")
    assert report["success"] == [s["pid"]]
    model = _model(db_conn, s["sha"])
    assert model["path"] == s["copy"]
    assert (model["name"], model["type"], model["created_at"]) == (
        "Pending name", "checkpoints", 1800000000000)
    # Pending values replace; fields the pending row leaves empty keep the library's value.
    assert json.loads(model["meta_json"]) == {"description": "pending desc", "community_links": "https://p",
                                              "prompts": {"positive": "pp", "negative": "lib neg"}}
    assert _model_tags(db_conn, s["sha"]) == ["kept", "new"]
    assert _pending_ids(db_conn) == []
    assert s["images"].count(s["sha"]) == 2  # existing image kept, pending one added
    assert s["images"].pending_image_path(s["image"]) is None


def test_merge(client, db_conn, conflict_setup):
    s = conflict_setup
    report = _import(client, [s["pid"]], "merge")
    assert report["success"] == [s["pid"]]
    model = _model(db_conn, s["sha"])
    assert model["path"] == s["old"]
    assert (model["name"], model["type"]) == ("Library name", "checkpoints")  # only the empty type filled
    assert json.loads(model["meta_json"]) == {"description": "library desc", "community_links": "https://p",
                                              "prompts": {"positive": "pp", "negative": "lib neg"}}
    assert _model_tags(db_conn, s["sha"]) == ["kept", "new"]
    assert _pending_ids(db_conn) == []
    assert s["images"].count(s["sha"]) == 2


def test_ignore(client, db_conn, conflict_setup):
    s = conflict_setup
    before = _model(db_conn, s["sha"])
    assert _import(client, [s["pid"]], "ignore")["ignored"] == [s["pid"]]
    assert _pending_ids(db_conn) == [s["pid"]]
    assert _model(db_conn, s["sha"]) == before
    assert s["images"].pending_image_path(s["image"]) is not None


def test_delete(client, db_conn, conflict_setup):
    s = conflict_setup
    before = _model(db_conn, s["sha"])
    assert _import(client, [s["pid"]], "delete")["deleted"] == [s["pid"]]
    assert _pending_ids(db_conn) == []
    assert db_conn.execute("SELECT COUNT(*) FROM pending_model_tags").fetchone()[0] == 0
    assert _model(db_conn, s["sha"]) == before
    assert s["images"].pending_image_path(s["image"]) is None
    assert os.path.exists(s["copy"])  # the user's model file is never touched
    assert s["images"].count(s["sha"]) == 1


@pytest.mark.parametrize("strategy", ["override", "merge", "ignore", "delete", None, "null"])
def test_strategy_does_not_apply_without_conflict(client, db_conn, make_model_file, add_pending, strategy):
    path, sha = make_model_file("loras/solo.safetensors")
    pid = add_pending(path, type="loras")
    report = _import(client, [pid], strategy)
    assert report["success"] == [pid]
    assert _model(db_conn, sha)["path"] == str(path)
    assert _pending_ids(db_conn) == []


def test_same_content_twice_in_one_batch(client, db_conn, make_model_file, add_pending):
    data = os.urandom(7000)
    first, sha = make_model_file("checkpoints/one.safetensors", data)
    second, _ = make_model_file("checkpoints/two.safetensors", data)
    a, b = add_pending(first), add_pending(second)
    report = _import(client, [a, b])
    assert report["success"] == [a]
    assert report["conflict"] == [{"pending": {"id": b, "path": str(second), "name": "two.safetensors"},
                                   "existing": {"id": sha, "path": str(first),
                                                "name": "one.safetensors"}}]
    assert _pending_ids(db_conn) == [b]


def test_failures_are_reported_per_item(client, db_conn, make_model_file, add_pending, tmp_path):
    good, sha = make_model_file("checkpoints/good.safetensors")
    ok = add_pending(good)
    gone = add_pending(tmp_path / "gone.safetensors")
    no_path = db_conn.execute("INSERT INTO pending_import(path, name) VALUES ('', 'x')").lastrowid
    report = _import(client, [ok, "abc", 12.5, None, 424242, gone, no_path, ok])
    assert report["total"] == 8
    assert report["success"] == [ok]
    assert report["failed"] == [
        {"id": "abc", "error": "Invalid id"},
        {"id": 12.5, "error": "Invalid id"},
        {"id": None, "error": "Invalid id"},
        {"id": 424242, "error": "Pending model not found"},
        {"id": gone, "error": "SHA256 calculation failed"},
        {"id": no_path, "error": "Pending model missing path"},
        {"id": ok, "error": "Pending model not found"},  # already promoted earlier in the batch
    ]
    assert _model(db_conn, sha) is not None


@pytest.mark.sqlite_only  # an SQLite trigger makes the library refuse the row
def test_database_failure_leaves_no_half_promoted_item(client, app, db_conn, make_model_file, add_pending):
    path, sha = make_model_file("loras/x.safetensors")
    images = get_state(app).images
    image_name = images.save_pending_image("x.png", png_bytes())
    pid = add_pending(path, meta={"images": [image_name]}, tags=["t"])
    db_conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON models BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    report = _import(client, [pid])
    assert report["failed"] == [{"id": pid, "error": "Database error: disk says no"}]
    assert _model(db_conn, sha) is None
    assert _pending_ids(db_conn) == [pid]
    assert images.count(sha) == 0  # the image set added for it was removed again
    assert images.pending_image_path(image_name) is not None
    db_conn.execute("DROP TRIGGER refuse")
    before = hashing.STATS.files
    assert _import(client, [pid])["success"] == [pid]
    assert hashing.STATS.files == before  # the retry used the hash cache
    assert images.count(sha) == 1  # and did not duplicate the image


def test_bad_pending_image_does_not_fail_promotion(client, app, db_conn, make_model_file, add_pending):
    path, sha = make_model_file("loras/y.safetensors")
    images = get_state(app).images
    name = images.save_pending_image("broken.png", b"definitely not an image")
    pid = add_pending(path, meta={"images": [name]})
    missing = add_pending(make_model_file("loras/z.safetensors")[0], meta={"images": ["/media/none.png"]})
    report = _import(client, [pid, missing])
    assert report["success"] == [pid, missing]
    assert [w["id"] for w in report["warnings"]] == [pid]
    assert images.count(sha) == 0
    assert _model(db_conn, sha) is not None


def test_shared_pending_image_is_kept_for_the_other_row(client, app, db_conn, make_model_file, add_pending):
    images = get_state(app).images
    name = images.save_pending_image("shared.png", png_bytes())
    first = add_pending(make_model_file("loras/s1.safetensors")[0], meta={"images": [name]})
    second = add_pending(make_model_file("loras/s2.safetensors")[0], meta={"images": [name]})
    _import(client, [first])
    assert images.pending_image_path(name) is not None
    _import(client, [second])
    assert images.pending_image_path(name) is None


def test_conflict_then_retry_does_not_rehash(client, db_conn, conflict_setup):
    s = conflict_setup
    _import(client, [s["pid"]])
    before = hashing.STATS.files
    cached = db_conn.execute("SELECT hashed_at FROM file_hashes WHERE path = ?", (s["copy"],)).fetchone()
    assert cached is not None
    assert _import(client, [s["pid"]], "merge")["success"] == [s["pid"]]
    assert hashing.STATS.files == before
    assert db_conn.execute("SELECT hashed_at FROM file_hashes WHERE path = ?",
                           (s["copy"],)).fetchone() == cached


def test_async_import_returns_the_same_report(client, app, db_conn, make_model_file, add_pending):
    path, sha = make_model_file("loras/async.safetensors", os.urandom(3 * 1024 * 1024))
    pid = add_pending(path)
    response = client.post(IMPORT, json={"id": [pid, 999], "async": True})
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    assert response.headers["Location"].endswith(f"/api/jobs/{job_id}")
    get_state(app).jobs.wait(job_id, timeout=30)
    job = client.get(f"/api/jobs/{job_id}").get_json()
    assert job["state"] == "succeeded" and job["status_code"] == 207
    assert job["result"] == {"total": 2, "success": [pid], "conflict": [], "ignored": [],
                             "deleted": [], "failed": [{"id": 999, "error": "Pending model not found"}]}
    assert job["progress"]["files_done"] == job["progress"]["files_total"] == 2
    assert job["progress"]["bytes_done"] == job["progress"]["bytes_total"] == 3 * 1024 * 1024
    assert _model(db_conn, sha) is not None


def test_async_via_query_string(client, app, make_model_file, add_pending):
    pid = add_pending(make_model_file("loras/q.safetensors")[0])
    response = client.post(f"{IMPORT}?async=1", json={"id": [pid]})
    assert response.status_code == 202
    job = get_state(app).jobs.wait(response.get_json()["job_id"], timeout=30)
    assert job.result["success"] == [pid]


@pytest.mark.parametrize("body, message", [
    (b"{not json", "Invalid JSON body"),
    (b"[1, 2]", "The JSON body must be an object"),
    (b"{}", "id must be a non-empty array"),
    (b'{"id": []}', "id must be a non-empty array"),
    (b'{"id": 5}', "id must be a non-empty array"),
    (b'{"id": null}', "id must be a non-empty array"),
    (b'{"id": [1], "conflict_strategy": "replace"}', "conflict_strategy must be one of"),
    (b'{"id": [1], "conflict_strategy": 3}', "conflict_strategy must be one of"),
    (b'{"id": [1], "strategy": "merge"}', "strategy is not a known field"),
    (b'{"id": [1], "async": "yes"}', "async must be true or false"),
])
def test_bad_requests(client, db_conn, body, message):
    response = client.post(IMPORT, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(message)


def test_wrong_content_type_is_415(client):
    assert client.post(IMPORT, data="id=1", content_type="text/plain").status_code == 415


class CancelAfterFirstItem(Job):
    """A job whose owner presses cancel right after the first item is done."""

    def advance(self, *, files=0, bytes_=0, message=None):
        super().advance(files=files, bytes_=bytes_, message=message)
        if self.files_done >= 1:
            self._cancel.set()


def test_cancel_between_items_keeps_the_done_part(app, db_conn, make_model_file, add_pending):
    first_path, first_sha = make_model_file("loras/c1.safetensors")
    second_path, second_sha = make_model_file("loras/c2.safetensors")
    first, second = add_pending(first_path), add_pending(second_path)
    job = CancelAfterFirstItem(id="t", kind="import_models")
    with pytest.raises(JobCancelled) as info:
        promote_pending(db_conn, [first, second], None, get_state(app).images, job)
    assert info.value.status_code == 207
    assert info.value.result["success"] == [first] and info.value.result["total"] == 2
    assert _model(db_conn, first_sha) is not None and _model(db_conn, second_sha) is None
    assert _pending_ids(db_conn) == [second]


def test_a_set_written_by_a_promotion_killed_before_its_commit_is_gone_after_restart(
        client, app, app_config, db_conn, make_model_file, add_pending):
    """The state a SIGKILL between the set write and the commit leaves (tests/test_crash.py kills
    for real): announced in the journal, set on disk, no model. A restart removes the set; the
    retry adds the picture once."""
    path, sha = make_model_file("loras/k.safetensors")
    images = get_state(app).images
    image_name = images.save_pending_image("k.png", png_bytes("green"))
    pid = add_pending(path, meta={"images": [image_name]})
    tiers = images.process(sha, png_bytes("green"))
    image_journal.announce(db_conn, sha, picture_digest(tiers))
    images.add_processed(sha, tiers)
    assert images.count(sha) == 1 and _model(db_conn, sha) is None

    restarted = create_app(app_config)
    again = get_state(restarted).images
    assert again.count(sha) == 0  # no set for a model that is neither in the library nor pending
    assert db_conn.execute("SELECT COUNT(*) FROM image_writes").fetchone()[0] == 0
    assert _import(restarted.test_client(), [pid])["success"] == [pid]
    assert again.count(sha) == 1
    assert db_conn.execute("SELECT COUNT(*) FROM image_writes").fetchone()[0] == 0


def _announced_and_written(db_conn, images, sha, data):
    """What a promotion leaves when the database goes away between its set write and its commit:
    the undo cannot reach the journal either, so the announcement and the set both stay."""
    tiers = images.process(sha, data)
    image_journal.announce(db_conn, sha, picture_digest(tiers))
    images.add_processed(sha, tiers)


def test_a_retry_after_a_lost_database_keeps_its_picture_across_a_restart(
        client, app, app_config, db_conn, make_model_file, add_pending):
    """t10 (hostile test): the retry finds the picture already there and adds none; the failed
    attempt's announcement must go with the retry's commit, or the next start removes the
    picture of the model just imported."""
    path, sha = make_model_file("loras/lost.safetensors")
    images = get_state(app).images
    image_name = images.save_pending_image("lost.png", png_bytes("purple"))
    pid = add_pending(path, meta={"images": [image_name]})
    _announced_and_written(db_conn, images, sha, png_bytes("purple"))

    assert _import(client, [pid])["success"] == [pid]  # the database is back: the user retries
    assert images.count(sha) == 1
    assert db_conn.execute("SELECT COUNT(*) FROM image_writes").fetchone()[0] == 0
    restarted = create_app(app_config)
    assert get_state(restarted).images.count(sha) == 1
    assert _model(db_conn, sha) is not None


def test_start_up_recovery_keeps_an_announced_picture_of_a_model_in_the_library(
        app, app_config, db_conn, make_model_file, add_model):
    """The commit reached the database but its answer did not (or another machine imported the
    model with this picture since): the announcement is stale, the model is there, and its
    picture must stay."""
    path, sha = make_model_file("loras/kept.safetensors")
    images = get_state(app).images
    _announced_and_written(db_conn, images, sha, png_bytes("orange"))
    add_model(sha, str(path))

    restarted = create_app(app_config)
    assert get_state(restarted).images.count(sha) == 1
    assert db_conn.execute("SELECT COUNT(*) FROM image_writes").fetchone()[0] == 0


def test_a_picture_already_in_the_sets_is_not_added_again(client, app, db_conn, make_model_file,
                                                          add_pending, add_model):
    path, sha = make_model_file("loras/d.safetensors")
    images = get_state(app).images
    images.add_image(sha, png_bytes("blue"))  # e.g. promoted once, then the row came back
    add_model(sha, str(path))
    image_name = images.save_pending_image("d.png", png_bytes("blue"))
    pid = add_pending(path, meta={"images": [image_name]})
    assert _import(client, [pid], "merge")["success"] == [pid]
    assert images.count(sha) == 1


def test_a_pending_picture_already_in_the_library_is_not_left_behind(client, app, db_conn, add_model,
                                                                     make_model_file, add_pending):
    """The same picture is not added twice, and its pending original is still removed with its row
    (it used to stay in pending/ forever: nothing refers to it any more)."""
    data = os.urandom(256)
    old, sha = make_model_file("checkpoints/a.safetensors", data)
    add_model(sha, str(old), size_bytes=len(data))
    images = get_state(app).images
    images.add_image(sha, png_bytes("blue"))
    copy, _ = make_model_file("checkpoints/copy/a.safetensors", data)
    image_name = images.save_pending_image("same.png", png_bytes("blue"))
    pid = add_pending(copy, meta={"images": [image_name]})
    assert _import(client, [pid], "override")["success"] == [pid]
    assert images.count(sha) == 1
    assert images.pending_image_path(image_name) is None
