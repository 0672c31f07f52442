"""List endpoints answer from a cached body with an ETag, 304 on If-None-Match, and are never stale."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pytest
from PIL import Image

from hikaze_manager import create_app
from hikaze_manager.state import get_state

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

LISTS = [
    "/api/models?type=checkpoints",
    "/api/models?type=others",
    "/api/migration/pending_models",
    "/api/tags",
    "/api/models/get_types",
]
SHA = "a" * 64


def png(color="red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, "PNG")
    return buffer.getvalue()


def settle_images(app) -> None:
    """Date the image folder back, as if its last change were long ago (the cacheable case)."""
    folder = get_state(app).paths.images_dir
    past = time.time() - 60
    os.utime(folder, (past, past))


def builds(app) -> int:
    return get_state(app).lists.builds


def names(client, model_type="checkpoints") -> list[str]:
    return [m["name"] for m in client.get(f"/api/models?type={model_type}").get_json()["models"]]


@pytest.fixture
def model(add_model):
    return add_model(SHA, "/m/a.safetensors", name="Alpha")


@pytest.mark.parametrize("url", LISTS)
def test_etag_and_304(client, app, model, url):
    settle_images(app)
    first = client.get(url)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    assert first.headers["Cache-Control"] == "no-cache"
    assert first.mimetype == "application/json"

    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    assert client.get(url, headers={"If-None-Match": f"W/{etag}"}).status_code == 304
    assert client.get(url, headers={"If-None-Match": "*"}).status_code == 304
    other = client.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.data == first.data


@pytest.mark.parametrize("url", LISTS)
def test_repeat_from_another_client_is_the_cached_body(app, model, url):
    settle_images(app)
    first = app.test_client().get(url)
    count = builds(app)
    second = app.test_client().get(url)
    assert second.status_code == 200
    assert second.data == first.data
    assert second.headers["ETag"] == first.headers["ETag"]
    assert builds(app) == count  # served from the cache, not built again


def test_payload_is_what_jsonify_writes(client, app, model, db_conn):
    db_conn.execute("UPDATE models SET name = 'Ünïcødé 模型' WHERE sha256 = ?", (SHA,))
    body = client.get("/api/models?type=checkpoints").data
    with app.app_context():
        from flask import jsonify

        expected = jsonify(json.loads(body)).data
    assert body == expected
    assert "模型".encode() in body


def test_cache_busting_parameters_share_one_entry(client, app, model):
    settle_images(app)
    client.get("/api/models?type=checkpoints")
    count = builds(app)
    response = client.get("/api/models?type=checkpoints&_=12345")
    assert response.status_code == 200 and builds(app) == count


def test_bad_query_is_400_and_never_cached(client):
    for _ in range(2):
        response = client.get("/api/models")
        assert response.status_code == 400 and "error" in response.get_json()
        assert "ETag" not in response.headers


def test_patch_is_visible_in_the_next_list(client, app, model):
    settle_images(app)
    etag = client.get("/api/models?type=checkpoints").headers["ETag"]
    assert client.patch(f"/api/models/{SHA}", json={"name": "Beta"}).status_code == 200
    response = client.get("/api/models?type=checkpoints", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    assert [m["name"] for m in response.get_json()["models"]] == ["Beta"]


def test_tags_add_and_tag_patch_are_visible_in_the_next_lists(client, app, model):
    settle_images(app)
    assert client.get("/api/tags").get_json() == {"tags": []}
    assert client.get("/api/models?type=checkpoints").get_json()["models"][0]["tags"] == []
    created = client.post("/api/tags_add", json={"newtags": ["style"]}).get_json()["tags"]
    assert client.get("/api/tags").get_json() == {"tags": created}
    assert client.patch(f"/api/models/{SHA}", json={"tags": [created[0]["id"]]}).status_code == 200
    assert client.get("/api/models?type=checkpoints").get_json()["models"][0]["tags"] == created


def test_image_upload_and_delete_are_visible_in_the_next_list(client, app, model):
    def count() -> int:
        return client.get("/api/models?type=checkpoints").get_json()["models"][0]["images_count"]

    settle_images(app)
    assert count() == 0
    upload = {"sha256": SHA, "image": (io.BytesIO(png()), "a.png")}
    assert client.post("/api/images/upload", data=upload,
                       content_type="multipart/form-data").status_code == 200
    assert count() == 1  # the folder changed just now: keyed on the counts themselves
    built = builds(app)
    assert count() == 1 and builds(app) == built
    settle_images(app)
    assert count() == 1
    hits_before = builds(app)
    assert count() == 1 and builds(app) == hits_before  # settled: cached again
    assert client.delete(f"/api/images/delete?sha256={SHA}&seq=0").status_code == 200
    assert count() == 0
    settle_images(app)
    assert count() == 0


@pytest.mark.sqlite_only  # picture files written beside the server
def test_image_written_by_another_process_is_seen(client, app, model):
    """A set that appears in the folder without going through this app (e.g. a second server)."""
    settle_images(app)
    assert client.get("/api/models?type=checkpoints").get_json()["models"][0]["images_count"] == 0
    folder = get_state(app).paths.images_dir
    for tier in ("low", "medium", "high"):
        (folder / f"{SHA}_0_{tier}.webp").write_bytes(b"RIFF")
    assert client.get("/api/models?type=checkpoints").get_json()["models"][0]["images_count"] == 1


def test_scan_and_import_are_visible_in_the_next_lists(client, app, make_model_file):
    settle_images(app)
    assert client.get("/api/migration/pending_models").get_json() == {"models": []}
    assert names(client) == []
    make_model_file("checkpoints/new.safetensors")
    assert client.post("/api/scan", json={}).status_code == 200
    pending = client.get("/api/migration/pending_models").get_json()["models"]
    assert [p["name"] for p in pending] == ["new.safetensors"]
    response = client.post("/api/migration/import_models", json={"id": [pending[0]["id"]]})
    assert response.status_code == 207
    assert client.get("/api/migration/pending_models").get_json() == {"models": []}
    assert names(client) == ["new.safetensors"]


def test_write_from_a_second_connection_is_visible(client, app, model, db_conn):
    settle_images(app)
    assert names(client) == ["Alpha"]
    db_conn.execute("UPDATE models SET name = 'Gamma' WHERE sha256 = ?", (SHA,))
    assert names(client) == ["Gamma"]
    db_conn.execute("INSERT INTO tags(name, name_key) VALUES ('x', 'x')")
    assert [t["name"] for t in client.get("/api/tags").get_json()["tags"]] == ["x"]
    db_conn.execute("UPDATE models SET type = 'loras' WHERE sha256 = ?", (SHA,))
    assert names(client) == [] and names(client, "loras") == ["Gamma"]


@pytest.mark.sqlite_only  # another process writes the SQLite file (two PostgreSQL servers: test_shared_library.py)
def test_write_from_another_process_is_visible(client, app, model):
    settle_images(app)
    assert names(client) == ["Alpha"]
    script = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "conn.execute(\"UPDATE models SET name = 'Delta'\")\n"
        "conn.execute(\"INSERT INTO pending_import(path, sha256, name, type, size_bytes, created_at,"
        " meta_json) VALUES ('/p/x.safetensors', '', 'P', 'loras', 1, 1, '{}')\")\n"
        "conn.commit()\n"
    )
    assert client.get("/api/migration/pending_models").get_json() == {"models": []}
    subprocess.run([sys.executable, "-c", script, app.config["DATABASE"]], check=True)
    assert names(client) == ["Delta"]
    assert [p["name"] for p in client.get("/api/migration/pending_models").get_json()["models"]] == ["P"]


@pytest.mark.sqlite_only  # data_version covers tables made outside our schema; on PostgreSQL prepare() puts the trigger on every table
def test_a_table_added_later_counts_as_a_write(client, app, model, db_conn):
    """The version covers every table, also ones added by later schema steps."""
    settle_images(app)
    etag = client.get("/api/tags").headers["ETag"]
    db_conn.execute("CREATE TABLE IF NOT EXISTS later_feature(x)")
    db_conn.execute("INSERT INTO later_feature VALUES (1)")
    count = builds(app)
    # The payload is the same, so is the content-based ETag, but it was rebuilt, not trusted.
    assert client.get("/api/tags", headers={"If-None-Match": etag}).status_code == 304
    assert builds(app) == count + 1


def test_configured_types_are_not_rebuilt_after_a_commit(client, app, model, db_conn):
    """Configured type names alone make the get_types body: a write to the library changes
    nothing in it, so it is not probed for (or built again)."""
    first = client.get("/api/models/get_types")
    count = builds(app)
    db_conn.execute("UPDATE models SET name = 'Gamma' WHERE sha256 = ?", (SHA,))
    again = client.get("/api/models/get_types")
    assert again.data == first.data and again.headers["ETag"] == first.headers["ETag"]
    assert builds(app) == count
    assert client.get("/api/models/get_types",
                      headers={"If-None-Match": first.headers["ETag"]}).status_code == 304


def test_types_read_from_the_library_follow_its_next_commit(app_config):
    """With no types configured, get_types lists the library's: a new one shows at once."""
    app_config["MODEL_TYPES"] = None
    app = create_app(app_config)
    client = app.test_client()
    try:
        assert client.get("/api/models/get_types").get_json() == {"types": []}
        with get_state(app).store.connection() as conn:
            conn.execute("INSERT INTO models(sha256, path, type) VALUES (?, '/x', 'vae')", (SHA,))
        assert client.get("/api/models/get_types").get_json() == {"types": ["vae"]}
    finally:
        get_state(app).lists.close()
        get_state(app).store.close()


def test_a_build_that_fails_leaves_nothing_behind(app, client):
    """A build that raises (the store went away, a 404) keeps no entry or lock: one per missing
    model asked for would pile up."""
    lists = get_state(app).lists

    def broken():
        raise RuntimeError("the store went away")

    with pytest.raises(RuntimeError):
        lists.get("tags", (), broken)
    assert lists._building == {}
    missing = f"/api/models/{'c' * 64}"
    for _ in range(3):
        assert client.get(missing).status_code == 404
    details = get_state(app).details
    assert details.builds == 0 and details._building == {}


def test_changed_type_names_are_visible_in_get_types(app_config, models_root, tmp_path):
    types = {"checkpoints": {"roots": [str(models_root / "checkpoints")]}}
    app = create_app({**app_config, "MODEL_TYPES": lambda: types})
    client = app.test_client()
    assert client.get("/api/models/get_types").get_json() == {"types": ["checkpoints"]}
    types["loras"] = {"roots": [str(models_root / "loras")]}
    get_state(app).model_types.refresh()
    assert client.get("/api/models/get_types").get_json() == {"types": ["checkpoints", "loras"]}


def test_start_up_does_not_scan(app_config, make_model_file, tmp_path):
    make_model_file("checkpoints/a.safetensors")
    make_model_file("loras/b.safetensors")
    app = create_app(app_config)
    client = app.test_client()
    assert client.get("/api/models?type=loras").get_json() == {"models": []}
    assert client.get("/api/migration/pending_models").get_json() == {"models": []}

    with get_state(app).store.connection() as conn:
        assert conn.execute("SELECT COUNT(*) FROM pending_import").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM file_hashes").fetchone()[0] == 0


def test_sql_written_list_is_byte_equal_to_the_python_shaping(app, add_model, db_conn):
    """services.list_bodies writes what jsonify(list_models(...)) writes, for awkward rows too."""
    from hikaze_manager.services import library, list_bodies
    from hikaze_manager.services.list_cache import serialize

    db_conn.executemany("INSERT INTO tags(name, name_key) VALUES (?, ?)",
                        [("zeta", "zeta"), ("Alpha \"q\"", "alpha \"q\""), ("中文", "中文"),
                         ("tab\there\x01", "tab\there\x01")])
    rows = [
        ("1" * 64, "C:\\models\\loras\\win name.safetensors", "", "loras", None, None),
        ("2" * 64, "/m/loras/sub/unix.safetensors", None, "loras", 5, 7),
        ("3" * 64, "noslash.ckpt", "", "loras", 1, 1),
        ("4" * 64, "/m/x.pt", "Ünïcødé \\ \"quoted\" \n line\u2028", "loras", 2**40, 1700000000000),
        ("5" * 64, "/m/y.pt", "beta", None, 3, 3),
        ("6" * 64, "/m/z.pt", "gamma", "", 3, 3),
        ("7" * 64, "/m/w.pt", "delta", "mystery", 3, 3),
    ]
    for sha, path, name, type_, size, created in rows:
        db_conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at, meta_json)"
                        " VALUES (?, ?, ?, ?, ?, ?, '{}')", (sha, path, name, type_, size, created))
    for tag_id in (4, 1, 3, 2):
        db_conn.execute("INSERT INTO model_tags VALUES (?, ?)", ("4" * 64, tag_id))
    db_conn.execute("INSERT INTO model_tags VALUES (?, 1)", ("1" * 64,))
    counts = {"4" * 64: 3, "1" * 64: 1}
    known = ["checkpoints", "loras"]
    for model_type in ("loras", "others", "checkpoints", "nothing"):
        expected = serialize({"models": library.list_models(db_conn, model_type, known, counts)})
        assert list_bodies.models_body(db_conn, model_type, known, counts) == expected
    loras = json.loads(list_bodies.models_body(db_conn, "loras", known, counts))["models"]
    assert [m["name"] for m in loras][:3] == [
        "unix.safetensors", "win name.safetensors", "noslash.ckpt"]  # ordered by path when unnamed
    tagged = next(m for m in loras if m["sha256"] == "4" * 64)
    assert [t["name"] for t in tagged["tags"]] == ["Alpha \"q\"", "tab\there\x01", "zeta", "中文"]
    assert tagged["images_count"] == 3


@pytest.mark.sqlite_only  # the picture folder (the shared store keeps pictures as rows)
def test_start_up_leaves_the_picture_folders_untouched_so_the_first_body_stays_valid(
        app_config, model, tmp_path):
    # A probe file made and removed at start-up would move images/' mtime, and the list cache
    # would then rebuild every list a few seconds after each start.
    from hikaze_manager.services.list_cache import RECENT, folder_state

    images = tmp_path / "data" / "images"
    past = time.time() - 60
    for folder in (images / "pending", images):
        os.utime(folder, (past, past))
    before = [os.stat(folder).st_mtime_ns for folder in (images, images / "pending")]
    app = create_app(app_config)
    assert [os.stat(folder).st_mtime_ns for folder in (images, images / "pending")] == before
    assert folder_state(images) is not RECENT
    client = app.test_client()
    first = client.get("/api/models?type=checkpoints")
    assert first.status_code == 200 and first.get_json()["models"]
    built = builds(app)
    assert client.get("/api/models?type=checkpoints").data == first.data
    assert builds(app) == built


@pytest.mark.sqlite_only  # temp files in images/
def test_start_up_sweeps_temp_files_before_it_serves(app_config, tmp_path):
    # One listing of images/ at start-up (recover) removes them before this run writes any.
    from hikaze_manager.services.files import TMP_PREFIX


    first = create_app(app_config)  # a library whose model owns the set below (orphan sets go)
    with get_state(first).store.connection() as conn:
        conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
                     "VALUES (?, '/m/a', 'a', 'checkpoints', 1, 1)", ("a" * 64,))
    images = tmp_path / "data" / "images"
    (images / "pending").mkdir(parents=True, exist_ok=True)
    leftovers = [images / f"{TMP_PREFIX}crashed.webp", images / "pending" / f"{TMP_PREFIX}crashed.png",
                 tmp_path / "data" / f"{TMP_PREFIX}types.json"]
    for path in leftovers:
        path.write_bytes(b"x")
    kept = images / f"{'a' * 64}_0_high.webp"
    kept.write_bytes(b"not swept")
    create_app(app_config)
    assert [p for p in leftovers if p.exists()] == []
    assert kept.read_bytes() == b"not swept"


def test_a_large_list_written_by_the_store_keeps_the_order_counts_and_tags(app, db_conn):
    """Thousands of random rows come out in list order, each with its own picture count and tags:
    what jsonify(list_models(...)) writes."""
    import random

    from hikaze_manager.db import transaction
    from hikaze_manager.services import library, list_bodies
    from hikaze_manager.services.list_cache import serialize

    rng = random.Random(7)
    with transaction(db_conn):
        db_conn.executemany("INSERT INTO tags(name, name_key) VALUES (?, ?)",
                            [(f"T{i}", f"t{i}") for i in range(40)])
        shas = [f"{i:064x}" for i in range(6000)]
        db_conn.executemany(
            "INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
            "VALUES (?, ?, ?, 'loras', ?, ?)",
            [(sha, f"/m/{rng.random()}.safetensors", rng.choice(["", None, f"N{rng.random()}"]),
              rng.randrange(10**12), i) for i, sha in enumerate(shas)])
        db_conn.executemany("INSERT INTO model_tags VALUES (?, ?)",
                            {(rng.choice(shas), rng.randrange(1, 41)) for _ in range(9000)})
    counts = {sha: rng.randrange(1, 9) for sha in rng.sample(shas, 2500)}
    expected = serialize({"models": library.list_models(db_conn, "loras", ["loras"], counts)})
    assert list_bodies.models_body(db_conn, "loras", ["loras"], counts) == expected
    assert len(json.loads(expected)["models"]) == 6000


@pytest.mark.parametrize("size", [1000, 9 * 1024 * 1024 + 1])
def test_the_validator_changes_with_any_byte_and_only_then(size):
    from hikaze_manager.services.list_cache import etag_of

    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    etag = etag_of(body)
    assert etag == etag_of(bytes(body))  # equal bodies (another build, another process) share it
    for at in (0, size // 2 - 1, size // 2, size - 1):  # both halves of a body hashed in two
        changed = bytearray(body)
        changed[at] ^= 1
        assert etag_of(bytes(changed)) != etag
    assert etag_of(body + b"\n") != etag


def test_a_big_cached_list_is_served_whole_through_waitress(app, db_conn):
    """A body over STREAM_FROM goes to waitress as a file to read: every byte, its length and its
    validator arrive, HEAD sends none of it, and a repeat with If-None-Match is a 304."""
    import http.client

    from hikaze_manager.db import transaction
    from hikaze_manager.handlers.cached import STREAM_FROM, json_response
    from hikaze_manager.server import start_server

    with transaction(db_conn):
        db_conn.executemany(
            "INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
            "VALUES (?, ?, ?, 'loras', 1, 1)",
            [(f"{i:064x}", f"/m/{i}.safetensors", f"model {i:05d} ünï", ) for i in range(3000)])
    settle_images(app)
    with app.test_request_context("/api/models?type=loras"):
        big, small = json_response(b"[1]" * STREAM_FROM, "e"), json_response(b"[1]", "e")
        assert not big.is_sequence and big.direct_passthrough  # a file to read, not a buffer to copy
        assert b"".join(big.response) == b"[1]" * STREAM_FROM and big.content_length == 3 * STREAM_FROM
        assert small.is_sequence
    handle = start_server(app, "127.0.0.1", 0, threads=2)
    try:
        def get(method="GET", headers=None):
            conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=30)
            try:
                conn.request(method, "/api/models?type=loras", headers=headers or {})
                response = conn.getresponse()
                return response.status, response.msg, response.read()
            finally:
                conn.close()

        status, headers, body = get()
        assert status == 200 and len(body) > STREAM_FROM
        assert int(headers["Content-Length"]) == len(body)
        assert headers["Content-Type"] == "application/json"
        models = json.loads(body)["models"]
        assert [m["name"] for m in models] == [f"model {i:05d} ünï" for i in range(3000)]
        again = get()  # from the cache this time
        assert again[0] == 200 and again[2] == body and again[1]["ETag"] == headers["ETag"]
        head = get("HEAD")
        assert head[0] == 200 and head[2] == b"" and head[1]["Content-Length"] == str(len(body))
        assert get(headers={"If-None-Match": headers["ETag"]})[0] == 304
    finally:
        handle.stop()
