"""Each model's tag list kept as JSON by triggers (``model_tag_lists``) stays exact after every
kind of write: API edits, tag administration, removals, raw SQL from another program, upgrades."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from hikaze_manager.db import connection, transaction, upgrades
from hikaze_manager.services import library, list_bodies
from hikaze_manager.services.list_cache import serialize

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

SHA = lambda i: hashlib.sha256(str(i).encode()).hexdigest()  # noqa: E731
KNOWN = ["checkpoints", "loras"]


def kept(conn) -> dict[str, list]:
    """The stored lists, parsed, by model."""
    return {sha: json.loads(tags) for sha, tags in conn.execute(
        "SELECT model_hash, tags FROM model_tag_lists")}


def recomputed(conn) -> dict[str, list]:
    """The lists as the links and tags say they are now, ordered by name key then id."""
    lists: dict[str, list] = {}
    for sha, tag_id, name in conn.execute(
            "SELECT mt.model_hash, t.id, t.name FROM model_tags mt JOIN tags t ON t.id = mt.tag_id "
            "ORDER BY mt.model_hash, t.name_key, t.id"):
        lists.setdefault(sha, []).append({"id": tag_id, "name": name})
    return lists


def assert_exact(conn) -> None:
    stored = {sha: tags for sha, tags in kept(conn).items() if tags}
    assert stored == recomputed(conn)
    for model_type in ("checkpoints", "loras", "others"):
        expected = serialize({"models": library.list_models(conn, model_type, KNOWN, {})})
        assert list_bodies.models_body(conn, model_type, KNOWN, {}) == expected


@pytest.fixture
def models(add_model, client, db_conn):
    shas = [add_model(SHA(i), f"/nowhere/m{i}.safetensors", name=f"m{i}",
                      type="loras" if i % 2 else "checkpoints") for i in range(6)]
    assert client.post("/api/tags_add", json={"newtags": ["zeta", "Alpha", "mid"]}).status_code == 200
    return shas


def tag_id(conn, name: str) -> int:
    return conn.execute("SELECT id FROM tags WHERE name = ?", (name,)).fetchone()[0]


def test_api_edits_keep_every_list_exact(client, db_conn, models):
    assert kept(db_conn) == {}
    r = client.post("/api/models/tags", json={"sha256": models, "add": ["zeta", "Alpha", "new"]})
    assert r.status_code == 200
    assert [t["name"] for t in kept(db_conn)[models[0]]] == ["Alpha", "new", "zeta"]
    assert_exact(db_conn)
    assert client.post("/api/models/tags", json={"sha256": models[:2], "remove": ["alpha"],
                                                 "add": ["mid"]}).status_code == 200
    assert [t["name"] for t in kept(db_conn)[models[1]]] == ["mid", "new", "zeta"]
    assert_exact(db_conn)
    assert client.patch(f"/api/models/{models[2]}", json={"tags": [tag_id(db_conn, "mid")]}
                        ).status_code == 200
    assert kept(db_conn)[models[2]] == [{"id": tag_id(db_conn, "mid"), "name": "mid"}]
    assert_exact(db_conn)
    assert client.patch(f"/api/models/{models[3]}", json={"tags": []}).status_code == 200
    assert models[3] not in kept(db_conn)  # no tags, no row
    assert_exact(db_conn)


def test_tag_rename_merge_and_delete_reach_every_tagged_model(client, db_conn, models):
    client.post("/api/models/tags", json={"sha256": models, "add": ["zeta", "mid"]})
    zeta = tag_id(db_conn, "zeta")
    r = client.post("/api/tags/rename", json={"id": zeta, "name": "Aardvark"})
    assert r.status_code == 200
    assert all(kept(db_conn)[s][0] == {"id": zeta, "name": "Aardvark"} for s in models)  # re-ordered
    assert_exact(db_conn)
    r = client.post("/api/tags/merge", json={"source": [zeta], "target": "Alpha"})
    assert r.status_code == 200
    assert [t["name"] for t in kept(db_conn)[models[0]]] == ["Alpha", "mid"]
    assert_exact(db_conn)
    r = client.post("/api/tags/delete", json={"id": [tag_id(db_conn, "mid")]})
    assert r.status_code == 200
    assert [t["name"] for t in kept(db_conn)[models[0]]] == ["Alpha"]
    assert_exact(db_conn)


def test_removed_models_leave_no_list(client, db_conn, models):
    client.post("/api/models/tags", json={"sha256": models, "add": ["mid"]})
    assert client.post("/api/models/remove", json={"sha256": models[:3]}).status_code == 200
    assert set(kept(db_conn)) == set(models[3:])
    assert_exact(db_conn)


@pytest.mark.sqlite_only  # raw SQLite statements, foreign keys switched off
def test_raw_sql_from_another_program_keeps_lists_exact(db_conn, models):
    mid, zeta, alpha = (tag_id(db_conn, n) for n in ("mid", "zeta", "Alpha"))
    db_conn.execute("INSERT INTO model_tags VALUES (?, ?)", (models[0], zeta))
    db_conn.execute("INSERT OR IGNORE INTO model_tags VALUES (?, ?)", (models[0], zeta))  # ignored
    db_conn.execute("INSERT OR IGNORE INTO model_tags VALUES (?, ?)", (models[0], mid))  # added
    assert [t["name"] for t in kept(db_conn)[models[0]]] == ["mid", "zeta"]
    db_conn.execute("INSERT OR REPLACE INTO model_tags VALUES (?, ?)", (models[0], mid))
    db_conn.execute("UPDATE model_tags SET model_hash = ? WHERE tag_id = ?", (models[1], zeta))
    assert [t["name"] for t in kept(db_conn)[models[0]]] == ["mid"]
    assert [t["name"] for t in kept(db_conn)[models[1]]] == ["zeta"]
    db_conn.execute("UPDATE model_tags SET tag_id = ? WHERE model_hash = ?", (alpha, models[1]))
    db_conn.execute("UPDATE tags SET name = 'MID', name_key = 'mid' WHERE id = ?", (mid,))
    assert_exact(db_conn)
    db_conn.execute("PRAGMA foreign_keys = OFF")  # a program that never turned them on
    try:
        db_conn.execute("DELETE FROM tags WHERE id = ?", (mid,))
        db_conn.execute("DELETE FROM models WHERE sha256 = ?", (models[1],))
    finally:
        db_conn.execute("PRAGMA foreign_keys = ON")
    assert kept(db_conn)[models[0]] == []  # its one tag is gone; the orphan link stays
    for model_type in ("checkpoints", "loras"):
        expected = serialize({"models": library.list_models(db_conn, model_type, KNOWN, {})})
        assert list_bodies.models_body(db_conn, model_type, KNOWN, {}) == expected


@pytest.mark.sqlite_only  # SQLite's IntegrityError
def test_a_failed_write_leaves_the_lists_as_they_were(db_conn, models):
    mid = tag_id(db_conn, "mid")
    db_conn.execute("INSERT INTO model_tags VALUES (?, ?)", (models[0], mid))
    before = kept(db_conn)
    with pytest.raises(sqlite3.IntegrityError):
        with transaction(db_conn):
            db_conn.execute("INSERT INTO model_tags VALUES (?, ?)", (models[1], mid))
            db_conn.execute("DELETE FROM model_tags WHERE model_hash = ?", (models[0],))
            db_conn.execute("INSERT INTO model_tags VALUES (?, ?)", (SHA(99), mid))  # no such model
    assert kept(db_conn) == before  # rolled back with the links
    assert_exact(db_conn)


@pytest.mark.sqlite_only  # the SQLite schema upgrade
def test_upgrade_fills_the_lists_of_an_existing_library(tmp_path):
    db_path = tmp_path / "hikaze_model_manager.db"
    with connection(db_path) as conn:
        with pytest.MonkeyPatch.context() as patch:
            # the version before the lists
            patch.setattr(upgrades, "CURRENT_VERSION",
                          upgrades.UPGRADES.index(upgrades._model_tag_lists))
            upgrades.apply(conn, tmp_path / "backups")
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'model_tag_lists'"
                            ).fetchone() is None
        conn.executemany("INSERT INTO tags(name, name_key) VALUES (?, ?)",
                         [("b", "b"), ("A", "a"), ("c \"q\"", "c \"q\"")])
        for i in range(4):
            conn.execute("INSERT INTO models(sha256, path, name, type) VALUES (?, ?, ?, 'loras')",
                         (SHA(i), f"/m/{i}.safetensors", f"m{i}"))
        conn.executemany("INSERT INTO model_tags VALUES (?, ?)",
                         [(SHA(0), 1), (SHA(0), 2), (SHA(0), 3), (SHA(2), 3)])
        result = upgrades.apply(conn, tmp_path / "backups")
        assert result.version_after == upgrades.CURRENT_VERSION and result.backup_path
        assert kept(conn) == {
            SHA(0): [{"id": 2, "name": "A"}, {"id": 1, "name": "b"}, {"id": 3, "name": "c \"q\""}],
            SHA(2): [{"id": 3, "name": "c \"q\""}],
        }
        assert_exact(conn)


@pytest.mark.postgres_only  # a library prepared by an earlier version
def test_a_shared_library_made_before_the_lists_gets_them_filled_once(app, client, db_conn, models):
    from hikaze_manager.state import get_state

    client.post("/api/models/tags", json={"sha256": models[:4], "add": ["zeta", "Alpha"]})
    db_conn.execute("UPDATE tags SET name = 'Omega', name_key = 'omega' WHERE name = 'zeta'")
    assert_exact(db_conn)
    # What a library prepared by an earlier version looks like: no lists at all.
    db_conn.execute("DROP TABLE model_tag_lists")
    store = get_state(app).store
    version = db_conn.execute("SELECT value FROM hikaze.version").fetchone()[0]
    assert store.prepare() is None
    assert len(kept(db_conn)) == 4
    assert_exact(db_conn)
    assert store.prepare() is None  # a second start-up changes nothing, not even the version
    assert db_conn.execute("SELECT value FROM hikaze.version").fetchone()[0] == version


@pytest.mark.sqlite_only  # foreign keys off: a tag row written after its links, or replaced
def test_a_tag_row_written_after_its_links_reaches_their_lists(db_conn, models):
    mid = tag_id(db_conn, "mid")
    db_conn.execute("INSERT INTO model_tags VALUES (?, ?)", (models[0], mid))
    db_conn.execute("PRAGMA foreign_keys = OFF")  # a program that never turned them on
    try:
        # A rename by replacing the row: no UPDATE, and the old row's delete fires no trigger.
        db_conn.execute("INSERT OR REPLACE INTO tags(id, name, name_key) VALUES (?, 'Mid2', 'mid2')",
                        (mid,))
        # An import that writes the links before the tags they name.
        db_conn.execute("INSERT INTO model_tags VALUES (?, 777)", (models[1],))
        db_conn.execute("INSERT INTO tags(id, name, name_key) VALUES (777, 'late', 'late')")
    finally:
        db_conn.execute("PRAGMA foreign_keys = ON")
    assert_exact(db_conn)


@pytest.mark.postgres_only  # TRUNCATE fires no row or statement trigger for INSERT/DELETE
def test_truncated_links_leave_no_list(client, db_conn, models):
    client.post("/api/models/tags", json={"sha256": models[:3], "add": ["zeta"]})
    assert len(kept(db_conn)) == 3
    db_conn.execute("TRUNCATE model_tags")
    assert kept(db_conn) == {}
    assert_exact(db_conn)
    client.post("/api/models/tags", json={"sha256": models[:2], "add": ["mid"]})
    db_conn.execute("TRUNCATE tags CASCADE")  # cascades to the links
    assert kept(db_conn) == {}
    assert_exact(db_conn)
