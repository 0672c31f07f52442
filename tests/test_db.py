"""The database layer: pragmas, transactions, schema upgrades, backups, newer schemas refused."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from hikaze_manager import create_app
from hikaze_manager.db import connect, connection, sqlite_uri, transaction
from hikaze_manager.db import upgrades

REFERENCE_DDL = """
CREATE TABLE models(sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, name TEXT, type TEXT,
                    size_bytes INTEGER, created_at INTEGER, meta_json TEXT);
CREATE INDEX idx_models_path ON models(path);
CREATE TABLE tags(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL);
CREATE TABLE model_tags(model_hash TEXT, tag_id INTEGER, PRIMARY KEY(model_hash, tag_id),
  FOREIGN KEY(model_hash) REFERENCES models(sha256) ON DELETE CASCADE,
  FOREIGN KEY(tag_id) REFERENCES tags(id) ON DELETE CASCADE);
CREATE TABLE pending_model_tags(model_id INTEGER, tag_id INTEGER, PRIMARY KEY(model_id, tag_id),
  FOREIGN KEY(model_id) REFERENCES pending_import(id) ON DELETE CASCADE,
  FOREIGN KEY(tag_id) REFERENCES tags(id) ON DELETE CASCADE);
CREATE TABLE pending_import(id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, sha256 TEXT, name TEXT,
                            type TEXT, size_bytes INTEGER, created_at INTEGER, meta_json TEXT);
CREATE TABLE db_meta(key TEXT PRIMARY KEY, value TEXT);
"""
SHA_A = "c2e686823489ced2017f6059b8b239318b6364f6dcd835d0a519105a1eadd6e4"
SHA_B = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def make_reference_data_folder(data_dir: Path) -> Path:
    """A Hikaze Model Manager 2 data folder as the reference leaves it (rollback journal, v0)."""
    data_dir.mkdir(parents=True)
    db_path = data_dir / "hikaze_model_manager.db"
    conn = sqlite3.connect(db_path)
    conn.executescript(REFERENCE_DDL)
    conn.executescript(f"""
        INSERT INTO db_meta VALUES ('db_version', '2'), ('tags_id_max', '4');
        INSERT INTO tags(id, name) VALUES (1, 'nsfw'), (2, 'NSFW'), (3, 'anime'), (4, ' Style ');
        INSERT INTO models VALUES ('{SHA_A}', '/m/checkpoints/a.safetensors', 'A', 'checkpoints',
            6938040682, 1700000000000,
            '{{"description": "desc A", "community_links": "https://civitai.com/x", "images_count": 1,
              "prompts": {{"positive": "pos", "negative": "neg"}}}}');
        INSERT INTO models VALUES ('{SHA_B}', '/m/loras/b.safetensors', '', 'lora', 5, 1700000000001, NULL);
        INSERT INTO model_tags VALUES ('{SHA_A}', 1), ('{SHA_A}', 2), ('{SHA_A}', 3), ('{SHA_B}', 2);
        INSERT INTO pending_import VALUES (7, '/m/loras/p.safetensors', '', 'p.safetensors', 'loras', 9,
            1700000000002, '{{"description": "", "community_links": "", "images": ["/media/model_7_1_p.png"],
            "prompts": {{"positive": "pp", "negative": ""}}}}');
        INSERT INTO pending_model_tags VALUES (7, 2), (7, 4);
    """)
    conn.commit()
    conn.close()
    images = data_dir / "images"
    (images / "pending").mkdir(parents=True)
    (images / f"{SHA_A}_0_high.webp").write_bytes(b"RIFF")
    return db_path


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_connection_pragmas(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "d")})
    with connection(app.config["DATABASE"]) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert upgrades.user_version(conn) == upgrades.CURRENT_VERSION


def test_transaction_rolls_back_everything_on_error(tmp_path):
    with connection(tmp_path / "t.db") as conn:
        conn.execute("CREATE TABLE t(x INTEGER)")
        with pytest.raises(RuntimeError):
            with transaction(conn):
                conn.execute("INSERT INTO t VALUES (1)")
                with transaction(conn):  # nested: a savepoint
                    conn.execute("INSERT INTO t VALUES (2)")
                raise RuntimeError("boom")
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
        assert not conn.in_transaction


def test_transaction_takes_the_write_lock_up_front(tmp_path):
    path = tmp_path / "t.db"
    with connection(path) as first, connection(path) as second:
        first.execute("CREATE TABLE t(x INTEGER)")
        second.execute("PRAGMA busy_timeout = 50")
        with transaction(first):
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                second.execute("BEGIN IMMEDIATE")


def test_sqlite_uri_survives_special_characters(tmp_path):
    folder = tmp_path / "we?ird #100%"
    folder.mkdir()
    with connection(folder / "x.db") as conn:
        conn.execute("CREATE TABLE t(x)")
    assert (folder / "x.db").is_file()
    assert "%3F" in sqlite_uri(folder / "x.db") and "%23" in sqlite_uri(folder / "x.db")


def test_reference_data_folder_is_backed_up_and_upgraded_in_place(tmp_path):
    data_dir = tmp_path / "data"
    db_path = make_reference_data_folder(data_dir)
    original_bytes = db_path.read_bytes()

    app = create_app({"TESTING": True, "DATA_DIR": str(data_dir),
                      "MODEL_TYPES": {"checkpoints": [], "loras": []}})
    assert Path(app.config["DATABASE"]) == db_path

    backups = list((data_dir / "backups").glob("*.db"))
    assert len(backups) == 1
    pristine = tmp_path / "pristine.db"
    pristine.write_bytes(original_bytes)
    assert _dump(backups[0]) == _dump(pristine)  # the backup is the database as it was
    with sqlite3.connect(backups[0]) as backup:
        assert backup.execute("PRAGMA user_version").fetchone()[0] == 0
    backup.close()

    client = app.test_client()
    record = client.get(f"/api/models/{SHA_A}").get_json()
    assert record["meta_json"] == {"description": "desc A", "community_links": "https://civitai.com/x",
                                   "images_count": 1, "prompts": {"positive": "pos", "negative": "neg"}}
    # 'nsfw' and 'NSFW' were one tag all along: merged into the first spelling, links kept.
    assert record["tags"] == [{"id": 3, "name": "anime"}, {"id": 1, "name": "nsfw"}]
    assert client.get("/api/tags").get_json()["tags"] == [
        {"id": 3, "name": "anime"}, {"id": 1, "name": "nsfw"}, {"id": 4, "name": "Style"}]
    others = client.get("/api/models?type=others").get_json()["models"]
    assert [(m["sha256"], m["tags"]) for m in others] == [(SHA_B, [{"id": 1, "name": "nsfw"}])]

    with connection(db_path) as conn:
        assert upgrades.user_version(conn) == upgrades.CURRENT_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        pending = conn.execute("SELECT * FROM pending_import").fetchall()
        assert [(r["id"], r["path"]) for r in pending] == [(7, "/m/loras/p.safetensors")]
        assert json.loads(pending[0]["meta_json"])["images"] == ["/media/model_7_1_p.png"]
        assert sorted(r[0] for r in conn.execute("SELECT tag_id FROM pending_model_tags")) == [1, 4]
        assert dict(conn.execute("SELECT key, value FROM db_meta").fetchall())["db_version"] == "2"


def test_tag_spellings_that_differ_in_spaces_or_normalisation_are_merged(tmp_path):
    data_dir = tmp_path / "data"
    db_path = make_reference_data_folder(data_dir)
    conn = sqlite3.connect(db_path)
    conn.executescript(f"""
        INSERT INTO tags(id, name) VALUES (5, 'anime  style'), (6, 'anime style'),
                                          (7, 'Café'), (8, 'café');
        INSERT INTO model_tags VALUES ('{SHA_A}', 6), ('{SHA_B}', 5), ('{SHA_B}', 8);
    """)
    conn.commit()
    conn.close()
    client = create_app({"TESTING": True, "DATA_DIR": str(data_dir)}).test_client()
    tags = {t["id"]: t["name"] for t in client.get("/api/tags").get_json()["tags"]}
    assert tags[5] == "anime style" and 6 not in tags
    assert tags[7] == "Café" and 8 not in tags
    assert {t["id"] for t in client.get(f"/api/models/{SHA_A}").get_json()["tags"]} >= {5}
    assert {t["id"] for t in client.get(f"/api/models/{SHA_B}").get_json()["tags"]} >= {5, 7}


def test_second_start_does_not_back_up_again(tmp_path):
    data_dir = tmp_path / "data"
    make_reference_data_folder(data_dir)
    create_app({"TESTING": True, "DATA_DIR": str(data_dir)})
    create_app({"TESTING": True, "DATA_DIR": str(data_dir)})
    assert len(list((data_dir / "backups").glob("*.db"))) == 1


def test_fresh_database_needs_no_backup(tmp_path):
    create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data")})
    assert not (tmp_path / "data" / "backups").exists()


def test_failed_upgrade_step_leaves_the_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "x.db"
    with connection(path) as conn:
        upgrades.apply(conn, tmp_path / "b")

    def broken(conn):
        conn.execute("CREATE TABLE half_done(x)")
        raise sqlite3.OperationalError("step failed")

    monkeypatch.setattr(upgrades, "UPGRADES", [*upgrades.UPGRADES, broken])
    monkeypatch.setattr(upgrades, "CURRENT_VERSION", len(upgrades.UPGRADES))
    with connection(path) as conn:
        with pytest.raises(sqlite3.OperationalError):
            upgrades.apply(conn, tmp_path / "b")
        assert upgrades.user_version(conn) == upgrades.CURRENT_VERSION - 1
        assert conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    assert len(list((tmp_path / "b").glob("*.db"))) == 1


def test_newer_database_is_read_only_with_a_reason(tmp_path, caplog):
    data_dir = tmp_path / "data"
    app = create_app({"TESTING": True, "DATA_DIR": str(data_dir)})
    with connection(app.config["DATABASE"]) as conn:
        conn.execute("INSERT INTO tags(name, name_key) VALUES ('kept', 'kept')")
        conn.execute(f"PRAGMA user_version = {upgrades.CURRENT_VERSION + 5}")
    before = Path(app.config["DATABASE"]).read_bytes()

    newer = create_app({"TESTING": True, "DATA_DIR": str(data_dir)})
    assert "newer" in caplog.text
    client = newer.test_client()
    assert client.get("/api/tags").get_json() == {"tags": [{"id": 1, "name": "kept"}]}
    response = client.post("/api/tags_add", json={"newtags": ["new"]})
    assert response.status_code == 503
    assert "newer" in response.get_json()["error"]
    response = client.patch(f"/api/models/{'a' * 64}", json={"name": "x"})
    assert response.status_code == 503
    assert Path(app.config["DATABASE"]).read_bytes() == before  # not a byte written
    with connection(app.config["DATABASE"]) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM tags")] == ["kept"]
        assert upgrades.user_version(conn) == upgrades.CURRENT_VERSION + 5
    assert not (data_dir / "backups").exists()


def test_request_connection_is_released_and_reused_by_the_thread(app, db_conn):
    """Teardown rolls back what a request left open; the thread's next request gets the same connection."""
    from flask import g

    from hikaze_manager.db import get_db

    with app.test_request_context("/"):
        conn = get_db()
        assert get_db() is conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO tags(name, name_key) VALUES ('left', 'left')")
        app.do_teardown_appcontext()
        assert "db" not in g
        assert not conn.in_transaction
    assert db_conn.execute("SELECT COUNT(*) FROM tags").fetchone()[0] == 0
    with app.test_request_context("/"):
        assert get_db() is conn
        assert conn.row_factory is sqlite3.Row


def test_request_connection_follows_a_replaced_database_file(app, tmp_path):
    from hikaze_manager.db import get_db

    database = Path(app.config["DATABASE"])
    with app.test_request_context("/"):
        old = get_db()
        app.do_teardown_appcontext()
    replacement = tmp_path / "replacement.db"
    with connection(database) as conn:
        conn.execute("INSERT INTO tags(name, name_key) VALUES ('new', 'new')")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute(f"VACUUM INTO '{replacement}'")
    os.replace(replacement, database)
    with app.test_request_context("/"):
        conn = get_db()
        assert conn is not old
        assert [r[0] for r in conn.execute("SELECT name FROM tags")] == ["new"]
    with pytest.raises(sqlite3.ProgrammingError):
        old.execute("SELECT 1")


def test_connect_read_only_refuses_writes(tmp_path):
    path = tmp_path / "r.db"
    with connection(path) as conn:
        conn.execute("CREATE TABLE t(x)")
    conn = connect(path, read_only=True)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO t VALUES (1)")
    finally:
        conn.close()


def test_a_v2_folder_keeps_its_pending_rows_tags_and_indexes_and_never_reuses_an_id(tmp_path):
    data_dir = tmp_path / "data"
    db_path = make_reference_data_folder(data_dir)
    app = create_app({"TESTING": True, "DATA_DIR": str(data_dir),
                      "MODEL_TYPES": {"checkpoints": [], "loras": []}})
    with connection(db_path) as conn:
        sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'pending_import'").fetchone()[0]
        assert "AUTOINCREMENT" in sql.upper()
        rows = [dict(r) for r in conn.execute("SELECT * FROM pending_import")]
        assert [(r["id"], r["name"], r["size_bytes"]) for r in rows] == [(7, "p.safetensors", 9)]
        links = conn.execute("SELECT model_id, tag_id FROM pending_model_tags ORDER BY tag_id")
        assert [tuple(r) for r in links] == [(7, 1), (7, 4)]  # 'NSFW' (2) merged into 'nsfw' (1)
        indexes = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'pending_import'")}
        assert "idx_pending_created" in indexes
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.execute("DELETE FROM pending_import WHERE id = 7")  # promoted, say
        new_id = conn.execute("INSERT INTO pending_import(path) VALUES ('/m/x.pt')").lastrowid
        assert new_id == 8
        # A cascade still works on the rebuilt table.
        conn.execute("INSERT INTO pending_model_tags VALUES (?, 1)", (new_id,))
        conn.execute("DELETE FROM pending_import WHERE id = ?", (new_id,))
        assert conn.execute("SELECT COUNT(*) FROM pending_model_tags").fetchone()[0] == 0
    assert app.test_client().get("/api/migration/pending_models").status_code == 200


def test_pending_rebuild_keeps_columns_and_triggers_other_steps_added(tmp_path):
    with connection(tmp_path / "x.db") as conn:
        step = upgrades._pending_ids_never_reused_and_image_journal
        for earlier in upgrades.UPGRADES[: upgrades.UPGRADES.index(step)]:
            earlier(conn)
        conn.execute("ALTER TABLE pending_import ADD COLUMN extra TEXT DEFAULT 'x'")
        conn.execute("CREATE TABLE audit(n INTEGER)")
        conn.execute("CREATE TRIGGER pending_audit AFTER INSERT ON pending_import"
                     " BEGIN INSERT INTO audit VALUES (NEW.id); END")
        conn.execute("INSERT INTO pending_import(id, path, extra) VALUES (3, '/a', 'kept')")
        step(conn)
        assert [tuple(r) for r in conn.execute("SELECT id, path, extra FROM pending_import")] == [
            (3, "/a", "kept")]
        conn.execute("DELETE FROM pending_import")
        conn.execute("INSERT INTO pending_import(path) VALUES ('/b')")
        assert [r[0] for r in conn.execute("SELECT n FROM audit")] == [3, 4]
