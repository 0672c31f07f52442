"""GET /api/migration/pending_models and /api/migration/pending_model?id=."""

from __future__ import annotations

import json

import pytest

from hikaze_manager.services import pending as pending_service

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL


def _add_pending(db_conn, path, *, name=None, type="loras", created_at=1700000000000, meta=None,
                 tags=(), sha256="", size=10):
    pid = db_conn.execute(
        "INSERT INTO pending_import(path, sha256, name, type, size_bytes, created_at, meta_json) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (path, sha256, name, type, size, created_at,
         meta if isinstance(meta, str) or meta is None else json.dumps(meta)),
    ).lastrowid
    for tag in tags:
        row = db_conn.execute("SELECT id FROM tags WHERE name_key = ?", (tag.casefold(),)).fetchone()
        tag_id = row[0] if row else db_conn.execute(
            "INSERT INTO tags(name, name_key) VALUES (?, ?)", (tag, tag.casefold())).lastrowid
        db_conn.execute("INSERT INTO pending_model_tags(model_id, tag_id) VALUES (?, ?)", (pid, tag_id))
    return pid


def test_list_is_ordered_by_created_at_with_image_and_tags(client, db_conn):
    late = _add_pending(db_conn, "/m/loras/late.safetensors", name="Late", created_at=3,
                        meta={"images": ["/media/model_2_1700000000001_b.png", "/media/other.png"]},
                        tags=["zeta", "Alpha"])
    early = _add_pending(db_conn, "/m/ck/early.ckpt", type=None, created_at=1)
    middle = _add_pending(db_conn, "C:\\models\\win.safetensors", created_at=2, meta="not json")
    response = client.get("/api/migration/pending_models")
    assert response.status_code == 200
    models = response.get_json()["models"]
    assert [m["id"] for m in models] == [early, middle, late]
    assert models[0] == {"id": early, "name": "early.ckpt", "image": "", "type": "", "tags": []}
    assert models[1]["name"] == "win.safetensors"
    alpha, zeta = models[2]["tags"]
    assert (alpha["name"], zeta["name"]) == ("Alpha", "zeta")
    assert models[2] == {"id": late, "name": "Late", "image": "/media/model_2_1700000000001_b.png",
                         "type": "loras", "tags": [alpha, zeta]}


def test_empty_list(client):
    assert client.get("/api/migration/pending_models").get_json() == {"models": []}


def test_record_shape(client, db_conn):
    pid = _add_pending(db_conn, "/m/loras/b.safetensors", name="", size=151108832,
                       meta={"description": "d", "community_links": "https://x", "images": ["a.png"],
                             "prompts": {"positive": "p2"}, "extra": 1},
                       tags=["loras"])
    response = client.get(f"/api/migration/pending_model?id={pid}")
    assert response.status_code == 200
    record = response.get_json()
    assert list(record) == ["id", "path", "sha256", "name", "type", "size_bytes", "created_at",
                            "meta_json", "tags"]
    assert record["name"] == "b.safetensors"
    assert record["size_bytes"] == 151108832
    assert record["meta_json"] == {"description": "d", "community_links": "https://x",
                                   "images": ["a.png"], "prompts": {"positive": "p2", "negative": ""}}
    assert [t["name"] for t in record["tags"]] == ["loras"]


@pytest.mark.parametrize("meta", [None, "null", "[]", json.dumps({"images": "x.png", "prompts": "p",
                                                                  "description": None})])
def test_odd_meta_reads_as_defaults(client, db_conn, meta):
    pid = _add_pending(db_conn, "/m/x.safetensors", meta=meta)
    record = client.get(f"/api/migration/pending_model?id={pid}").get_json()
    assert record["meta_json"] == {"description": "", "community_links": "", "images": [],
                                   "prompts": {"positive": "", "negative": ""}}


@pytest.mark.parametrize("query, code, message", [
    ("", 400, "id is required"),
    ("?id=", 400, "id must be an integer"),
    ("?id=abc", 400, "id must be an integer"),
    ("?id=1.5", 400, "id must be an integer"),
    ("?id=999", 404, "Pending model not found"),
])
def test_record_errors(client, query, code, message):
    response = client.get(f"/api/migration/pending_model{query}")
    assert response.status_code == code
    assert response.get_json()["error"] == message


def _count_queries(db_conn, fn):
    statements = []
    db_conn.set_trace_callback(statements.append)
    try:
        fn()
    finally:
        db_conn.set_trace_callback(None)
    return len(statements)


@pytest.mark.sqlite_only  # counts statements with SQLite's trace callback
def test_listing_uses_a_fixed_number_of_queries(db_conn):
    _add_pending(db_conn, "/m/0.safetensors", tags=["a"])
    one = _count_queries(db_conn, lambda: pending_service.list_pending(db_conn))
    for i in range(1, 40):
        _add_pending(db_conn, f"/m/{i}.safetensors", tags=["a", f"t{i}"], created_at=i)
    many = _count_queries(db_conn, lambda: pending_service.list_pending(db_conn))
    assert one == many == 2
    records = pending_service.list_pending(db_conn)
    assert len(records) == 40 and all(r["tags"] for r in records)
