"""``GET /api/openapi.json``: an OpenAPI 3 document of every route and method of the app, with
request and response schemas and error answers; a route added without ``@api_doc`` fails here."""

from __future__ import annotations

import pytest

from hikaze_manager.openapi import AUTOMATIC_METHODS, documented_operations, openapi_path


@pytest.fixture
def document(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def test_the_document_is_openapi_3(document):
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Hikaze Manager API"
    assert "Error" in document["components"]["schemas"]


def test_every_rule_and_method_of_the_url_map_is_documented(app, document):
    operations = documented_operations(document)
    missing = []
    for rule in app.url_map.iter_rules():
        path, _ = openapi_path(rule.rule)
        for method in (rule.methods or set()) - AUTOMATIC_METHODS:
            if (method, path) not in operations:
                missing.append((method, rule.rule))
    assert not missing, f"routes missing from /api/openapi.json: {missing}"
    undocumented = [(m, p) for p, ops in document["paths"].items() for m, op in ops.items()
                    if op.get("x-undocumented")]
    assert not undocumented, f"add @api_doc(...) to the views of {undocumented}"


def test_a_route_added_without_api_doc_is_caught(app):
    from hikaze_manager.openapi import build_spec

    @app.post("/api/brand_new")
    def brand_new():
        return {}

    document = build_spec(app)
    assert document["paths"]["/api/brand_new"]["post"]["x-undocumented"] is True


def test_operations_have_schemas_and_error_answers(document):
    paths = document["paths"]
    patch = paths["/api/models/{sha256}"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ModelPatch"}
    assert patch["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ModelRecord"}
    assert {"400", "404", "412", "415", "503", "507"} <= set(patch["responses"])
    assert patch["responses"]["412"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    model_patch = document["components"]["schemas"]["ModelPatch"]
    assert model_patch["additionalProperties"] is False  # unknown fields are a 400
    upload = paths["/api/images/upload"]["post"]["requestBody"]["content"]
    assert set(upload) == {"multipart/form-data"}
    imports = paths["/api/migration/import_models"]["post"]["responses"]
    assert imports["207"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BatchPromotionReport"}
    assert imports["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobAccepted"}
    listing = paths["/api/models"]["get"]["parameters"]
    assert {"in": "query", "name": "type", "required": True} .items() <= listing[0].items()
    assert "webp" in str(paths["/api/images/{ident}.webp"]["get"]["responses"]["200"]["content"])


def test_the_document_passes_an_openapi_validator(document):
    import openapi_spec_validator  # requirements-dev.txt

    openapi_spec_validator.validate(document)
