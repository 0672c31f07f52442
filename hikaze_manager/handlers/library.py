"""Library API: model types, models, tags."""

from __future__ import annotations

from flask import Blueprint

from ..db import get_db, transaction
from ..schemas.common import TagSchema, load_body, load_query, parse_sha256
from ..schemas.library import (
    ModelListQuerySchema,
    ModelPatchSchema,
    TagsAddSchema,
    TypesSchema,
)
from ..services import library, list_bodies, tags
from ..services.model_types import resolve_model_file
from ..state import get_state
from .cached import cached_json

bp = Blueprint("library", __name__, url_prefix="/api")


def _configured_types() -> tuple[str, ...]:
    return tuple(get_state().model_types.current().names())


def _known_types(configured: tuple[str, ...]) -> list[str]:
    return list(configured) or library.model_types_in_db(get_db())


@bp.get("/models/get_types")
def get_types():
    configured = _configured_types()
    return cached_json(
        "types", (), lambda: TypesSchema().dump({"types": _known_types(configured)}),
        extra=configured,
    )


@bp.get("/models")
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


def _model_record(sha256: str) -> dict:
    # get_model builds ModelRecordSchema's shape; dumping it again (nested schemas built per
    # call) cost 4x the rest of the request.
    return library.get_model(get_db(), sha256, get_state().images.count(sha256))


@bp.get("/models/<sha256>")
def get_model(sha256: str):
    return _model_record(parse_sha256(sha256))


@bp.patch("/models/<sha256>")
def update_model(sha256: str):
    sha256 = parse_sha256(sha256)
    changes = load_body(ModelPatchSchema())
    index = get_state().model_types.current()
    library.update_model(
        get_db(), sha256, changes, check_path=lambda path: resolve_model_file(path, index)
    )
    return _model_record(sha256)


@bp.get("/tags")
def list_tags():
    return cached_json(
        "tags", (), lambda: {"tags": TagSchema(many=True).dump(tags.list_tags(get_db()))}
    )


@bp.post("/tags_add")
def add_tags():
    names = load_body(TagsAddSchema())["newtags"]
    conn = get_db()
    with transaction(conn):
        created = tags.ensure_tags(conn, names)
    return {"tags": TagSchema(many=True).dump(created)}
