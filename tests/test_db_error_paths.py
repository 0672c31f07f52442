"""Database failures inside a batch fail one item on both stores: promotion and the v1 migration
caught only sqlite3's exceptions, so on PostgreSQL the same failure was a 500 for the whole batch
(and a statement failing inside a transaction there spoils every later one until rolled back)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from legacy_v1 import sha256_of

from hikaze_manager.db import transaction
from hikaze_manager.services import promotion
from hikaze_manager.state import get_state
from metadata_support import write_safetensors

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

IMPORT = "/api/migration/import_models"


def _pending_ids(db_conn) -> dict[str, int]:
    return {path.rsplit("/", 1)[-1]: pid
            for pid, path in db_conn.execute("SELECT id, path FROM pending_import")}


def test_a_constraint_failure_fails_its_item_and_the_batch_goes_on(client, db_conn, models_root):
    loras = models_root / "loras"
    sha_a, _ = write_safetensors(loras / "a.safetensors", {"ss_output_name": "a"})
    (loras / "a.metadata.json").write_text(json.dumps({"model_name": "A", "tags": ["Foo"]}))
    sha_b, _ = write_safetensors(loras / "b.safetensors", {"ss_output_name": "b"})
    assert client.post("/api/scan", json={}).get_json()["added"] == 2
    ids = _pending_ids(db_conn)
    # Another program on the library adds a tag as Hikaze Model Manager 2 does: without the
    # name_key this version looks tags up by, so promoting a's "Foo" hits tags' UNIQUE(name).
    with transaction(db_conn):
        db_conn.execute("INSERT INTO tags(name) VALUES ('Foo')")
    response = client.post(IMPORT, json={"id": [ids["a.safetensors"], ids["b.safetensors"]]})
    assert response.status_code == 207, response.get_data(as_text=True)
    report = response.get_json()
    assert report["success"] == [ids["b.safetensors"]]
    assert [f["id"] for f in report["failed"]] == [ids["a.safetensors"]]
    assert report["failed"][0]["error"].startswith("Database error: ")
    assert "INSERT" not in report["failed"][0]["error"]
    models = {row[0] for row in db_conn.execute("SELECT sha256 FROM models")}
    assert models == {sha_b}  # a's item was rolled back whole: still pending, no model
    assert list(_pending_ids(db_conn)) == ["a.safetensors"]
    assert client.get(f"/api/models/{sha_b}").status_code == 200


def _short_lock_wait(conn, store_kind: str) -> None:
    if store_kind == "postgres":
        conn.execute("SET lock_timeout = '200ms'")
    else:
        conn.execute("PRAGMA busy_timeout = 200")


def test_a_locked_library_fails_a_delete_item_and_the_connection_stays_usable(
        app, client, db_conn, add_model, models_root, store_kind):
    data = b"same model bytes" * 64
    (models_root / "checkpoints" / "c.safetensors").write_bytes(data)
    (models_root / "loras" / "c.safetensors").write_bytes(data)
    sha = sha256_of(data)
    add_model(sha, str(models_root / "checkpoints" / "c.safetensors"), name="C")
    client.post("/api/scan", json={})
    pending_id = _pending_ids(db_conn)["c.safetensors"]
    state = get_state(app)
    with state.store.connection() as conn:
        first = promotion.promote_pending(conn, [pending_id], None, state.images)
        assert [c["pending"]["id"] for c in first["conflict"]] == [pending_id]  # hash now cached
        _short_lock_wait(conn, store_kind)
        with transaction(db_conn):  # another writer holds the library's write lock
            locked = promotion.promote_pending(conn, [pending_id, pending_id], "delete",
                                               state.images)
        assert [f["id"] for f in locked["failed"]] == [pending_id, pending_id]
        assert all(f["error"].startswith("Database error: ") for f in locked["failed"])
        assert _pending_ids(db_conn) == {"c.safetensors": pending_id}
        again = promotion.promote_pending(conn, [pending_id], "delete", state.images)
        assert again["deleted"] == [pending_id]
    assert _pending_ids(db_conn) == {}


def _v1_without_constraints(path, rows) -> None:
    """A v1 file whose models table has lost its keys (the reader needs only the columns)."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE models (id INTEGER, path TEXT, name TEXT, type TEXT, size_bytes INTEGER,"
        " hash_hex TEXT, created_at INTEGER, extra_json TEXT);"
        "CREATE TABLE tags (id INTEGER, name TEXT); CREATE TABLE model_tags (model_id, tag_id);")
    conn.executemany("INSERT INTO models VALUES (?, ?, ?, 'loras', 1, ?, 1, NULL)", rows)
    conn.commit()
    conn.close()


def test_a_duplicate_v1_row_is_one_error_and_the_rest_is_migrated(client, db_conn, tmp_path):
    sha_a, sha_b, sha_c = (sha256_of(x) for x in (b"a", b"b", b"c"))
    v1 = tmp_path / "v1.sqlite3"
    # Ids 1 twice with one path: the second is a duplicate of what legacy_imports remembers.
    _v1_without_constraints(v1, [(1, "/m/loras/a.safetensors", "A", sha_a),
                                 (1, "/m/loras/a.safetensors", "A again", sha_b),
                                 (2, "/m/loras/c.safetensors", "C", sha_c)])
    response = client.post("/api/migration/migrate_legacy_db", json={"legacy_db_path": str(v1)})
    assert response.status_code == 200, response.get_data(as_text=True)
    report = response.get_json()
    assert report["status"] == "partial"
    assert (report["db_migration"]["migrated"], report["db_migration"]["errors"]) == (2, 1)
    assert any(p["problem"].startswith("not migrated: ") for p in report["problems"])
    models = {row[0] for row in db_conn.execute("SELECT sha256 FROM models")}
    assert models == {sha_a, sha_c}  # the duplicate's savepoint undid its model too
    assert db_conn.execute("SELECT COUNT(*) FROM legacy_imports").fetchone()[0] == 2
