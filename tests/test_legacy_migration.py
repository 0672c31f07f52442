"""Legacy (v1) migration: service and API, on real v1 databases built by ``legacy_v1``."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from legacy_v1 import V1Library, file_state, image_bytes, make_realistic_library, sha256_of
from PIL import Image

from hikaze_manager import create_app
from hikaze_manager.db import connection
from hikaze_manager.services import image_journal, legacy, legacy_reader
from hikaze_manager.services.images import picture_digest
from hikaze_manager.services.jobs import Job, JobCancelled
from hikaze_manager.state import get_state

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

SHA_A = sha256_of(b"model a")
SHA_B = sha256_of(b"model b")
SHA_C = sha256_of(b"model c")
_DEFAULT = object()


@pytest.fixture
def make_v1(tmp_path):
    """Factory: a v1 library in ``<tmp>/custom_nodes/<name>/data`` (connections closed after)."""
    libraries = []

    def _make(name: str = "hikaze-model-manager", **kwargs) -> V1Library:
        lib = V1Library(tmp_path / "custom_nodes" / name / "data", **kwargs)
        libraries.append(lib)
        return lib

    yield _make
    for lib in libraries:
        lib.close()


@pytest.fixture
def realistic(tmp_path):
    lib = make_realistic_library(tmp_path / "custom_nodes" / "hikaze-model-manager" / "data")
    lib.close()
    return lib


def migrate(app, db_path, images_dir=_DEFAULT, job=None) -> dict:
    """Run stage 1 through the service, as the handler does."""
    state = get_state(app)
    db_path = Path(db_path)
    library = legacy_reader.read_legacy_library(db_path)
    if images_dir is _DEFAULT:
        images_dir = legacy_reader.resolve_images_dir(None, db_path)
    with state.store.connection() as conn:
        return legacy.migrate_legacy_library(
            conn, library, images_dir, state.images, state.paths.backups_dir, job
        )


def snapshot(app) -> dict:
    """Every row we own plus every image file (name and bytes), to compare runs."""
    state = get_state(app)
    with state.store.connection() as conn:
        tables = {
            table: sorted(tuple(row) for row in conn.execute(f"SELECT * FROM {table}"))
            for table in ("models", "tags", "model_tags", "pending_import",
                          "pending_model_tags", "legacy_imports")
            + (("image_tiers",) if state.images.images_dir is None else ())  # pictures as rows
        }
    files = {}
    for folder in (state.images.images_dir, state.paths.pending_dir):
        for entry in sorted(folder.iterdir()) if folder else ():
            if entry.is_file():
                files[str(entry)] = sha256_of(entry.read_bytes())
    return {"tables": tables, "files": files}


def tier_bytes(app, sha256: str, seq: int, tier: str) -> bytes:
    """One tier of a picture set as the API serves it (files or rows, whichever the store keeps)."""
    with app.test_client().get(f"/api/images/{sha256}_{seq}.webp?quality={tier}") as response:
        assert response.status_code == 200
        return response.get_data()


def model_row(conn, sha256):
    return conn.execute("SELECT * FROM models WHERE sha256 = ?", (sha256,)).fetchone()


def model_tag_names(conn, sha256) -> list[str]:
    rows = conn.execute(
        "SELECT t.name FROM model_tags mt JOIN tags t ON t.id = mt.tag_id "
        "WHERE mt.model_hash = ? ORDER BY t.name", (sha256,))
    return [row[0] for row in rows]


def pending_tag_names(conn, pending_id) -> list[str]:
    rows = conn.execute(
        "SELECT t.name FROM pending_model_tags pt JOIN tags t ON t.id = pt.tag_id "
        "WHERE pt.model_id = ? ORDER BY t.name", (pending_id,))
    return [row[0] for row in rows]


def pending_by_path(conn, path):
    return conn.execute("SELECT * FROM pending_import WHERE path = ?", (path,)).fetchone()


# --- a complete first run --------------------------------------------------------------------


def test_realistic_library_comes_over_completely(app, db_conn, realistic):
    report = migrate(app, realistic.db_path)

    hashed = [m for m in realistic.models if m.hash_hex]
    unhashed = [m for m in realistic.models if not m.hash_hex]
    assert hashed and unhashed
    assert report["status"] == "success"
    assert report["db_migration"]["migrated"] == len(hashed)
    assert report["db_migration"]["pending"] == len(unhashed)
    assert report["db_migration"]["errors"] == 0
    assert report["db_migration"]["images_processed"] == sum(1 for m in realistic.models if m.image_data)
    assert report["db_migration"]["image_errors"] == 0
    store = get_state(app).images
    for m in hashed:
        row = model_row(db_conn, m.hash_hex)
        assert (row["path"], row["name"], row["type"], row["size_bytes"], row["created_at"]) == (
            m.path, m.name, m.type, m.size_bytes, m.created_at)
        meta = json.loads(row["meta_json"])
        extra = m.extra if isinstance(m.extra, dict) else {}
        assert meta["description"] == extra.get("description", "")
        assert meta["community_links"] == extra.get("community_links", "")
        assert meta["prompts"] == {"positive": extra.get("prompts", {}).get("positive", ""),
                                   "negative": extra.get("prompts", {}).get("negative", "")}
        assert "images" not in meta and "images_count" not in meta
        assert model_tag_names(db_conn, m.hash_hex) == sorted(m.tags)
        assert store.count(m.hash_hex) == (1 if m.image_data else 0)
    for m in unhashed:
        row = pending_by_path(db_conn, m.path)
        assert (row["name"], row["type"], row["sha256"]) == (m.name, m.type, "")
        meta = json.loads(row["meta_json"])
        assert set(meta) == {"description", "community_links", "images", "prompts"}
        assert pending_tag_names(db_conn, row["id"]) == sorted(m.tags)
        if m.image_data:
            [url] = meta["images"]
            assert url.startswith("/media/")
            assert store.pending_image_path(url).read_bytes() == m.image_data
        else:
            assert meta["images"] == []


@pytest.mark.sqlite_only  # PostgreSQL libraries are backed up by their server
def test_backup_is_written_before_the_migration(app, make_v1, add_model, db_conn):
    add_model(SHA_C, "/m/c.safetensors", name="mine")
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A)
    lib.close()
    report = migrate(app, lib.db_path)
    backup = Path(report["backup_path"])
    assert backup.parent == get_state(app).paths.backups_dir and backup.is_file()
    with connection(backup) as conn:
        assert [r[0] for r in conn.execute("SELECT sha256 FROM models")] == [SHA_C]
    assert model_row(db_conn, SHA_A) is not None


# --- idempotence -------------------------------------------------------------------------------


def test_second_run_changes_nothing(app, realistic):
    migrate(app, realistic.db_path)
    before = snapshot(app)
    backups_dir = get_state(app).paths.backups_dir
    backups = sorted(backups_dir.iterdir()) if backups_dir.exists() else []

    report = migrate(app, realistic.db_path)

    assert snapshot(app) == before
    assert report["db_migration"] == {
        "migrated": 0, "pending": 0, "errors": 0, "images_processed": 0, "image_errors": 0,
        "images_missing": 0, "skipped": len(realistic.models)}
    assert report["backup_path"] is None
    assert (sorted(backups_dir.iterdir()) if backups_dir.exists() else []) == backups


def test_edits_between_runs_are_kept(app, client, db_conn, make_v1):
    lib = make_v1()
    png = image_bytes((40, 30))
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A, tags=["nsfw"], image=png,
                  extra={"description": "legacy desc"})
    b = lib.add_model("/m/loras/b.safetensors", tags=["anime"], extra={"description": "pend"})
    c = lib.add_model("/m/loras/c.safetensors", extra={"description": "to promote"})
    lib.close()
    migrate(app, lib.db_path)
    store = get_state(app).images
    assert store.count(SHA_A) == 1

    # The user edits in between: name, description, tags; deletes the picture; handles pending.
    response = client.patch(f"/api/models/{SHA_A}", json={
        "name": "My A", "meta_json": {"description": "mine"}, "tags": []})
    assert response.status_code == 200, response.get_json()
    store.delete_image(SHA_A, 0)
    pending_b = pending_by_path(db_conn, b.path)
    db_conn.execute("DELETE FROM pending_import WHERE id = ?", (pending_b["id"],))
    pending_c = pending_by_path(db_conn, c.path)
    db_conn.execute("DELETE FROM pending_import WHERE id = ?", (pending_c["id"],))
    db_conn.execute(  # c was promoted: it is a library entry now
        "INSERT INTO models(sha256, path, name, type, size_bytes, created_at, meta_json) "
        "VALUES (?, ?, 'c', 'loras', 1, 1, '{}')", (SHA_C, c.path))
    before = snapshot(app)

    report = migrate(app, lib.db_path)

    assert snapshot(app) == before
    assert report["db_migration"]["skipped"] == 3
    row = model_row(db_conn, SHA_A)
    assert row["name"] == "My A"
    assert json.loads(row["meta_json"])["description"] == "mine"
    assert model_tag_names(db_conn, SHA_A) == []
    assert store.count(SHA_A) == 0
    assert db_conn.execute("SELECT COUNT(*) FROM pending_import").fetchone()[0] == 0


def test_pending_row_is_served_promoted_and_never_comes_back(app, client, make_v1, make_model_file):
    model_path, sha = make_model_file("loras/real.safetensors")
    lib = make_v1()
    jpeg = image_bytes((40, 30), fmt="JPEG")
    row = lib.add_model(str(model_path), tags=["anime"], image=jpeg,
                        extra={"description": "from v1", "prompts": {"positive": "p"}})
    lib.close()
    migrate(app, lib.db_path)
    [pending] = client.get("/api/migration/pending_models").get_json()["models"]
    assert pending["id"] == row.id
    with client.get(f"/api/images/pending/{row.id}") as response:
        assert response.status_code == 200 and response.data == jpeg

    response = client.post("/api/migration/import_models", json={"id": [row.id]})
    assert response.status_code == 207 and response.get_json()["success"] == [row.id]
    record = client.get(f"/api/models/{sha}").get_json()
    assert record["meta_json"]["description"] == "from v1"
    assert record["meta_json"]["images_count"] == 1
    assert [t["name"] for t in record["tags"]] == ["anime", "loras"]

    report = migrate(app, lib.db_path)

    assert report["db_migration"]["skipped"] == 1
    assert client.get("/api/migration/pending_models").get_json()["models"] == []
    assert client.get(f"/api/models/{sha}").get_json() == record

def test_rows_added_to_v1_later_come_over_on_the_next_run(app, db_conn, make_v1):
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A)
    first = migrate(app, lib.db_path)
    lib.add_model("/m/checkpoints/b.safetensors", hash_hex=SHA_B, tags=["style"])
    lib.add_model("/m/loras/new.safetensors")
    lib.close()

    report = migrate(app, lib.db_path)

    assert first["db_migration"]["migrated"] == 1
    assert report["db_migration"]["migrated"] == 1
    assert report["db_migration"]["pending"] == 1
    assert report["db_migration"]["skipped"] == 1
    assert model_tag_names(db_conn, SHA_B) == ["checkpoints", "style"]


def test_moved_v1_file_is_recognised_as_the_same_library(app, tmp_path, realistic):
    migrate(app, realistic.db_path)
    before = snapshot(app)
    moved = tmp_path / "elsewhere" / "renamed.sqlite3"
    moved.parent.mkdir()
    shutil.copyfile(realistic.db_path, moved)

    report = migrate(app, moved, images_dir=realistic.images_dir)

    assert report["db_migration"]["skipped"] == len(realistic.models)
    assert snapshot(app) == before


def test_two_copies_of_one_v1_install_used_apart_both_come_over(app, db_conn, tmp_path, make_v1):
    """Copies share the library identity and hand out the same new ids to different models."""
    original = make_v1("v1-a")
    original.add_model("/m/loras/common.safetensors", hash_hex=SHA_A)
    original.close()
    copy_dir = tmp_path / "custom_nodes" / "v1-b" / "data"
    shutil.copytree(original.data_dir, copy_dir)
    with sqlite3.connect(original.db_path) as a, sqlite3.connect(copy_dir / "hikaze_mm.sqlite3") as b:
        a.execute("INSERT INTO models(path, name, type, size_bytes, hash_hex, created_at, extra_json)"
                  " VALUES ('/m/loras/A.safetensors', 'A.safetensors', 'loras', 1, ?, 1,"
                  " '{\"description\": \"from A\"}')", (SHA_B,))
        b.execute("INSERT INTO models(path, name, type, size_bytes, hash_hex, created_at, extra_json)"
                  " VALUES ('/m/loras/B.safetensors', 'B.safetensors', 'loras', 1, ?, 1,"
                  " '{\"description\": \"from B\"}')", (SHA_C,))
    a.close()
    b.close()
    first = migrate(app, original.db_path)
    second = migrate(app, copy_dir / "hikaze_mm.sqlite3")
    assert first["source"] == second["source"]
    assert first["db_migration"]["migrated"] == 2
    assert second["db_migration"]["migrated"] == 1  # B's own row; the shared one is skipped
    row = model_row(db_conn, SHA_C)
    assert row["path"] == "/m/loras/B.safetensors"
    assert json.loads(row["meta_json"])["description"] == "from B"
    assert migrate(app, original.db_path)["db_migration"]["migrated"] == 0
    assert migrate(app, copy_dir / "hikaze_mm.sqlite3")["db_migration"]["migrated"] == 0


def test_images_skipped_without_a_folder_are_added_by_a_later_run(app, db_conn, make_v1):
    lib = make_v1()
    png, jpeg = image_bytes((50, 40)), image_bytes((30, 20), fmt="JPEG")
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A, image=png)
    pend = lib.add_model("/m/loras/p.safetensors", image=jpeg)
    lib.close()

    first = migrate(app, lib.db_path, images_dir=None)
    after_first = snapshot(app)
    second = migrate(app, lib.db_path)
    third = migrate(app, lib.db_path)

    store = get_state(app).images
    assert first["db_migration"]["images_processed"] == 0
    assert second["db_migration"]["images_processed"] == 2
    assert second["db_migration"]["skipped"] == 2
    assert store.count(SHA_A) == 1
    [url] = json.loads(pending_by_path(db_conn, pend.path)["meta_json"])["images"]
    assert store.pending_image_path(url).read_bytes() == jpeg
    assert after_first["tables"]["models"] == snapshot(app)["tables"]["models"]
    assert third["db_migration"]["images_processed"] == 0


# --- matching what is already there -----------------------------------------------------------


def test_tags_are_matched_by_name_ignoring_case_never_by_id(app, client, db_conn, make_v1):
    response = client.post("/api/tags_add", json={"newtags": ["x1", "x2", "x3", "NSFW"]})
    ours = {t["name"]: t["id"] for t in response.get_json()["tags"]}
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A, tags=["nsfw", "Anime Style"])
    lib.close()

    migrate(app, lib.db_path)

    assert model_tag_names(db_conn, SHA_A) == ["Anime Style", "NSFW", "checkpoints"]
    tags = {r["name"]: r["id"] for r in db_conn.execute("SELECT id, name FROM tags")}
    assert tags["NSFW"] == ours["NSFW"]
    assert "nsfw" not in tags
    assert set(tags) == {"x1", "x2", "x3", "NSFW", "checkpoints", "Anime Style"}


def test_existing_library_entry_is_never_overwritten_only_blanks_filled(
    app, db_conn, make_v1, add_model
):
    meta = {"description": "", "community_links": "mine", "prompts": {"positive": "my pos"}}
    add_model(SHA_A, "/mine/a.safetensors", name="My A", type="", meta_json=json.dumps(meta))
    get_state(app).images.add_image(SHA_A, image_bytes((20, 20)))
    add_model(SHA_B, "/mine/b.safetensors", name="", type="loras")
    lib = make_v1()
    lib.add_model("/v1/checkpoints/a.safetensors", hash_hex=SHA_A, tags=["nsfw"],
                  image=image_bytes((30, 30)),
                  extra={"description": "legacy", "community_links": "legacy link",
                         "prompts": {"positive": "legacy pos", "negative": "legacy neg"}})
    lib.add_model("/v1/loras/b.safetensors", hash_hex=SHA_B, image=image_bytes((30, 30)))
    lib.close()

    report = migrate(app, lib.db_path)

    a = model_row(db_conn, SHA_A)
    assert (a["path"], a["name"], a["type"]) == ("/mine/a.safetensors", "My A", "checkpoints")
    assert json.loads(a["meta_json"]) == {
        "description": "legacy", "community_links": "mine",
        "prompts": {"positive": "my pos", "negative": "legacy neg"}}
    assert model_tag_names(db_conn, SHA_A) == ["checkpoints", "nsfw"]
    b = model_row(db_conn, SHA_B)
    assert (b["path"], b["name"], b["type"]) == ("/mine/b.safetensors", "b.safetensors", "loras")
    store = get_state(app).images
    assert store.count(SHA_A) == 1  # had a picture already: the v1 one is not added
    assert store.count(SHA_B) == 1  # had none: the v1 picture fills the gap
    assert report["db_migration"]["migrated"] == 2


def test_pending_ids_are_not_forced_and_known_paths_are_not_duplicated(
    app, db_conn, make_v1, add_model
):
    lib = make_v1()
    first = lib.add_model("/m/loras/one.safetensors", tags=["anime"])
    second = lib.add_model("/m/loras/two.safetensors", tags=["style"],
                           extra={"description": "from v1"})
    third = lib.add_model("/m/loras/three.safetensors", tags=["nsfw"])
    lib.close()
    # Our pending queue already uses v1's first id (another path) and knows the second path.
    db_conn.execute("INSERT INTO pending_import(id, path, name, meta_json) "
                    "VALUES (?, '/scan/x.safetensors', 'x', '{}')", (first.id,))
    db_conn.execute("INSERT INTO pending_import(id, path, name, type, meta_json) "
                    "VALUES (500, ?, 'two', 'loras', '{}')", (second.path,))
    add_model(SHA_A, third.path, name="three in library")

    report = migrate(app, lib.db_path)

    one = pending_by_path(db_conn, first.path)
    assert one["id"] != first.id
    assert pending_by_path(db_conn, "/scan/x.safetensors")["id"] == first.id
    assert pending_tag_names(db_conn, one["id"]) == ["anime", "loras"]
    two = db_conn.execute("SELECT * FROM pending_import WHERE path = ?", (second.path,)).fetchall()
    assert [r["id"] for r in two] == [500]
    assert json.loads(two[0]["meta_json"])["description"] == "from v1"
    assert pending_tag_names(db_conn, 500) == ["loras", "style"]
    assert pending_by_path(db_conn, third.path) is None
    assert model_row(db_conn, SHA_A)["name"] == "three in library"
    assert model_tag_names(db_conn, SHA_A) == ["loras", "nsfw"]
    assert db_conn.execute("SELECT COUNT(*) FROM pending_import").fetchone()[0] == 3
    assert report["db_migration"]["pending"] == 2 and report["db_migration"]["migrated"] == 1


def test_legacy_id_is_kept_as_pending_id_when_free(app, db_conn, make_v1):
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A)
    b = lib.add_model("/m/loras/b.safetensors")
    lib.close()
    migrate(app, lib.db_path)
    assert pending_by_path(db_conn, b.path)["id"] == b.id


# --- real-world mess -----------------------------------------------------------------------------


def test_messy_rows_are_tolerated_and_reported(app, db_conn, make_v1):
    lib = make_v1()
    rows = {
        "null": lib.add_model("/m/a/null.safetensors", hash_hex=sha256_of(b"1"), extra_raw="null"),
        "list": lib.add_model("/m/a/list.safetensors", hash_hex=sha256_of(b"2"), extra_raw="[1, 2]"),
        "bad": lib.add_model("/m/a/bad.safetensors", hash_hex=sha256_of(b"3"), extra_raw="{nope"),
        "prompt_str": lib.add_model("/m/a/ps.safetensors", hash_hex=sha256_of(b"4"),
                                    extra={"prompts": "just text", "description": 42}),
        "prompt_list": lib.add_model("/m/a/pl.safetensors", hash_hex=sha256_of(b"5"),
                                     extra={"prompts": ["x"], "params": {"steps": 20}}),
        "upper": lib.add_model("/m/a/upper.safetensors", hash_hex=SHA_A.upper()),
        "short": lib.add_model("/m/a/short.safetensors", hash_hex=SHA_B[:63]),
        "nonhex": lib.add_model("/m/a/nonhex.safetensors", hash_hex="z" * 64),
        "windows": lib.add_model("E:\\ComfyUI\\models\\loras\\win.safetensors", type="lora",
                                 hash_hex=SHA_C, extra={"description": "中文描述"}),
        "dup": lib.add_model("/m/b/dup.safetensors", hash_hex=SHA_C, tags=["nsfw"]),
    }
    lib.close()

    report = migrate(app, lib.db_path)

    assert report["status"] == "success"
    assert report["db_migration"]["migrated"] == 8
    assert report["db_migration"]["pending"] == 2
    problems = {(p["legacy_id"], p["problem"].split(" ")[0]) for p in report["problems"]}
    for key in ("list", "bad"):
        assert (rows[key].id, "extra_json") in problems
    assert (rows["prompt_str"].id, "prompts") in problems
    assert (rows["prompt_list"].id, "prompts") in problems
    assert (rows["short"].id, "hash_hex") in problems and (rows["nonhex"].id, "hash_hex") in problems
    assert all(p["path"] for p in report["problems"])
    meta = json.loads(model_row(db_conn, sha256_of(b"4"))["meta_json"])
    assert meta["prompts"]["positive"] == "just text" and meta["description"] == "42"
    assert model_row(db_conn, SHA_A)["path"] == "/m/a/upper.safetensors"
    assert db_conn.execute("SELECT COUNT(*) FROM models WHERE sha256 = ?",
                           (SHA_A.upper(),)).fetchone()[0] == 0
    for key in ("short", "nonhex"):
        assert pending_by_path(db_conn, rows[key].path)["sha256"] == ""
    win = model_row(db_conn, SHA_C)  # first of the duplicates wins, the second fills blanks
    assert win["path"] == "E:\\ComfyUI\\models\\loras\\win.safetensors"
    assert win["name"] == "win.safetensors"
    assert json.loads(win["meta_json"])["description"] == "中文描述"
    assert model_tag_names(db_conn, SHA_C) == ["b", "lora", "nsfw"]
    assert db_conn.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 7
    # both duplicate rows are remembered, so a second run skips both
    assert migrate(app, lib.db_path)["db_migration"]["skipped"] == len(rows)


def test_row_without_path_is_an_error_and_the_rest_still_comes_over(app, db_conn, make_v1):
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A)
    broken = lib.add_model("", type="loras", hash_hex=SHA_B, name="nameless")
    lib.close()

    report = migrate(app, lib.db_path)

    assert report["status"] == "partial"
    assert report["db_migration"]["errors"] == 1
    assert report["problems"] == [
        {"legacy_id": broken.id, "path": "", "problem": "the v1 row has no path; not migrated"}]
    assert model_row(db_conn, SHA_A) is not None and model_row(db_conn, SHA_B) is None


def test_a_cell_that_is_not_utf8_spoils_no_row(app, client, db_conn, make_v1):
    # v1 stored whatever bytes it was given: one name that is not UTF-8 refused the whole file
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A, name="alpha")
    odd = lib.add_model("/m/loras/b.safetensors", type="loras", hash_hex=SHA_B, name="beta")
    lib.conn.execute("UPDATE models SET name = CAST(X'6361ff' AS TEXT) WHERE id = ?", (odd.id,))
    lib.close()

    response = client.post("/api/migration/migrate_legacy_db",
                           json={"legacy_db_path": str(lib.db_path)})

    assert response.status_code == 200, response.get_json()
    assert model_row(db_conn, SHA_A)["name"] == "alpha"
    assert model_row(db_conn, SHA_B)["name"] == "ca\ufffd"  # the byte that is no text, marked


@pytest.mark.sqlite_only  # an SQLite trigger makes the library refuse a row
def test_a_row_the_database_refuses_is_isolated_and_its_image_removed(app, db_conn, make_v1):
    # Refused at the row's last statement: its model and tag links must go too (savepoint).
    db_conn.execute(
        "CREATE TRIGGER refuse_b BEFORE INSERT ON legacy_imports WHEN NEW.sha256 = '" + SHA_B + "' "
        "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END")
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A, image=image_bytes((20, 20)))
    lib.add_model("/m/checkpoints/b.safetensors", hash_hex=SHA_B, image=image_bytes((21, 20)))
    lib.close()

    report = migrate(app, lib.db_path)

    store = get_state(app).images
    assert report["db_migration"]["errors"] == 1 and report["db_migration"]["migrated"] == 1
    assert "refused by a test trigger" in report["problems"][0]["problem"]
    assert store.count(SHA_A) == 1 and store.count(SHA_B) == 0
    assert db_conn.execute("SELECT COUNT(*) FROM legacy_imports").fetchone()[0] == 1
    assert model_row(db_conn, SHA_B) is None and model_tag_names(db_conn, SHA_B) == []


@pytest.mark.parametrize("size, mode", [
    ((2400, 1800), "RGB"),   # above 2 MP: scaled down
    ((64, 64), "RGBA"),
    ((50, 40), "P"),
    ((2, 2), "RGB"),         # tiny: the reference broke on the low tier
])
def test_image_kinds_become_complete_webp_sets(app, make_v1, size, mode):
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A, image=image_bytes(size, mode))
    lib.close()

    report = migrate(app, lib.db_path)

    assert report["db_migration"]["images_processed"] == 1
    store = get_state(app).images
    assert store.count(SHA_A) == 1
    for tier in ("high", "medium", "low"):
        with Image.open(io.BytesIO(tier_bytes(app, SHA_A, 0, tier))) as im:
            assert im.format == "WEBP"
            assert im.width * im.height <= 2_000_000


def test_missing_and_broken_image_files_are_counted(app, db_conn, make_v1):
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A, image_missing=True)
    lib.add_model("/m/checkpoints/b.safetensors", hash_hex=SHA_B, image=b"not an image at all")
    lib.add_model("/m/loras/p.safetensors", image_missing=True)
    q = lib.add_model("/m/loras/q.safetensors", image=b"#!/bin/sh\necho not an image\n")
    lib.close()

    report = migrate(app, lib.db_path)

    assert report["db_migration"]["images_missing"] == 2
    assert report["db_migration"]["image_errors"] == 2
    assert report["db_migration"]["images_processed"] == 0
    assert report["db_migration"]["migrated"] == 2 and report["db_migration"]["pending"] == 2
    assert {p["problem"].split(" ")[0] for p in report["problems"]} == {"image"}
    assert get_state(app).images.count(SHA_B) == 0
    assert list(get_state(app).paths.pending_dir.iterdir()) == []
    assert json.loads(pending_by_path(db_conn, q.path)["meta_json"])["images"] == []


# --- all or nothing: cancel --------------------------------------------------------------------


class CancelAfter(Job):
    """A real job whose user presses cancel after ``cancel_after`` units of progress."""

    cancel_after = 0

    def advance(self, **kwargs):
        super().advance(**kwargs)
        if self.files_done >= self.cancel_after:
            self._cancel.set()


@pytest.mark.parametrize("phase", ["images", "database"])
def test_cancel_rolls_everything_back(app, make_v1, client, phase):
    client.post("/api/tags_add", json={"newtags": ["kept"]})
    before = snapshot(app)
    lib = make_v1()
    for i in range(4):
        lib.add_model(f"/m/checkpoints/{i}.safetensors", hash_hex=sha256_of(bytes([i])),
                      image=image_bytes((20 + i, 20)), tags=["nsfw"])
        lib.add_model(f"/m/loras/{i}.safetensors", image=image_bytes((30 + i, 20)))
    lib.close()
    job = CancelAfter(id="test", kind="legacy_migration")
    job.cancel_after = 2 if phase == "images" else 8 + 3

    with pytest.raises(JobCancelled):
        migrate(app, lib.db_path, job=job)

    after = snapshot(app)
    assert after == before
    assert job.files_total == 16
    assert job.files_done == job.cancel_after


def test_cancelling_the_job_through_the_api_leaves_nothing(app, client, make_v1):
    before = snapshot(app)
    lib = make_v1()
    for i in range(30):
        lib.add_model(f"/m/checkpoints/{i}.safetensors", hash_hex=sha256_of(bytes([i])),
                      image=image_bytes((900 + i, 900)))
    lib.close()
    response = client.post("/api/migration/migrate_legacy_db",
                           json={"legacy_db_path": str(lib.db_path), "async": True})
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    job = get_state(app).jobs.get(job_id)
    while job.files_done < 1 and job.state in ("queued", "running"):
        time.sleep(0.001)
    assert client.delete(f"/api/jobs/{job_id}").status_code == 202

    job = get_state(app).jobs.wait(job_id, timeout=60)

    assert job.state == "cancelled"
    assert snapshot(app) == before

def test_concurrent_migrations_are_refused(app, client, make_v1):
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A)
    lib.close()
    with legacy._RUN_LOCK:
        response = client.post("/api/migration/migrate_legacy_db",
                               json={"legacy_db_path": str(lib.db_path)})
    assert response.status_code == 409
    assert "already running" in response.get_json()["error"]


# --- read-only, always ---------------------------------------------------------------------------


@pytest.mark.parametrize("with_shm", [True, False])
def test_live_wal_database_in_a_read_only_odd_folder_is_read_and_untouched(
    app, client, db_conn, tmp_path, with_shm
):
    live = V1Library(tmp_path / "live")
    try:
        live.conn.execute("PRAGMA wal_autocheckpoint=0")
        live.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A, tags=["nsfw"],
                       image=image_bytes((20, 20)))
        live.add_model("/m/loras/b.safetensors")
        folder = tmp_path / "v1 ?#%20 [odd]" / "data"
        db_path = live.copy_live(folder, with_shm=with_shm)
    finally:
        live.close()
    wal = Path(f"{db_path}-wal")
    assert wal.stat().st_size > 0  # the rows are only in the WAL
    siblings = [db_path, wal, Path(f"{db_path}-shm")]
    state_before, listing = file_state(*siblings), sorted(os.listdir(folder))
    folder.chmod(0o555)  # as root this does not stop writes: the listing check below does
    try:
        response = client.post("/api/migration/migrate_legacy_db",
                               json={"legacy_db_path": str(db_path)})
    finally:
        folder.chmod(0o755)

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["db_migration"]["migrated"] == 1 and body["db_migration"]["pending"] == 1
    assert body["legacy_images_dir"] == str(folder / "images")
    assert model_tag_names(db_conn, SHA_A) == ["checkpoints", "nsfw"]
    assert file_state(*siblings) == state_before
    assert sorted(os.listdir(folder)) == listing


def test_candidates_probe_leaves_the_file_untouched(app, client, make_v1):
    app.config["LEGACY_SEARCH_DIRS"] = [str(make_v1().data_dir.parent.parent)]
    lib = make_v1("second")
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A)
    siblings = [lib.db_path, Path(f"{lib.db_path}-wal"), Path(f"{lib.db_path}-shm")]
    before = file_state(*siblings)
    response = client.get("/api/migration/legacy_candidates")
    assert response.status_code == 200
    assert file_state(*siblings) == before


# --- API -------------------------------------------------------------------------------------------


def test_api_runs_with_the_default_images_folder(client, db_conn, make_v1):
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A, image=image_bytes((30, 30)))
    lib.close()

    response = client.post("/api/migration/migrate_legacy_db",
                           json={"legacy_db_path": str(lib.db_path)})

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "success"
    assert body["db_migration"] == {"migrated": 1, "pending": 0, "errors": 0,
                                    "images_processed": 1, "image_errors": 0,
                                    "images_missing": 0, "skipped": 0}
    assert body["legacy_images_dir"] == str(lib.images_dir)
    assert body["problems"] == []
    assert get_state(client.application).images.count(SHA_A) == 1


def test_api_without_images_folder_migrates_no_images(client, make_v1):
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A, image=image_bytes((30, 30)))
    lib.close()
    shutil.rmtree(lib.images_dir)
    response = client.post("/api/migration/migrate_legacy_db",
                           json={"legacy_db_path": str(lib.db_path), "legacy_images_dir": None})
    body = response.get_json()
    assert response.status_code == 200
    assert body["legacy_images_dir"] is None
    assert body["db_migration"]["images_processed"] == 0
    assert body["db_migration"]["images_missing"] == 0


def test_api_async_runs_as_a_job(app, client, db_conn, realistic):
    response = client.post("/api/migration/migrate_legacy_db?async=1",
                           json={"legacy_db_path": str(realistic.db_path)})
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    job = get_state(app).jobs.wait(job_id, timeout=60)
    snap = client.get(f"/api/jobs/{job_id}").get_json()
    assert job.state == "succeeded", snap
    assert snap["status_code"] == 200
    assert snap["result"]["db_migration"]["migrated"] == sum(1 for m in realistic.models if m.hash_hex)
    assert snap["progress"]["files_done"] == snap["progress"]["files_total"] > 0

    again = client.post("/api/migration/migrate_legacy_db",
                        json={"legacy_db_path": str(realistic.db_path), "async": True})
    job = get_state(app).jobs.wait(again.get_json()["job_id"], timeout=60)
    assert job.result["db_migration"]["skipped"] == len(realistic.models)


def _not_v1(tmp_path: Path) -> Path:
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE something(x)")
    conn.close()
    return path


def _v2(tmp_path: Path) -> Path:
    path = tmp_path / "hikaze_model_manager.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE models(sha256 TEXT PRIMARY KEY, path TEXT)")
        conn.execute("CREATE TABLE pending_import(id INTEGER PRIMARY KEY, path TEXT)")
    conn.close()
    return path


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.sqlite3"
    path.write_text("hello, I am not a database")
    return path


@pytest.mark.parametrize("body, status, words", [
    ({}, 400, "legacy_db_path is required"),
    ({"legacy_db_path": ""}, 400, "legacy_db_path is required"),
    ({"legacy_db_path": 5}, 400, "legacy_db_path"),
    ({"legacy_db_path": "{tmp}/nope.sqlite3"}, 404, "not found"),
    ({"legacy_db_path": "{tmp}"}, 400, "is a folder"),
    ({"legacy_db_path": "{text}"}, 400, "Not an SQLite database"),
    ({"legacy_db_path": "{notv1}"}, 400, "no 'models' table"),
    ({"legacy_db_path": "{v2}"}, 400, "Hikaze Model Manager 2"),
    ({"legacy_db_path": "{v1}", "legacy_images_dir": "{tmp}/missing"}, 404, "images folder not found"),
    ({"legacy_db_path": "{v1}", "legacy_images_dir": "{text}"}, 400, "not a folder"),
    ({"legacy_db_path": "{v1}", "surprise": 1}, 400, "surprise"),
    ({"legacy_db_path": "{v1}", "async": "maybe"}, 400, "async"),
])
def test_api_errors(client, tmp_path, make_v1, body, status, words):
    lib = make_v1()
    lib.close()
    values = {"tmp": str(tmp_path), "text": str(_text_file(tmp_path)),
              "notv1": str(_not_v1(tmp_path)), "v2": str(_v2(tmp_path)), "v1": str(lib.db_path)}
    body = {k: v.format(**values) if isinstance(v, str) else v for k, v in body.items()}

    response = client.post("/api/migration/migrate_legacy_db", json=body)

    assert response.status_code == status
    assert words in response.get_json()["error"]


def test_api_refuses_non_json(client):
    response = client.post("/api/migration/migrate_legacy_db", data="legacy_db_path=/x",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


def test_fifo_is_not_a_regular_file(client, tmp_path):
    fifo = tmp_path / "pipe.sqlite3"
    os.mkfifo(fifo)
    response = client.post("/api/migration/migrate_legacy_db", json={"legacy_db_path": str(fifo)})
    assert response.status_code == 400
    assert "not a regular file" in response.get_json()["error"]


# --- discovery -------------------------------------------------------------------------------------


def test_candidates_lists_v1_databases_next_to_us_and_configured_ones(app, client, tmp_path, make_v1):
    lib = make_v1("hikaze-model-manager")
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A)
    lib.add_model("/m/loras/b.safetensors")
    lib.close()
    junk = tmp_path / "custom_nodes" / "other-node" / "data" / "hikaze_mm.sqlite3"
    junk.parent.mkdir(parents=True)
    junk.write_text("not sqlite")
    (tmp_path / "custom_nodes" / "empty-node").mkdir()
    elsewhere = V1Library(tmp_path / "far" / "away" / "data")  # found only when configured
    elsewhere.close()
    app.config["LEGACY_SEARCH_DIRS"] = [str(tmp_path / "custom_nodes")]
    app.config["LEGACY_DB_PATHS"] = [str(elsewhere.db_path)]

    response = client.get("/api/migration/legacy_candidates")

    assert response.status_code == 200
    found = {c["path"]: c for c in response.get_json()["candidates"]}
    assert set(found) == {str(lib.db_path), str(junk), str(elsewhere.db_path)}
    good = found[str(lib.db_path)]
    assert good["looks_like_v1"] is True and good["model_count"] == 2
    assert good["images_dir"] == str(lib.images_dir)
    assert good["size_bytes"] == lib.db_path.stat().st_size
    assert good["mtime"] == lib.db_path.stat().st_mtime_ns // 1_000_000
    assert good["migrated_rows"] == 0 and good["problem"] is None
    bad = found[str(junk)]
    assert bad["looks_like_v1"] is False and bad["model_count"] is None
    assert "Not an SQLite database" in bad["problem"]

    client.post("/api/migration/migrate_legacy_db", json={"legacy_db_path": str(lib.db_path)})
    found = {c["path"]: c for c in client.get("/api/migration/legacy_candidates").get_json()["candidates"]}
    assert found[str(lib.db_path)]["migrated_rows"] == 2


def test_a_picture_wider_than_webp_allows_is_scaled_and_the_rest_comes_over(app, make_v1):
    lib = make_v1()
    lib.add_model("/m/checkpoints/wide.safetensors", hash_hex=SHA_A, image=image_bytes((20000, 1)))
    lib.add_model("/m/checkpoints/b.safetensors", hash_hex=SHA_B, image=image_bytes((40, 30)))
    lib.close()
    report = migrate(app, lib.db_path)
    assert report["status"] == "success"
    assert report["db_migration"]["migrated"] == 2
    assert report["db_migration"]["images_processed"] == 2
    store = get_state(app).images
    assert store.count(SHA_A) == 1 and store.count(SHA_B) == 1
    with Image.open(io.BytesIO(tier_bytes(app, SHA_A, 0, "high"))) as im:
        assert im.size == (16383, 1)


def test_sets_of_a_migration_killed_before_its_commit_are_removed_and_the_retry_adds_once(
        app, app_config, db_conn, make_v1):
    """What a SIGKILL during the image phase leaves (the real kill is in tests/test_crash.py):
    sets announced and written, no transaction. A restart removes them; the re-run adds one each."""
    lib = make_v1()
    lib.add_model("/m/checkpoints/a.safetensors", hash_hex=SHA_A, image=image_bytes((40, 30)))
    lib.add_model("/m/checkpoints/b.safetensors", hash_hex=SHA_B, image=image_bytes((30, 40)))
    lib.close()
    store = get_state(app).images
    for sha, size in ((SHA_A, (40, 30)), (SHA_B, (30, 40))):
        tiers = store.process(sha, image_bytes(size))
        image_journal.announce(db_conn, sha, picture_digest(tiers))
        store.add_processed(sha, tiers)
    restarted = create_app(app_config)
    assert store.count(SHA_A) == store.count(SHA_B) == 0
    report = migrate(restarted, lib.db_path)
    assert report["db_migration"]["migrated"] == 2
    assert store.count(SHA_A) == store.count(SHA_B) == 1
    assert migrate(restarted, lib.db_path)["db_migration"]["migrated"] == 0
    assert store.count(SHA_A) == store.count(SHA_B) == 1
    assert db_conn.execute("SELECT COUNT(*) FROM image_writes").fetchone()[0] == 0
