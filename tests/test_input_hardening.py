"""Hostile input is a 4xx JSON error that names the problem and changes nothing: lone surrogates
and NUL characters anywhere in a JSON body, a query string or the URL, ids too long for ``int()``,
Unicode digits, odd ids in a batch."""

from __future__ import annotations

import json
import os

import pytest

from hikaze_manager.state import get_state

from snapshot_support import app_snapshot

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

SHA = "a" * 64
SURROGATE_KEY = '{"\\ud800": 1}'


@pytest.fixture
def seeded(app, client, add_model, db_conn, tmp_path):
    """A library model with a tag and a pending row for a real file, so a change would show."""
    add_model(SHA, "/m/a.safetensors", name="A")
    client.post("/api/tags_add", json={"newtags": ["kept"]})
    model_file = tmp_path / "models" / "checkpoints" / "p.safetensors"
    model_file.write_bytes(os.urandom(2048))
    pending_id = db_conn.execute(
        "INSERT INTO pending_import(path, sha256, name, type, size_bytes, created_at, meta_json) "
        "VALUES (?, '', 'p', 'checkpoints', 2048, 1, '{}')", (str(model_file),)).lastrowid
    return pending_id


def _state(app):
    return app_snapshot(app)


def _write_routes(app):
    """Every (method, url) of the app that takes a JSON body, URL arguments filled in."""
    fill = {"sha256": SHA, "job_id": "1-abc", "pending_id": "1", "ident": SHA, "name": "x"}
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if getattr(view, "hikaze_multipart", False) or rule.endpoint == "static":
            continue
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}):
            url = rule.rule
            for argument in rule.arguments:
                url = url.replace(f"<{argument}>", fill[argument])
                for converter in ("rowid", "int", "path"):
                    url = url.replace(f"<{converter}:{argument}>", fill[argument])
            yield method, url


def test_every_json_write_route_refuses_a_lone_surrogate_key(app, client, seeded, no_propagation):
    routes = list(_write_routes(app))
    assert ("PATCH", f"/api/models/{SHA}") in routes and ("POST", "/api/tags_add") in routes
    before = _state(app)
    for method, url in routes:
        if method == "DELETE":
            continue  # no body
        response = client.open(url, method=method, data=SURROGATE_KEY,
                               content_type="application/json")
        assert response.status_code == 400, (method, url, response.get_data(as_text=True))
        assert "surrogate" in response.get_json()["error"], (method, url)
        assert client.get("/api/jobs").get_json() == {"jobs": []}
    assert _state(app) == before


@pytest.mark.parametrize("url, method, raw, where", [
    (f"/api/models/{SHA}", "PATCH", '{"name": "x\\ud800"}', "name"),
    (f"/api/models/{SHA}", "PATCH", '{"path": "/m/\\udfff.safetensors"}', "path"),
    (f"/api/models/{SHA}", "PATCH", '{"meta_json": {"prompts": {"positive": "\\udc80"}}}',
     "meta_json.prompts.positive"),
    (f"/api/models/{SHA}", "PATCH", '{"meta_json": {"\\ud83d": "x"}}', "a key of meta_json"),
    ("/api/tags_add", "POST", '{"newtags": ["ok", "bad\\ud800"]}', "newtags[1]"),
    ("/api/migration/migrate_legacy_db", "POST", '{"legacy_db_path": "/tmp/\\ud800.db"}',
     "legacy_db_path"),
    ("/api/migration/import_models", "POST", '{"id": [1, "\\ud800"]}', "id[1]"),
    ("/api/migration/import_models", "POST", '{"id": [1, "\\ud800"], "async": true}', "id[1]"),
])
def test_lone_surrogate_in_a_value_is_400_naming_it_and_changes_nothing(
        app, client, seeded, no_propagation, url, method, raw, where):
    before = _state(app)
    response = client.open(url, method=method, data=raw, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert where in response.get_json()["error"]
    assert _state(app) == before  # id 1 was not promoted first, no tag was created
    jobs = client.get("/api/jobs")
    assert jobs.status_code == 200 and jobs.get_json() == {"jobs": []}


NUL_KEY = '{"\\u0000": 1}'


def test_every_json_write_route_refuses_a_nul_key(app, client, seeded, no_propagation):
    """PostgreSQL text cannot hold U+0000 (psycopg refuses it): both stores refuse it up front."""
    before = _state(app)
    for method, url in _write_routes(app):
        if method == "DELETE":
            continue
        response = client.open(url, method=method, data=NUL_KEY, content_type="application/json")
        assert response.status_code == 400, (method, url, response.get_data(as_text=True))
        assert "NUL" in response.get_json()["error"], (method, url)
        assert client.get("/api/jobs").get_json() == {"jobs": []}
    assert _state(app) == before


@pytest.mark.parametrize("url, method, raw, where", [
    (f"/api/models/{SHA}", "PATCH", '{"name": "x\\u0000"}', "name"),
    (f"/api/models/{SHA}", "PATCH", '{"path": "/m/\\u0000.safetensors"}', "path"),
    (f"/api/models/{SHA}", "PATCH", '{"type": "loras\\u0000"}', "type"),
    (f"/api/models/{SHA}", "PATCH", '{"author": "\\u0000"}', "author"),
    (f"/api/models/{SHA}", "PATCH", '{"trigger_words": ["ok", "a\\u0000b"]}', "trigger_words[1]"),
    (f"/api/models/{SHA}", "PATCH", '{"tags": ["kept", "new\\u0000"]}', "tags[1]"),
    (f"/api/models/{SHA}", "PATCH", '{"meta_json": {"description": "d\\u0000"}}',
     "meta_json.description"),
    (f"/api/models/{SHA}", "PATCH", '{"meta_json": {"prompts": {"negative": "\\u0000"}}}',
     "meta_json.prompts.negative"),
    (f"/api/models/{SHA}", "PATCH", '{"meta_json": {"x\\u0000": "v"}}', "a key of meta_json"),
    ("/api/tags_add", "POST", '{"newtags": ["ok", "bad\\u0000"]}', "newtags[1]"),
    ("/api/models/tags", "POST", f'{{"sha256": ["{SHA}"], "add": ["t\\u0000"]}}', "add[0]"),
    ("/api/models/set_type", "POST", f'{{"sha256": ["{SHA}"], "type": "l\\u0000"}}', "type"),
    ("/api/tags/rename", "POST", '{"id": 1, "name": "r\\u0000"}', "name"),
    ("/api/tags/merge", "POST", '{"source": [1], "target": "m\\u0000"}', "target"),
    ("/api/migration/migrate_legacy_db", "POST", '{"legacy_db_path": "/tmp/\\u0000.db"}',
     "legacy_db_path"),
    ("/api/migration/import_models", "POST", '{"id": [1, "\\u0000"]}', "id[1]"),
    ("/api/migration/import_models", "POST", '{"id": [1], "strategy": "merge\\u0000"}',
     "strategy"),
])
def test_nul_in_a_value_is_400_naming_it_and_changes_nothing(
        app, client, seeded, no_propagation, url, method, raw, where):
    before = _state(app)
    response = client.open(url, method=method, data=raw, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert "NUL" in error and where in error, error
    assert _state(app) == before  # id 1 was not promoted first, no tag was created
    assert client.get("/api/jobs").get_json() == {"jobs": []}


@pytest.mark.parametrize("method, url, where", [
    ("get", "/api/models?type=loras%00", "type"),
    ("get", "/api/models?type=checkpoints&search=a%00b", "search"),
    ("get", "/api/models?%00=1", "a parameter name"),
    ("get", f"/api/images/get_img_count?sha256={SHA}%00", "sha256"),
    ("get", "/api/migration/pending_model?id=1%00", "id"),
    ("get", "/api/scan?path=%00", "path"),
    ("delete", f"/api/images/delete?sha256={SHA}&seq=0%00", "seq"),
    ("get", f"/api/images/{SHA}%00", "ident"),
    ("get", "/api/images/pending/a%00.png", "name"),
    ("get", "/api/jobs/1-a%00", "job_id"),
    ("delete", "/api/jobs/1-a%00", "job_id"),
    ("post", f"/api/models/{SHA}%00/trash", None),
], ids=lambda value: value if isinstance(value, str) else None)
def test_nul_in_a_query_string_or_the_url_is_400_naming_it(
        app, client, seeded, no_propagation, method, url, where):
    before = _state(app)
    response = getattr(client, method)(url)
    if where is None:  # no such route: routing answers as for any unknown URL
        assert response.status_code in (404, 405)
    else:
        assert response.status_code == 400, response.get_data(as_text=True)
        error = response.get_json()["error"]
        assert "NUL" in error and where in error, error
    assert _state(app) == before


def test_a_surrogate_pair_is_ordinary_text(client, seeded):
    response = client.patch(f"/api/models/{SHA}", data='{"name": "smile \\ud83d\\ude00"}',
                            content_type="application/json")
    assert response.status_code == 200
    assert response.get_json()["name"] == "smile \U0001F600"


LONG = "9" * 5000


@pytest.mark.parametrize("body", [{"tags": [LONG]}, {"tags": [{"id": LONG}]}, {"tags": ["-" + LONG]}],
                         ids=["string", "object", "negative"])
def test_a_5000_digit_tag_id_is_400(app, client, seeded, no_propagation, body):
    before = _state(app)
    response = client.patch(f"/api/models/{SHA}", json=body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "tag" in response.get_json()["error"]
    assert _state(app) == before


@pytest.mark.parametrize("url, statuses", [
    (f"/api/migration/pending_model?id={LONG}", {400}),
    ("/api/migration/pending_model?id=%D9%A3", {400}),  # Arabic-Indic 3: int() would take it
    (f"/api/images/pending/{LONG}", {400, 404}),
    (f"/api/images/pending/{LONG}.webp", {400, 404}),
    ("/api/images/pending/%C2%B2.webp", {400, 404}),
    ("/api/images/pending/%C2%B2", {400, 404}),
    ("/api/images/pending/%D9%A3", {400, 404}),
    (f"/api/images/delete?sha256={SHA}&seq={LONG}", {400}),
], ids=lambda value: value[:60] if isinstance(value, str) else None)
def test_odd_pending_and_image_ids_are_4xx(client, seeded, no_propagation, url, statuses):
    method = "delete" if "/delete" in url else "get"
    response = getattr(client, method)(url)
    assert response.status_code in statuses, response.get_data(as_text=True)
    assert response.get_json()["error"]


def test_a_pending_id_in_the_url_still_finds_its_picture(app, client, db_conn, seeded):
    from PIL import Image

    picture = get_state(app).paths.pending_dir / "pic.png"
    Image.new("RGB", (8, 8), "red").save(picture)
    db_conn.execute("UPDATE pending_import SET meta_json = ? WHERE id = ?",
                    (json.dumps({"images": ["pic.png"]}), seeded))
    with client.get(f"/api/images/pending/{seeded}") as original:
        assert original.status_code == 200 and original.mimetype == "image/png"
    with client.get(f"/api/images/pending/{seeded}.webp") as converted:
        assert converted.status_code == 200 and converted.mimetype == "image/webp"


def test_a_job_report_with_a_lone_surrogate_is_still_listed(app, client):
    """A string from disk (``surrogateescape``) in a report must not make ``GET /api/jobs`` a 500."""
    jobs = get_state(app).jobs
    job = jobs.submit("scan", lambda job: (200, {"path": os.fsdecode(b"/m/\xff.safetensors")}))
    jobs.wait(job.id, timeout=10)
    listed = client.get("/api/jobs")
    assert listed.status_code == 200
    assert json.loads(listed.get_data())["jobs"][0]["result"] == {"path": "/m/\udcff.safetensors"}
    assert client.get(f"/api/jobs/{job.id}").status_code == 200


def test_a_job_report_that_is_not_json_fails_the_job_instead_of_the_listing(app, client):
    jobs = get_state(app).jobs
    job = jobs.submit("scan", lambda job: (200, {"odd": {1, 2}}))
    jobs.wait(job.id, timeout=10)
    listed = client.get("/api/jobs")
    assert listed.status_code == 200
    snapshot_ = listed.get_json()["jobs"][0]
    assert snapshot_["state"] == "failed" and snapshot_["result"] is None
    assert "encoded" in snapshot_["error"]
