"""NUL (U+0000) on both stores: PostgreSQL text cannot hold it. Text read from files (safetensors
headers, sidecars, a v1 database) loses its NULs so an import still succeeds; a value the database
itself refuses is a 400 without SQL, never a 500. (Requests carrying NUL: test_input_hardening.)"""

from __future__ import annotations

import json
import sqlite3

import pytest
from legacy_v1 import V1Library, sha256_of

from hikaze_manager.db import get_db, transaction
from metadata_support import write_safetensors
from test_file_metadata_api import IMPORT, record, scan_and_promote

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL


def _no_nul(response) -> None:
    """No string or key of the JSON answer holds a NUL (``\\u0000`` inside a JSON text is fine)."""
    stack = [response.get_json()]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            assert "\x00" not in value
        elif isinstance(value, dict):
            assert not any("\x00" in key for key in value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def test_nul_in_a_header_and_in_sidecars_is_dropped_and_the_import_succeeds(
        client, db_conn, models_root, no_propagation):
    loras = models_root / "loras"
    sha, _ = write_safetensors(loras / "n.safetensors", {
        "modelspec.title": "Ti\x00tle", "k\x00ey": "v\x00", "modelspec.tags": "a\x00b,c",
        "ss_tag_frequency": json.dumps({"folder": {"t\x00ag": 3}})})
    (loras / "n.metadata.json").write_text(json.dumps(
        {"model_name": "LM\x00name", "tags": ["x\x00y"], "modelDescription": "d\x00"}))
    (loras / "n.md").write_bytes(b"# Na\x00me\n\nmore\x00text\n")
    report, promoted = scan_and_promote(client, db_conn)
    assert report["added"] == 1
    assert promoted["success"] == [1] and promoted["failed"] == []
    rec = record(client, sha)
    assert rec["name"] == "LMname"
    assert [t["name"] for t in rec["tags"]] == ["xy"]
    assert rec["meta_json"]["description"] == "d"
    assert rec["header_metadata"]["key"] == "v" and rec["header_metadata"]["modelspec.title"] == "Title"
    assert rec["training_tags"] == [{"tag": "tag", "count": 3}]
    _no_nul(client.get(f"/api/models/{sha}"))
    _no_nul(client.get("/api/models?type=loras"))


def test_a_pending_entry_scanned_with_nul_metadata_still_promotes(
        client, db_conn, models_root, no_propagation):
    """An entry an older version scanned: its stored file metadata still spells NUL (``\\u0000``)."""
    loras = models_root / "loras"
    sha, _ = write_safetensors(loras / "old.safetensors", {})
    client.post("/api/scan", json={})
    (pending_id, meta_text), = db_conn.execute("SELECT id, meta_json FROM pending_import").fetchall()
    meta = json.loads(meta_text)
    meta["file_metadata"]["sidecars"]["lora_manager"] = {
        "file": "old.metadata.json", "name": "Ol\x00d", "tags": ["o\x00ld"], "description": "x\x00"}
    with transaction(db_conn):
        db_conn.execute("UPDATE pending_import SET meta_json = ? WHERE id = ?",
                        (json.dumps(meta), pending_id))
    promoted = client.post(IMPORT, json={"id": [pending_id]})
    assert promoted.status_code == 207, promoted.get_data(as_text=True)
    assert promoted.get_json()["success"] == [pending_id]
    rec = record(client, sha)
    assert rec["name"] == "Old" and [t["name"] for t in rec["tags"]] == ["old"]
    _no_nul(client.get(f"/api/models/{sha}"))


def test_nul_in_a_v1_library_is_dropped_and_the_migration_succeeds(client, tmp_path, no_propagation):
    v1 = V1Library(tmp_path / "custom_nodes" / "hikaze-model-manager" / "data")
    sha = sha256_of(b"nul model")
    v1.add_model("/m/loras/a.safetensors", hash_hex=sha, name="Na\x00me", tags=["ni\x00ce"],
                 extra={"description": "d\x00", "prompts": "p\x00"})
    v1.add_model("/m/loras/b.safetensors", name="Pen\x00ding", extra={"community_links": "l\x00"})
    v1.close()
    response = client.post("/api/migration/migrate_legacy_db",
                           json={"legacy_db_path": str(v1.db_path)})
    assert response.status_code == 200, response.get_data(as_text=True)
    report = response.get_json()
    assert report["status"] == "success", report
    assert (report["db_migration"]["migrated"], report["db_migration"]["pending"]) == (1, 1)
    rec = record(client, sha)
    assert rec["name"] == "Name" and "nice" in [t["name"] for t in rec["tags"]]
    assert rec["meta_json"]["description"] == "d"
    assert rec["meta_json"]["prompts"]["positive"] == "p"
    pending = client.get("/api/migration/pending_models")
    assert "Pending" in pending.get_data(as_text=True)
    _no_nul(pending)
    _no_nul(client.get(f"/api/models/{sha}"))


def test_a_value_the_database_refuses_is_400_without_sql_and_rolled_back(
        app, client, db_conn, store_kind, no_propagation):
    """The net under the input guards: a driver DataError reaching the handler."""

    @app.post("/api/test/refused")
    def refused():
        conn = get_db()
        with transaction(conn):
            conn.execute("INSERT INTO tags(name, name_key) VALUES ('kept?', 'kept?')")
            if store_kind == "postgres":  # what psycopg raises for text holding NUL
                conn.execute("INSERT INTO tags(name, name_key) VALUES (?, 'x')", ("a\x00b",))
            else:  # SQLite's DataError: a value over the connection's length limit
                previous = conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 64)
                try:
                    conn.execute("INSERT INTO tags(name, name_key) VALUES (?, 'x')", ("y" * 100,))
                finally:
                    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, previous)
        return {}

    response = client.post("/api/test/refused")
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error.startswith("The database refused a value of the request: ")
    assert ("NUL" if store_kind == "postgres" else "too big") in error
    assert "INSERT" not in error and "tags" not in error
    assert db_conn.execute("SELECT COUNT(*) FROM tags").fetchone()[0] == 0
