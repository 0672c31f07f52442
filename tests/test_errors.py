"""Every error is JSON ``{"error": ...}`` with the right status; bad input is never a 500."""

from __future__ import annotations

import pytest

from hikaze_manager import create_app


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
