"""A model whose path is longer than any btree entry PostgreSQL accepts (about 2.7 kB) is scanned,
promoted, read, moved and rescanned on both stores, as SQLite always allowed; an existing shared
library is upgraded to the indexes that allow it when a server starts."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

import psycopg
import pytest

from hikaze_manager.db.stores import PostgresStore, machine_schema

pytestmark = pytest.mark.both_stores  # the API tests run on SQLite and on PostgreSQL

LEVELS = 15  # 15 folders of 200 characters: a path of about 3,100 bytes, each name < 255


def long_folder(root: Path, tag: str) -> Path:
    """A new folder ~3,000 bytes below ``root``; random names, so PostgreSQL cannot compress them
    under its index limit."""
    folder = root
    for level in range(LEVELS):
        folder = folder / f"{tag}{level:02d}-{secrets.token_hex(100)}"[:200]
    folder.mkdir(parents=True)
    return folder


def test_a_model_with_a_3100_byte_path_goes_through_scan_promotion_and_a_path_change(
        client, db_conn, models_root):
    data = os.urandom(8192)
    first = long_folder(models_root / "checkpoints", "a") / "model.safetensors"
    first.write_bytes(data)
    assert len(os.fsencode(str(first))) > 3100
    scan = client.get("/api/scan")
    assert scan.status_code == 200, scan.get_json()
    report = scan.get_json()
    assert (report["status"], report["added"], report["errors"]) == ("success", 1, 0)
    rows = [tuple(r) for r in db_conn.execute("SELECT id, path FROM pending_import")]
    assert [path for _, path in rows] == [str(first)]
    pid = rows[0][0]

    promoted = client.post("/api/migration/import_models", json={"id": [pid]})
    assert promoted.status_code == 207
    assert promoted.get_json()["success"] == [pid], promoted.get_json()
    sha = db_conn.execute("SELECT sha256 FROM file_hashes WHERE path = ?", (str(first),)).fetchone()[0]
    assert db_conn.execute("SELECT path FROM models WHERE sha256 = ?", (sha,)).fetchone()[0] == str(first)
    assert db_conn.execute("SELECT COUNT(*) FROM pending_import").fetchone()[0] == 0

    record = client.get(f"/api/models/{sha}")
    assert record.status_code == 200 and record.get_json()["path"] == str(first)
    listed = client.get("/api/models?type=checkpoints").get_json()["models"]
    assert [(m["sha256"], m["path"]) for m in listed] == [(sha, str(first))]

    second = long_folder(models_root / "checkpoints", "b") / "moved.safetensors"
    second.write_bytes(data)
    patched = client.patch(f"/api/models/{sha}", json={"path": str(second)})
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["path"] == str(second)
    assert db_conn.execute("SELECT path FROM models WHERE sha256 = ?", (sha,)).fetchone()[0] == str(second)

    first.unlink()  # the model moves again: a rescan relinks it by its (long) path
    third = long_folder(models_root / "checkpoints", "c") / "again.safetensors"
    second.rename(third)
    rescan = client.get("/api/scan")
    assert rescan.status_code == 200, rescan.get_json()
    assert (rescan.get_json()["relinked"], rescan.get_json()["errors"]) == (1, 0)
    assert db_conn.execute("SELECT path FROM models WHERE sha256 = ?", (sha,)).fetchone()[0] == str(third)
    hashed = {r[0] for r in db_conn.execute("SELECT path FROM file_hashes WHERE sha256 = ?", (sha,))}
    assert str(first) in hashed


# --- the upgrade of a shared library made before long paths were allowed -----------------------

def _to_old_indexes(url: str, schemas: list[str]) -> None:
    """Put back what pg_schema.sql made before: btree entries over the raw paths."""
    with psycopg.connect(url, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(
                f'DROP INDEX "{schema}".pending_import_path_md5; DROP INDEX "{schema}".idx_pending_path;'
                f'ALTER TABLE "{schema}".pending_import ADD CONSTRAINT pending_import_path_key UNIQUE (path);'
                f'DROP INDEX "{schema}".file_hashes_path_md5; DROP INDEX "{schema}".idx_file_hashes_path;'
                f'ALTER TABLE "{schema}".file_hashes ADD PRIMARY KEY (path);'
                f'DROP INDEX "{schema}".legacy_imports_key; DROP INDEX "{schema}".idx_legacy_imports_source;'
                f'ALTER TABLE "{schema}".legacy_imports ADD PRIMARY KEY (source, legacy_id, legacy_path);')
        conn.execute(
            "DROP INDEX hikaze.idx_model_paths_path_hash;"
            "CREATE INDEX idx_model_paths_path ON hikaze.model_paths(machine, path);"
            "UPDATE hikaze.schema_version SET value = 1")


def _indexes(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT schemaname, tablename, indexdef FROM pg_indexes WHERE schemaname"
                            " NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3").fetchall()


def test_an_old_shared_library_is_upgraded_by_two_machines_starting_at_once(postgres_url):
    stores = [PostgresStore(postgres_url, name) for name in ("desk", "gpu box")]
    for store in stores:
        assert store.prepare() is None
    _to_old_indexes(postgres_url, [store.schema for store in stores])
    results = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.prepare())) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [None, None]
    upgraded = _indexes(postgres_url)
    assert not [d for _, _, d in upgraded if "btree (path)" in d or "(machine, path)" in d
                or ", legacy_path)" in d]
    assert stores[0].prepare() is None  # every start runs it again: nothing changes
    assert _indexes(postgres_url) == upgraded

    long_path = "/models/" + "/".join(secrets.token_hex(100) for _ in range(LEVELS))
    sha = "a" * 64
    with stores[0].connection() as conn:
        for _ in range(2):  # the services' own statements, conflict targets translated
            conn.execute("INSERT INTO pending_import(path, sha256, name, type, size_bytes, created_at,"
                         " meta_json) VALUES (?, '', ?, ?, ?, ?, ?) ON CONFLICT(path) DO NOTHING",
                         (long_path, "m", "loras", 1, 1, "{}"))
            conn.execute("INSERT INTO file_hashes(path, size_bytes, mtime_ns, sha256, hashed_at, autov3)"
                         " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET"
                         " hashed_at = excluded.hashed_at", (long_path, 1, 1, sha, 2, None))
            conn.execute("INSERT INTO legacy_imports(source, legacy_id, legacy_path, kind,"
                         " imported_at) VALUES (?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
                         ("path:" + long_path, 1, long_path, 1))
        conn.execute("INSERT INTO models(sha256, path, name) VALUES (?, ?, 'm')", (sha, long_path))
        assert conn.execute("SELECT COUNT(*) FROM pending_import WHERE path = ?", (long_path,)).fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM file_hashes WHERE path = ?", (long_path,)).fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM legacy_imports WHERE source = ?",
                            ("path:" + long_path,)).fetchone()[0] == 1
        assert conn.execute("SELECT sha256 FROM models WHERE path = ?", (long_path,)).fetchone()[0] == sha
    assert machine_schema("desk") == stores[0].schema
