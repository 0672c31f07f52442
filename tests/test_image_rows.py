"""DatabaseImageStore: picture sets as rows, on a real SQLite file and real Pillow images."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from hikaze_manager import create_app
from hikaze_manager.db import connect, connection, upgrades
from hikaze_manager.db.stores import PostgresStore, SqliteStore
from hikaze_manager.errors import NotFound
from hikaze_manager.services import batch, image_journal
from hikaze_manager.services.image_processing import TIERS, ImageError
from hikaze_manager.services.image_rows import IMAGE_TIERS_DDL, DatabaseImageStore, StoredTier
from hikaze_manager.services.images import picture_digest
from hikaze_manager.services.list_cache import ListCache
from hikaze_manager.state import get_state

SHA = "ab" * 32
OTHER = "cd" * 32


def picture(width: int = 120, height: int = 80, color: str = "red") -> bytes:
    """A real PNG; each width gives other pixels, hence other tier bytes."""
    im = Image.new("RGB", (width, height), color)
    im.paste("blue", (0, 0, width // 2, height // 2))
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    return buffer.getvalue()


def decoded_width(data: bytes) -> int:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im.size[0]


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A SQLite library at the current schema, plus the image_tiers table."""
    path = tmp_path / "library.db"
    conn = connect(path)
    try:
        upgrades.apply(conn, tmp_path / "backups")
        conn.execute(IMAGE_TIERS_DDL)
    finally:
        conn.close()
    return path


@pytest.fixture
def pg_library(postgres_url):
    """A PostgreSQL library (shared and machine schemas) in a fresh database of the test server."""
    library = PostgresStore(postgres_url, "test machine")
    assert library.prepare() is None
    yield library
    library.close()


@pytest.fixture(params=["sqlite", "postgres"])
def connect_rows(request, tmp_path) -> Callable:
    """``connect()`` of the store: the SQLite library file, or a PostgreSQL library."""
    if request.param == "sqlite":
        return functools.partial(connection, request.getfixturevalue("database"))
    return request.getfixturevalue("pg_library").connection


@pytest.fixture
def store(tmp_path: Path, connect_rows) -> DatabaseImageStore:
    pending = tmp_path / "pending"
    pending.mkdir()
    return DatabaseImageStore(connect_rows, pending)


def rows(connect_rows, sha: str = SHA) -> list[tuple]:
    """(position, tier, digest matches data) of every row of ``sha``, in key order."""
    with connect_rows() as conn:
        return [(r["position"], r["tier"], hashlib.sha256(r["data"]).hexdigest() == r["digest"])
                for r in conn.execute("SELECT * FROM image_tiers WHERE sha256 = ? "
                                      "ORDER BY position, tier", (sha,))]


def widths(store: DatabaseImageStore, sha: str = SHA) -> list[int]:
    """Width of the high tier of each set, in seq order."""
    return [decoded_width(store.open_tier(sha, seq, ("high",)).data)
            for seq in range(store.count(sha))]


def add_widths(store: DatabaseImageStore, *sizes: int, sha: str = SHA) -> list[int]:
    return [store.add_image(sha, picture(width)) for width in sizes]


# --- adding and counting --------------------------------------------------------------------


def test_sets_are_numbered_from_zero_with_three_tier_rows_each(store, connect_rows):
    assert store.count(SHA) == 0 and store.counts() == {}
    assert add_widths(store, 100, 110, 120) == [0, 1, 2]
    assert add_widths(store, 90, sha=OTHER) == [0]
    assert store.count(SHA) == 3 and store.count(SHA.upper()) == 3
    assert store.counts() == {SHA: 3, OTHER: 1}
    assert rows(connect_rows) == [(seq, tier, True) for seq in range(3)
                              for tier in sorted(TIERS)]
    assert widths(store) == [100, 110, 120]


def test_malformed_arguments_are_refused_before_any_write(store, connect_rows):
    assert store.count("xyz") == 0 and store.count(None) == 0
    with pytest.raises(ImageError):
        store.process("xyz", picture())
    with pytest.raises(ImageError):
        store.add_processed("XYZ", {tier: b"x" for tier in TIERS})
    with pytest.raises(ImageError):
        store.delete_image(SHA, -1)
    with pytest.raises(ImageError):
        store.open_tier(SHA, 0, ("ultra",))
    with pytest.raises(KeyError):  # a set without its low tier is never stored
        store.add_processed(SHA, {"high": b"h", "medium": b"m"})
    assert rows(connect_rows) == [] and store.find_picture("xyz", "a") == []


def test_first_only_adds_only_a_first_set(store, connect_rows):
    tiers = store.process(SHA, picture(100))
    assert store.add_processed(SHA, tiers, first_only=True) == 0
    again = store.process(SHA, picture(140))
    assert store.add_processed(SHA, again, first_only=True) is None
    assert store.count(SHA) == 1 and widths(store) == [100]
    assert len(rows(connect_rows)) == 3
    assert store.add_processed(SHA, again) == 1  # without first_only it is the next set


def all_at_once(work, items) -> list:
    """Run ``work(item)`` for every item in its own thread, started together; the results."""
    results, errors = [], []
    start = threading.Barrier(len(items))

    def run(item):
        start.wait()
        try:
            results.append(work(item))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_eight_concurrent_adds_get_positions_zero_to_seven(store):
    encoded = [store.process(SHA, picture(100 + i)) for i in range(8)]
    seqs = all_at_once(lambda tiers: store.add_processed(SHA, tiers), encoded)
    assert sorted(seqs) == list(range(8)) and store.count(SHA) == 8
    assert sorted(widths(store)) == [100 + i for i in range(8)]  # each picture exactly once


def test_concurrent_first_only_adds_store_one_set(store):
    encoded = [store.process(SHA, picture(100 + i)) for i in range(8)]
    results = all_at_once(lambda tiers: store.add_processed(SHA, tiers, first_only=True), encoded)
    assert results.count(0) == 1 and results.count(None) == 7
    assert store.count(SHA) == 1


# --- deleting and renumbering ---------------------------------------------------------------


def test_delete_in_the_middle_moves_later_sets_down_without_a_gap(store, connect_rows):
    add_widths(store, 100, 110, 120, 130, 140)
    later = store.open_tier(SHA, 3, ("medium",)).data
    store.delete_image(SHA, 2)
    assert store.count(SHA) == 4 and widths(store) == [100, 110, 130, 140]
    assert store.open_tier(SHA, 2, ("medium",)).data == later  # every tier moved with its set
    assert rows(connect_rows) == [(seq, tier, True) for seq in range(4) for tier in sorted(TIERS)]
    assert store.open_tier(SHA, 4, ("high",)) is None


def test_deleting_the_first_and_the_last_set(store, connect_rows):
    add_widths(store, 100, 110, 120, 130, 140, 150)
    with connect_rows() as conn:  # rewritten last set first: a table scan meets them in that order
        for seq in range(5, -1, -1):
            conn.execute("UPDATE image_tiers SET created_at = created_at + 1 WHERE position = ?",
                         (seq,))

    @contextmanager
    def scanning_tables():  # so no index scan happens to visit the rows in a harmless order
        with connect_rows() as conn:
            if getattr(conn, "dialect", "sqlite") == "postgres":
                for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
                    conn.execute(f"SET {setting} = off")
            yield conn

    store = DatabaseImageStore(scanning_tables, store.pending_dir)
    store.delete_image(SHA, 0)  # every remaining set moves: the primary key must not collide
    assert widths(store) == [110, 120, 130, 140, 150]
    store.delete_image(SHA, 4)
    assert widths(store) == [110, 120, 130, 140]


def test_deleting_a_missing_set_is_not_found_and_changes_nothing(store, connect_rows):
    add_widths(store, 100, 110)
    add_widths(store, 90, sha=OTHER)
    before = rows(connect_rows)
    with pytest.raises(NotFound):
        store.delete_image(SHA, 2)
    with pytest.raises(NotFound):
        store.delete_image("ef" * 32, 0)
    assert rows(connect_rows) == before and widths(store) == [100, 110]
    store.delete_image(SHA, 0)
    assert widths(store, OTHER) == [90]  # another model's sets are not renumbered


def test_a_renumbered_set_gets_a_newer_place_time(store):
    add_widths(store, 100, 110)
    moved_before = store.open_tier(SHA, 1, ("high",))
    store.delete_image(SHA, 0)
    moved = store.open_tier(SHA, 0, ("high",))
    assert moved.data == moved_before.data and moved.etag == moved_before.etag
    assert moved.modified >= moved_before.modified


# --- pictures by content ------------------------------------------------------------------


def test_find_and_remove_picture_by_digest(store):
    same = store.process(SHA, picture(100))
    other = store.process(SHA, picture(110))
    for tiers in (same, other, same, other):
        store.add_processed(SHA, tiers)
    assert store.find_picture(SHA, picture_digest(same)) == [0, 2]
    assert store.find_picture(SHA, "0" * 64) == []
    assert store.remove_picture(SHA, picture_digest(same)) == 2
    assert widths(store) == [110, 110]
    assert store.remove_picture(SHA, picture_digest(same)) == 0
    assert store.remove_picture("bad", picture_digest(same)) == 0


def test_recover_and_owners_name_every_model_with_a_set(store):
    assert store.recover() == set()
    add_widths(store, 100)
    add_widths(store, 100, 110, sha=OTHER)
    assert store.recover() == {SHA, OTHER} == store.owners()
    assert store.count(SHA) == 1 and store.count(OTHER) == 2  # recovery changes nothing


def test_remove_sets_deletes_every_set_of_the_given_models_only(store, connect_rows):
    add_widths(store, 100, 110, 120)
    add_widths(store, 90, sha=OTHER)
    assert store.remove_sets([SHA, SHA, "ef" * 32]) == 3
    assert rows(connect_rows) == [] and store.counts() == {OTHER: 1}
    assert store.remove_sets([SHA]) == 0


# --- reading tiers ------------------------------------------------------------------------


def test_open_tier_returns_the_stored_bytes_with_fallback(store, connect_rows):
    tiers = store.process(SHA, picture(300, 200))
    store.add_processed(SHA, tiers)
    for tier in TIERS:
        found = store.open_tier(SHA, 0, (tier,))
        assert isinstance(found, StoredTier)
        assert found.data == tiers[tier]
        assert found.etag == hashlib.sha256(tiers[tier]).hexdigest()
    with connect_rows() as conn:  # as a set written without its small tiers
        conn.execute("DELETE FROM image_tiers WHERE tier = 'low'")
    assert store.open_tier(SHA, 0, ("low", "medium", "high")).data == tiers["medium"]
    assert store.open_tier(SHA, 0, ("high", "medium")).data == tiers["high"]
    assert store.open_tier(SHA, 0, ("low",)) is None
    assert store.open_tier(SHA, 1, ("high",)) is None


def test_reads_may_reuse_a_connection_and_see_every_commit(store, connect_rows):
    used = []
    with connect_rows() as kept:
        @contextmanager
        def reuse():
            used.append(kept)
            yield kept

        reading = DatabaseImageStore(connect_rows, store.pending_dir, read_connect=reuse)
        assert reading.count(SHA) == 0
        tiers = reading.process(SHA, picture(100))
        assert reading.add_processed(SHA, tiers) == 0 and len(used) == 1  # writes: own connection
        assert not kept.in_transaction
        assert reading.count(SHA) == 1 and reading.counts() == {SHA: 1}
        assert reading.find_picture(SHA, picture_digest(tiers)) == [0]
        assert reading.open_tier(SHA, 0, ("low",)).data == tiers["low"]
        assert reading.owners() == {SHA}
        store.delete_image(SHA, 0)  # another store's commit is seen at once
        assert reading.count(SHA) == 0 and reading.open_tier(SHA, 0, ("high",)) is None
        assert len(used) == 8


def test_two_machines_share_pictures_through_the_database(postgres_url, tmp_path):
    machines = [PostgresStore(postgres_url, name) for name in ("desk", "gpu box")]
    for library in machines:
        assert library.prepare() is None
    desk, gpu = (DatabaseImageStore(library.connection, tmp_path / library.machine)
                 for library in machines)
    tiers = desk.process(SHA, picture(100))
    assert desk.add_processed(SHA, tiers) == 0
    assert gpu.count(SHA) == 1 and gpu.open_tier(SHA, 0, ("medium",)).data == tiers["medium"]
    encoded = [desk.process(SHA, picture(110 + i)) for i in range(16)]
    seqs = all_at_once(lambda job: job[0].add_processed(SHA, job[1]),
                       [((desk, gpu)[i % 2], t) for i, t in enumerate(encoded)])
    assert sorted(seqs) == list(range(1, 17)) and desk.count(SHA) == gpu.count(SHA) == 17
    gpu.delete_image(SHA, 0)
    assert sorted(widths(desk)) == [110 + i for i in range(16)]
    assert widths(desk) == widths(gpu)
    for library in machines:
        library.close()


# --- the rest of the app around it ----------------------------------------------------------


def test_pending_originals_stay_files(store):
    name = store.save_pending_image("../x/a.png", picture())
    assert name == "a.png" and (store.pending_dir / name).is_file()
    assert store.save_pending_image("a.png", picture()) == "a.png"  # same bytes reused
    assert store.save_pending_image("a.png", picture(90)) == "a-1.png"
    assert store.find_pending_image("a") == store.pending_dir / "a.png"
    assert store.delete_pending_image("a.png") and not (store.pending_dir / "a.png").exists()


def test_image_journal_undo_and_recover_remove_announced_sets(store, connect_rows):
    add_widths(store, 100)
    with connect_rows() as conn:
        tiers = store.process(SHA, picture(110))
        write_id = image_journal.announce(conn, SHA, picture_digest(tiers))
        store.add_processed(SHA, tiers)
        image_journal.undo(conn, store, [write_id])
        assert widths(store) == [100]
        tiers = store.process(SHA, picture(120))
        image_journal.announce(conn, SHA, picture_digest(tiers))
        store.add_processed(SHA, tiers)  # then a kill: the DB change never happened
        assert image_journal.recover(conn, store) == 1
        assert widths(store) == [100]
        assert conn.execute("SELECT COUNT(*) FROM image_writes").fetchone()[0] == 0


def test_orphan_sweep_removes_sets_of_models_not_in_the_library(store, connect_rows):
    add_widths(store, 100, 110)
    add_widths(store, 90, sha=OTHER)
    with connect_rows() as conn:
        conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
                     "VALUES (?, '/m/a.safetensors', 'a', 'checkpoints', 1, 0)", (SHA,))
        assert batch.remove_orphan_sets(conn, store, store.recover()) == 1
        assert batch.remove_orphan_sets(conn, store) == 0  # owners() from the store itself
    assert store.counts() == {SHA: 2}


@pytest.fixture
def watcher(request, connect_rows):
    """The library's version probe (what the list cache keys its bodies on) for this backend."""
    if request.node.callspec.params["connect_rows"] == "sqlite":
        yield SqliteStore(request.getfixturevalue("database")).watcher()
    else:
        probe = request.getfixturevalue("pg_library").watcher()
        yield probe
        probe.close()


def test_list_cache_version_follows_the_database_for_pictures(store, watcher):
    lists = ListCache(watcher, store)
    before = lists.version(uses_images=True)
    assert before is not None and lists.version(uses_images=True) == before
    add_widths(store, 100)
    assert lists.version(uses_images=True) != before
    with pytest.raises(NotFound):
        store.delete_image(SHA, 3)  # a rolled-back write changes nothing
    after_add = lists.version(uses_images=True)
    store.delete_image(SHA, 0)
    assert lists.version(uses_images=True) != after_add


@pytest.fixture(params=["sqlite", "postgres"])
def db_app(request, app_config):
    """An app whose image routes serve a DatabaseImageStore on the app's own library."""
    if request.param == "postgres":
        app_config["DATABASE_URL"] = request.getfixturevalue("postgres_url")
    app = create_app(app_config)
    state = get_state(app)
    with state.store.connection() as conn:
        if state.store.kind == "sqlite":  # PostgreSQL has it from its schema
            conn.execute(IMAGE_TIERS_DDL)
        conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
                     "VALUES (?, '/models/checkpoints/a.safetensors', 'a', 'checkpoints', 1, 0)",
                     (SHA,))
    images = DatabaseImageStore(state.store.connection, state.paths.pending_dir)
    lists = ListCache(state.store.watcher(), images)
    app.extensions["hikaze"] = dataclasses.replace(state, images=images, lists=lists)
    yield app
    for cache in (state.lists, lists):
        cache.close()
    if state.store.kind == "postgres":
        state.store.close()


@pytest.fixture
def db_client(db_app):
    return db_app.test_client()


def upload(client, width: int):
    response = client.post("/api/images/upload", content_type="multipart/form-data",
                           data={"sha256": SHA, "image": (io.BytesIO(picture(width)), "a.png")})
    assert response.status_code == 200, response.data
    return response.get_json()


def test_api_upload_serve_and_delete_from_rows(db_client, db_app):
    assert [upload(db_client, w)["seq"] for w in (100, 110, 120)] == [0, 1, 2]
    assert db_client.get(f"/api/images/get_img_count?sha256={SHA}").get_json() == {"count": 3}
    listed = db_client.get("/api/models?type=checkpoints").get_json()["models"]
    assert [m["images_count"] for m in listed if m["sha256"] == SHA] == [3]
    response = db_client.get(f"/api/images/{SHA}_1.webp?quality=low")
    stored = get_state(db_app).images.open_tier(SHA, 1, ("low",))
    assert response.status_code == 200 and response.data == stored.data
    assert response.headers["Content-Type"] == "image/webp"
    assert "no-cache" in response.headers["Cache-Control"]
    assert int(response.headers["Content-Length"]) == len(stored.data)
    assert response.headers["ETag"] == f'"{stored.etag}"' and response.headers["Last-Modified"]
    assert db_client.delete(f"/api/images/delete?sha256={SHA}&seq=0").status_code == 200
    assert decoded_width(db_client.get(f"/api/images/{SHA}_0.webp").data) == 110
    assert db_client.get(f"/api/images/{SHA}_2.webp").status_code == 404
    assert db_client.delete(f"/api/images/delete?sha256={SHA}&seq=5").status_code == 404
    assert not list(get_state(db_app).paths.images_dir.glob("*.webp"))  # nothing went to files


def test_api_conditional_range_and_head_from_rows(db_client):
    upload(db_client, 100)
    upload(db_client, 110)
    first = db_client.get(f"/api/images/{SHA}_0.webp")
    etag = first.headers["ETag"]
    again = db_client.get(f"/api/images/{SHA}_0.webp", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    since = db_client.get(f"/api/images/{SHA}_0.webp",
                          headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert since.status_code == 304
    part = db_client.get(f"/api/images/{SHA}_0.webp", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.data == first.data[:10]
    assert part.headers["Content-Range"] == f"bytes 0-9/{len(first.data)}"
    beyond = db_client.get(f"/api/images/{SHA}_0.webp", headers={"Range": "bytes=999999-"})
    assert beyond.status_code == 416 and beyond.get_json()["error"]
    head = db_client.head(f"/api/images/{SHA}_0.webp")
    assert head.status_code == 200 and head.data == b""
    assert db_client.delete(f"/api/images/delete?sha256={SHA}&seq=0").status_code == 200
    moved = db_client.get(f"/api/images/{SHA}_0.webp", headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["ETag"] != etag  # other bytes, no stale 304
    assert decoded_width(moved.data) == 110
