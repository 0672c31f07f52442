"""Library API: types, models (incl. others), details, PATCH atomicity, tags."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64
SHA_D = "d" * 64


@pytest.fixture
def library(add_model, db_conn, models_root):
    """Four models: a checkpoint, a lora, a legacy-typed one and an untyped one; two tags."""
    meta = {"description": "desc A", "community_links": "https://example.test/a",
            "images_count": 7, "prompts": {"positive": "pos", "negative": "neg"}, "params": {"x": 1}}
    add_model(SHA_A, str(models_root / "checkpoints" / "a.safetensors"), name="Model A",
              type="checkpoints", meta_json=json.dumps(meta))
    add_model(SHA_B, str(models_root / "loras" / "b.safetensors"), name="", type="loras")
    add_model(SHA_C, "D:\\extra\\loras\\c.safetensors", name=None, type="lora")
    add_model(SHA_D, "/elsewhere/d.ckpt", name="d", type=None, meta_json="not json")
    db_conn.execute("INSERT INTO tags(name, name_key) VALUES ('nsfw', 'nsfw'), ('Anime', 'anime')")
    db_conn.execute("INSERT INTO model_tags VALUES (?, 1), (?, 2), (?, 1)", (SHA_A, SHA_A, SHA_B))
    return meta


def test_get_types_lists_configured_types_sorted(client):
    response = client.get("/api/models/get_types")
    assert response.status_code == 200
    assert response.get_json() == {"types": ["checkpoints", "loras"]}


def test_get_types_falls_back_to_types_in_the_library(app_config, tmp_path):
    from hikaze_manager import create_app
    from hikaze_manager.state import get_state

    app_config["MODEL_TYPES"] = None
    app = create_app(app_config)
    with get_state(app).store.connection() as conn:
        conn.execute("INSERT INTO models(sha256, path, type) VALUES (?, '/x', 'vae'), (?, '/y', '')",
                     (SHA_A, SHA_B))
    assert app.test_client().get("/api/models/get_types").get_json() == {"types": ["vae"]}


def test_list_models_by_type_with_tags_and_name_fallback(client, library):
    response = client.get("/api/models?type=loras")
    assert response.status_code == 200
    models = response.get_json()["models"]
    assert [m["sha256"] for m in models] == [SHA_B]
    assert models[0]["name"] == "b.safetensors"
    assert models[0]["tags"] == [{"id": 1, "name": "nsfw"}]
    assert set(models[0]) == {"sha256", "name", "images_count", "type", "path", "size_bytes",
                              "created_at", "tags", "base_model", "base_family"}

    checkpoints = client.get("/api/models?type=checkpoints").get_json()["models"]
    assert checkpoints[0]["tags"] == [{"id": 2, "name": "Anime"}, {"id": 1, "name": "nsfw"}]
    assert checkpoints[0]["images_count"] == 0  # from disk, not the stale meta value


def test_list_models_type_is_case_sensitive(client, library):
    assert client.get("/api/models?type=Loras").get_json() == {"models": []}


@pytest.mark.parametrize("others", ["others", "Others", "OTHERS"])
def test_others_lists_unknown_empty_and_null_types(client, library, others):
    models = client.get(f"/api/models?type={others}").get_json()["models"]
    assert {m["sha256"] for m in models} == {SHA_C, SHA_D}
    by_sha = {m["sha256"]: m for m in models}
    assert by_sha[SHA_C]["name"] == "c.safetensors"  # Windows path separators
    assert by_sha[SHA_D]["type"] == ""


def test_list_models_requires_type(client):
    response = client.get("/api/models")
    assert response.status_code == 400
    assert "type" in response.get_json()["error"]


@pytest.mark.sqlite_only  # counts statements with SQLite's trace callback
def test_list_models_runs_a_fixed_number_of_queries(app, add_model, db_conn):
    """No N+1: the number of SQL statements does not grow with the library."""
    from flask import g

    from hikaze_manager.db import connect

    def count_statements():
        statements = []

        with app.test_request_context("/api/models?type=checkpoints"):
            conn = connect(app.config["DATABASE"])
            conn.set_trace_callback(statements.append)
            g.db = conn
            response = app.full_dispatch_request()
            assert response.status_code == 200
        return len(statements), len(response.get_json()["models"])

    db_conn.execute("INSERT INTO tags(name, name_key) VALUES ('t', 't')")
    for i in range(3):
        sha = f"{i:064x}"
        add_model(sha, f"/m/{i}.safetensors")
        db_conn.execute("INSERT INTO model_tags VALUES (?, 1)", (sha,))
    small, n_small = count_statements()
    for i in range(3, 200):
        sha = f"{i:064x}"
        add_model(sha, f"/m/{i}.safetensors")
        db_conn.execute("INSERT INTO model_tags VALUES (?, 1)", (sha,))
    large, n_large = count_statements()
    assert (n_small, n_large) == (3, 200)
    assert small == large


def test_get_model_full_record(client, library, models_root):
    response = client.get(f"/api/models/{SHA_A}")
    assert response.status_code == 200
    assert response.get_json() == {
        "sha256": SHA_A,
        "path": str(models_root / "checkpoints" / "a.safetensors"),
        "name": "Model A",
        "type": "checkpoints",
        "size_bytes": 1,
        "created_at": 1700000000000,
        "meta_json": {"description": "desc A", "community_links": "https://example.test/a",
                      "images_count": 0, "prompts": {"positive": "pos", "negative": "neg"}},
        "tags": [{"id": 2, "name": "Anime"}, {"id": 1, "name": "nsfw"}],
        "author": "",
        # Metadata from files (issue 13): nothing imported for this model yet.
        "base_model": "", "base_family": "UNKNOWN", "trigger_words": [], "training_tags": [],
        "header_metadata": None, "autov2": SHA_A[:10], "autov3": "", "metadata_sources": {},
        "imported_info": {}, "metadata_report": None,
    }


def test_get_model_accepts_upper_case_sha(client, library):
    response = client.get(f"/api/models/{SHA_A.upper()}")
    assert response.status_code == 200
    assert response.get_json()["sha256"] == SHA_A


def test_get_model_with_unparsable_meta_gets_defaults(client, library):
    meta = client.get(f"/api/models/{SHA_D}").get_json()["meta_json"]
    assert meta == {"description": "", "community_links": "", "images_count": 0,
                    "prompts": {"positive": "", "negative": ""}}


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "a" * 63, "a" * 65, SHA_A + ".webp"])
def test_bad_sha_in_path_is_400(client, bad):
    for method in ("get", "patch"):
        response = getattr(client, method)(f"/api/models/{bad}", json={})
        assert response.status_code == 400, (method, bad)
        assert "sha256" in response.get_json()["error"]


def test_missing_model_is_404(client):
    assert client.get(f"/api/models/{'e' * 64}").status_code == 404
    response = client.patch(f"/api/models/{'e' * 64}", json={"name": "x"})
    assert response.status_code == 404
    assert response.get_json() == {"error": "Model not found"}


def _stored(db_conn, sha):
    row = db_conn.execute("SELECT * FROM models WHERE sha256 = ?", (sha,)).fetchone()
    tags = [r[0] for r in db_conn.execute(
        "SELECT tag_id FROM model_tags WHERE model_hash = ? ORDER BY tag_id", (sha,))]
    return dict(row), tags


def test_patch_updates_fields_and_merges_meta(client, db_conn, library):
    response = client.patch(f"/api/models/{SHA_A}", json={
        "name": "Renamed", "type": "loras",
        "meta_json": {"description": "new desc", "prompts": {"negative": "blurry"}},
    })
    assert response.status_code == 200
    body = response.get_json()
    assert body["name"] == "Renamed" and body["type"] == "loras"
    assert body["meta_json"] == {"description": "new desc", "community_links": "https://example.test/a",
                                 "images_count": 0, "prompts": {"positive": "pos", "negative": "blurry"}}
    row, tags = _stored(db_conn, SHA_A)
    stored_meta = json.loads(row["meta_json"])
    assert stored_meta["params"] == {"x": 1}  # keys the API does not know are kept
    assert "images_count" not in stored_meta  # derived from disk, never stored again
    assert tags == [1, 2]


def test_patch_tags_replaces_the_set(client, db_conn, library):
    response = client.patch(f"/api/models/{SHA_A}", json={"tags": [{"id": 1, "name": "nsfw"}]})
    assert response.status_code == 200
    assert response.get_json()["tags"] == [{"id": 1, "name": "nsfw"}]
    assert _stored(db_conn, SHA_A)[1] == [1]
    response = client.patch(f"/api/models/{SHA_A}", json={"tags": ["2", 1]})
    assert [t["id"] for t in response.get_json()["tags"]] == [2, 1]
    assert client.patch(f"/api/models/{SHA_A}", json={"tags": []}).get_json()["tags"] == []


def test_patch_accepts_the_whole_record_sent_back(client, library):
    record = client.get(f"/api/models/{SHA_A}").get_json()
    record["name"] = "From panel"
    response = client.patch(f"/api/models/{SHA_A}", json=record)
    assert response.status_code == 200
    assert response.get_json()["name"] == "From panel"


@pytest.mark.parametrize("body, field", [
    ({"name": "X", "tags": [999]}, "999"),
    ({"name": "X", "tags": [1, "abc"]}, "tags"),
    ({"name": "X", "tags": "1"}, "tags"),
    ({"name": "X", "tags": [True]}, "tags"),
    ({"name": 5}, "name"),
    ({"name": "X", "meta_json": {"description": 3}}, "description"),
    ({"name": "X", "meta_json": "text"}, "meta_json"),
    ({"name": "X", "bogus": 1}, "bogus"),
    ({"name": "X", "path": "/etc/passwd"}, "path"),
])
def test_bad_patch_is_400_and_changes_nothing(client, db_conn, library, body, field):
    before = _stored(db_conn, SHA_A)
    response = client.patch(f"/api/models/{SHA_A}", json=body)
    assert response.status_code == 400
    assert field in response.get_json()["error"]
    assert _stored(db_conn, SHA_A) == before


def test_patch_path_to_a_file_inside_a_model_root(client, db_conn, library, make_model_file):
    path, _ = make_model_file("checkpoints/moved/a.safetensors")
    response = client.patch(f"/api/models/{SHA_A}", json={"path": str(path)})
    assert response.status_code == 200
    assert response.get_json()["path"] == str(path)


def test_patch_path_outside_the_model_roots_is_refused(client, library, tmp_path):
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"x")
    response = client.patch(f"/api/models/{SHA_A}", json={"path": str(outside)})
    assert response.status_code == 400


def test_patch_null_name_reads_back_empty(client, library):
    response = client.patch(f"/api/models/{SHA_A}", json={"name": None})
    assert response.status_code == 200
    assert response.get_json()["name"] == ""


def test_list_tags_ordered_by_name_ignoring_case(client, library):
    assert client.get("/api/tags").get_json() == {
        "tags": [{"id": 2, "name": "Anime"}, {"id": 1, "name": "nsfw"}]
    }


def test_tags_add_returns_each_tag_once_and_matches_case_insensitively(client, db_conn, library):
    response = client.post("/api/tags_add", json={
        "newtags": ["NSFW", "style", " Style ", "nsfw", "", "   ", "Cafe\u0301", "caf\u00e9"]
    })
    assert response.status_code == 200
    tags = response.get_json()["tags"]
    assert [t["name"] for t in tags] == ["nsfw", "style", "Caf\u00e9"]
    assert tags[0]["id"] == 1
    names = [r[0] for r in db_conn.execute("SELECT name FROM tags ORDER BY id")]
    assert names == ["nsfw", "Anime", "style", "Caf\u00e9"]
    again = client.post("/api/tags_add", json={"newtags": ["STYLE"]}).get_json()["tags"]
    assert again == [tags[1]]


@pytest.mark.parametrize("body, status", [
    ({}, 400),
    ({"newtags": "a"}, 400),
    ({"newtags": [1]}, 400),
    ([1], 400),
    ("x", 400),
])
def test_tags_add_bad_bodies(client, body, status):
    response = client.post("/api/tags_add", json=body)
    assert response.status_code == status
    assert "error" in response.get_json()


def test_tags_add_malformed_json_is_400(client, db_conn):
    response = client.post("/api/tags_add", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"error": "Invalid JSON body"}
    assert db_conn.execute("SELECT COUNT(*) FROM tags").fetchone()[0] == 0
