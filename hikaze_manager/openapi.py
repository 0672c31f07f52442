"""The OpenAPI 3 document of every route, built with apispec from the marshmallow schemas.

A view says what it takes and answers with :func:`api_doc`; :func:`build_spec` walks
``app.url_map``, so a route added without ``@api_doc`` still appears (marked
``x-undocumented``) and the test that forbids such entries names it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from typing import TYPE_CHECKING

import marshmallow as ma
from flask import Flask

if TYPE_CHECKING:
    from apispec import APISpec

from .db.upgrades import CURRENT_VERSION

OPENAPI_VERSION = "3.0.3"
AUTOMATIC_METHODS = frozenset({"HEAD", "OPTIONS"})
# Every request can meet the guards: Host allow-list (400), Origin (403), unknown ids (404).
COMMON_ERRORS = (400, 403, 404)
# Writes can also meet the body checks, the read-only mode and a full disk.
WRITE_ERRORS = (409, 413, 415, 503, 507)
_ERROR_TEXT = {
    400: "Bad request (the message names the problem)", 403: "Cross-origin request refused",
    404: "Not found", 409: "Conflict (e.g. a job of this kind is running)",
    412: "The resource changed since it was read (stale If-Match)", 413: "Body too large",
    415: "Wrong content type", 503: "Not ready, or the library is read-only (the reason)",
    507: "The disk is full",
}
_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


class ErrorSchema(ma.Schema):
    """The one error shape: ``{"error": message[, "details": {...}]}``."""

    error = ma.fields.String(required=True)
    details = ma.fields.Dict()


BINARY = {"type": "string", "format": "binary"}


def _static_docs() -> dict:
    holder = api_doc("A file of the panel (JavaScript, CSS, fonts)", response=BINARY,
                     content="*/*", other_statuses={304: "Not modified"})(lambda: None)
    return holder.hikaze_openapi


def api_doc(summary: str, *, body: type[ma.Schema] | None = None, body_required: bool = True,
            query: type[ma.Schema] | None = None,
            response: type[ma.Schema] | dict | None = None, status: int = 200,
            content: str = "application/json", errors: Iterable[int] = (),
            methods: Iterable[str] | None = None, form: dict | None = None,
            other_statuses: dict[int, type[ma.Schema] | str] | None = None) -> Callable:
    """Describe a view for the OpenAPI document (``methods``: only some of the route's methods).

    ``response`` is a schema class (or a raw JSON-schema dict) of the ``status`` answer in
    ``content``; ``errors`` adds status codes to the common ones; ``form`` is a multipart body's
    JSON schema; ``other_statuses`` documents further success answers (e.g. ``202`` for a job).
    """

    def mark(view: Callable) -> Callable:
        docs = getattr(view, "hikaze_openapi", {})
        entry = dict(summary=summary, body=body, body_required=body_required, query=query, response=response, status=status,
                     content=content, errors=tuple(errors), form=form,
                     other_statuses=other_statuses or {})
        for method in methods or ("*",):
            docs[method.upper()] = entry
        view.hikaze_openapi = docs
        return view

    return mark


STATIC_DOCS = _static_docs()


def openapi_path(rule: str) -> tuple[str, list[dict]]:
    """``/api/models/<sha256>`` as ``/api/models/{sha256}`` and its path parameters."""
    parameters = []
    for converter, name in _ARGUMENT.findall(rule):
        schema: dict = {"type": "string"}
        if converter in ("rowid", "int"):
            schema = {"type": "string", "pattern": "^[0-9]{1,19}$"}
        elif name == "sha256":
            schema = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _ARGUMENT.sub(lambda m: "{" + m.group(2) + "}", rule), parameters


def _schema_ref(spec: APISpec, schema) -> dict | type[ma.Schema]:
    # Schema classes are left to apispec's plugin, which adds each once and refers to it.
    return schema


def _operation(spec: APISpec, method: str, doc: dict | None, parameters: list[dict]) -> dict:
    writes = method in ("POST", "PUT", "PATCH", "DELETE")
    if doc is None:
        return {"summary": "Undocumented route", "x-undocumented": True, "parameters": parameters,
                "responses": {"default": {"description": "Undocumented"}}}
    operation: dict = {"summary": doc["summary"], "parameters": list(parameters)}
    if doc["query"] is not None:
        operation["parameters"].append({"in": "query", "schema": doc["query"]})
    if doc["body"] is not None:
        operation["requestBody"] = {"required": doc["body_required"], "content": {
            "application/json": {"schema": _schema_ref(spec, doc["body"])}}}
    elif doc["form"] is not None:
        operation["requestBody"] = {"required": True, "content": {
            "multipart/form-data": {"schema": doc["form"]}}}
    responses: dict = {}
    answers = {doc["status"]: doc["response"], **doc["other_statuses"]}
    for status, schema in answers.items():
        if isinstance(schema, str):  # a description only (e.g. 304)
            responses[str(status)] = {"description": schema}
            continue
        entry: dict = {"description": "OK" if status < 300 else "Accepted"}
        if schema is not None:
            media = doc["content"] if status == doc["status"] else "application/json"
            entry["content"] = {media: {"schema": _schema_ref(spec, schema)}}
        responses[str(status)] = entry
    codes = set(COMMON_ERRORS) | set(doc["errors"]) | (set(WRITE_ERRORS) if writes else set())
    for code in sorted(codes):
        responses[str(code)] = {"description": _ERROR_TEXT.get(code, "Error"), "content": {
            "application/json": {"schema": ErrorSchema}}}
    operation["responses"] = responses
    return operation


def build_spec(app: Flask) -> dict:
    """The OpenAPI document of every rule and method of ``app`` (HEAD and OPTIONS are implied)."""
    # apispec is imported here, on the first request for the document: not at start-up.
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    spec = APISpec(title="Hikaze Manager API", version=str(CURRENT_VERSION),
                   openapi_version=OPENAPI_VERSION, plugins=[MarshmallowPlugin()],
                   info={"description": "Model library of Hikaze Manager; errors are "
                                        '{"error": "..."} with the status named per operation.'})
    spec.components.schema("Error", schema=ErrorSchema)
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        docs = STATIC_DOCS if rule.endpoint == "static" else getattr(view, "hikaze_openapi", {})
        path, parameters = openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - AUTOMATIC_METHODS):
            doc = docs.get(method) or docs.get("*")
            paths.setdefault(path, {})[method.lower()] = _operation(spec, method, doc, parameters)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def documented_operations(document: dict) -> set[tuple[str, str]]:
    """``(METHOD, path)`` of every operation in an OpenAPI document."""
    return {(method.upper(), path) for path, operations in document["paths"].items()
            for method in operations if method != "parameters"}
