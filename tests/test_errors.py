"""Every error is JSON ``{"error": ...}`` with the right status; bad input is never a 500."""

from __future__ import annotations

import json

import pytest

from hikaze_manager import create_app

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL


@pytest.mark.parametrize("method, url, kwargs, status", [
    ("get", "/api/nope", {}, 404),
    ("get", "/nope/at/all", {}, 404),
    ("post", "/api/nope", {"data": "x", "content_type": "text/plain"}, 404),
    ("delete", "/api/tags", {}, 405),
    ("put", "/api/models/get_types", {}, 405),
    ("post", "/api/tags_add", {"data": "{bad", "content_type": "application/json"}, 400),
    ("post", "/api/tags_add", {"data": "", "content_type": "application/json"}, 400),
    ("post", "/api/tags_add", {"json": [1, 2]}, 400),
    ("post", "/api/tags_add", {"json": "text"}, 400),
    ("post", "/api/tags_add", {"data": "newtags=a", "content_type": "application/x-www-form-urlencoded"}, 415),
    ("post", "/api/tags_add", {"data": '{"newtags": []}', "content_type": "text/plain"}, 415),
    ("post", "/api/tags_add", {}, 415),
    ("patch", f"/api/models/{'a' * 64}", {"data": "{}", "content_type": "text/plain"}, 415),
    ("patch", f"/api/models/{'a' * 64}", {"json": "string"}, 400),
    ("get", "/api/models?type=", {}, 400),
])
def test_errors_are_json(client, method, url, kwargs, status):
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body.get("error"), str) and body["error"]


def test_validation_error_names_the_field_and_has_details(client):
    response = client.post("/api/tags_add", json={"newtags": ["ok"], "extra": 1})
    assert response.status_code == 400
    body = response.get_json()
    assert "extra" in body["error"]
    assert body["details"] == {"extra": ["Unknown field."]}


def test_unexpected_exception_is_a_json_500_without_traceback(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path / "d")})

    @app.get("/api/explode")
    def explode():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/api/explode")
    assert response.status_code == 500
    assert response.get_json() == {"error": "Internal server error"}


def test_oversized_json_body_is_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = client.post("/api/tags_add", json={"newtags": ["x" * 2000]})
    assert response.status_code == 413
    assert "error" in response.get_json()


SHA = "a" * 64


@pytest.mark.parametrize("method, url, body", [
    ("patch", f"/api/models/{SHA}", {"tags": [99999999999999999999999]}),
    ("patch", f"/api/models/{SHA}", {"tags": [{"id": 2**70}]}),
    ("patch", f"/api/models/{SHA}", {"tags": ["\u00b2"]}),
    ("patch", f"/api/models/{SHA}", {"tags": [{"id": "\u0663"}]}),
    ("get", "/api/migration/pending_model?id=99999999999999999999", None),
    ("get", "/api/migration/pending_model?id=%C2%B2", None),
    ("post", "/api/migration/migrate_legacy_db", {"legacy_db_path": "/tmp/a\u0000b"}),
])
def test_out_of_range_and_odd_values_are_400(client, no_propagation, add_model, method, url, body):
    add_model(SHA, "/m/a.safetensors")
    kwargs = {"json": body} if body is not None else {}
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"]


@pytest.mark.parametrize("raw", [
    '{"newtags": [NaN]}', '{"newtags": [Infinity]}', '{"newtags": [1e400]}', "[" * 100_000,
    '{"newtags": [' + "9" * 5000 + "]}",
])
def test_non_finite_numbers_and_absurd_nesting_are_invalid_json(client, no_propagation, raw):
    response = client.post("/api/tags_add", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"error": "Invalid JSON body"}


@pytest.mark.parametrize("ids", [[1e400], [2**64], ["99999999999999999999"], ["\u00b2"], [-1]])
def test_import_models_reports_odd_ids_as_failed_with_valid_json(client, no_propagation, ids):
    raw = '{"id": [' + ", ".join(
        "1e400" if i == 1e400 else json.dumps(i) for i in ids) + "]}"
    response = client.post("/api/migration/import_models", data=raw, content_type="application/json")
    if ids == [1e400]:
        assert response.status_code == 400
        return
    assert response.status_code == 207
    body = json.loads(response.get_data(as_text=True))  # strict: no NaN/Infinity
    assert [f["error"] for f in body["failed"]] == ["Invalid id"]


@pytest.mark.parametrize("url", [f"/api/models/{SHA}%0A", f"/api/images/get_img_count?sha256={SHA}%0A",
                                 f"/api/images/{SHA}%0A"])
def test_sha256_with_a_trailing_newline_is_400(client, add_model, url):
    add_model(SHA, "/m/a.safetensors")
    assert client.get(url).status_code == 400


@pytest.mark.parametrize("url, body", [
    ("/api/migration/migrate_legacy_db", {"legacy_db_path": "/nowhere.sqlite3", "async": "yes"}),
    ("/api/migration/migrate_legacy_db", {"legacy_db_path": "/nowhere.sqlite3", "async": 1}),
    ("/api/migration/import_models", {"id": [1], "async": "true"}),
    ("/api/scan", {"async": 1}),
])
def test_async_flag_must_be_a_json_boolean(client, url, body):
    response = client.post(url, json=body)
    assert response.status_code == 400
    assert "async" in response.get_json()["error"]
    assert client.get("/api/jobs").get_json() == {"jobs": []}
