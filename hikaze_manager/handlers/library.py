"""Library API: model types, models, tags."""

from __future__ import annotations

import functools

from flask import Blueprint, request

from ..db import consistent_read, get_db, transaction
from ..openapi import api_doc
from ..schemas.common import TagListSchema, TagSchema, load_body, load_query, parse_sha256
from ..schemas.library import (
    ModelListQuerySchema,
    ModelListSchema,
    ModelPatchSchema,
    ModelRecordSchema,
    TagsAddSchema,
    TypesSchema,
)
from ..services import library, list_bodies, list_cache, tags
from ..services.list_cache import CachedBody
from ..services.model_types import resolve_model_file
from ..state import get_state
from .cached import cached_json, cached_response, conditional, json_response

bp = Blueprint("library", __name__, url_prefix="/api")


def _configured_types() -> tuple[str, ...]:
    return tuple(get_state().model_types.current().names())


def _known_types(configured: tuple[str, ...]) -> list[str]:
    return list(configured) or library.model_types_in_db(get_db())


@functools.lru_cache(maxsize=8)
def _configured_types_body(configured: tuple[str, ...]) -> CachedBody:
    return list_cache.body_of(TypesSchema().dump({"types": list(configured)}))


@bp.get("/models/get_types")
@api_doc("Model types (ComfyUI folder names)", response=TypesSchema)
def get_types():
    configured = _configured_types()
    if configured:  # the names alone make the body: no database version to probe
        return cached_response(_configured_types_body(configured))
    return cached_json(
        "types", (), lambda: TypesSchema().dump({"types": library.model_types_in_db(get_db())}))


@bp.get("/models")
@api_doc("Library models of one type (or others)", query=ModelListQuerySchema,
         response=ModelListSchema)
def list_models():
    model_type = load_query(ModelListQuerySchema())["type"]
    configured = _configured_types()

    def build() -> bytes:
        # SQLite writes the JSON (no dict per row, no marshmallow dump: perf-anchors section 5).
        state = get_state()
        return list_bodies.models_body(
            get_db(), model_type, _known_types(configured), state.images.counts()
        )

    return cached_json("models", model_type, build, uses_images=True, extra=configured)


def _model_response(sha256: str):
    state = get_state()
    images_count = state.images.count(sha256)

    def build() -> bytes:
        conn = get_db()
        with consistent_read(conn):
            # get_model builds ModelRecordSchema's shape; dumping it again (nested schemas built
            # per call) cost 4x the rest of the request.
            return library.model_body(conn, sha256, images_count)

    # Kept until the next commit (the picture count is part of the key): the three queries and
    # the JSON cost more than the rest of the request. The ETag is the digest of these very
    # bytes (pictures counted too): a strong validator.
    entry = state.details.get("model", (sha256, images_count), build)
    return json_response(entry.body, entry.etag)


def _if_match() -> frozenset[str] | None:
    """Strong tags of ``If-Match``; None when absent or ``*`` (the model exists or it is a 404)."""
    if not request.headers.get("If-Match", "").strip():
        return None
    tags = request.if_match
    if tags.star_tag:
        return None
    return frozenset(tags.as_set(include_weak=False))


@bp.get("/models/<sha256>")
@api_doc("One library model in full; ETag for If-Match", response=ModelRecordSchema,
         other_statuses={304: "Not modified (If-None-Match)"})
def get_model(sha256: str):
    return conditional(_model_response(parse_sha256(sha256)))


@bp.patch("/models/<sha256>")
@api_doc("Update a model, all or nothing (If-Match: 412 when stale)", body=ModelPatchSchema,
         response=ModelRecordSchema, errors=(412,))
def update_model(sha256: str):
    sha256 = parse_sha256(sha256)
    changes = load_body(ModelPatchSchema())
    index = get_state().model_types.current()
    library.update_model(
        get_db(), sha256, changes, check_path=lambda path: resolve_model_file(path, index),
        if_match=_if_match(), images_count=get_state().images.count,
    )
    return _model_response(sha256)


@bp.get("/tags")
@api_doc("Every tag", response=TagListSchema)
def list_tags():
    return cached_json(
        "tags", (), lambda: {"tags": TagSchema(many=True).dump(tags.list_tags(get_db()))}
    )


@bp.post("/tags_add")
@api_doc("Create tags (existing names resolve to their tag)", body=TagsAddSchema,
         response=TagListSchema)
def add_tags():
    names = load_body(TagsAddSchema())["newtags"]
    conn = get_db()
    with transaction(conn):
        created = tags.ensure_tags(conn, names)
    return {"tags": TagSchema(many=True).dump(created)}
