"""Schemas of the library API: models, tags and their updates."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..db import as_row_id
from .common import BodySchema, QuerySchema, TagSchema


class PromptsSchema(ma.Schema):
    positive = fields.String()
    negative = fields.String()


class MetaJsonSchema(ma.Schema):
    """``meta_json`` of a library model as the API returns it."""

    description = fields.String()
    community_links = fields.String()
    images_count = fields.Integer()
    prompts = fields.Nested(PromptsSchema)


class ModelRecordSchema(ma.Schema):
    """A full library model (``GET``/``PATCH /api/models/{sha256}``)."""

    sha256 = fields.String()
    path = fields.String()
    name = fields.String()
    type = fields.String()
    size_bytes = fields.Integer()
    created_at = fields.Integer()
    meta_json = fields.Nested(MetaJsonSchema)
    tags = fields.List(fields.Nested(TagSchema))
    author = fields.String()
    # Metadata read from the model file and the files beside it (see services/metadata).
    base_model = fields.String()
    base_family = fields.String()
    trigger_words = fields.List(fields.String())
    training_tags = fields.Raw()
    header_metadata = fields.Raw(allow_none=True)
    autov2 = fields.String()
    autov3 = fields.String()
    metadata_sources = fields.Dict(keys=fields.String(), values=fields.String())
    imported_info = fields.Raw()
    metadata_report = fields.Raw(allow_none=True)


class ModelSimpleRecordSchema(ma.Schema):
    """A model in a list; tags are passed through as built (no per-row nesting cost)."""

    sha256 = fields.String()
    name = fields.String()
    images_count = fields.Integer()
    type = fields.String()
    path = fields.String()
    size_bytes = fields.Integer()
    created_at = fields.Integer()
    tags = fields.Raw()
    base_model = fields.String()
    base_family = fields.String()


class ModelListQuerySchema(QuerySchema):
    type = fields.String(required=True, validate=validate.Length(min=1, max=200))


class TagRef(fields.Field):
    """A tag reference in a PATCH: an id, a numeric string, or an object with ``id``."""

    default_error_messages = {"invalid": "each tag must be an id or an object with an integer id"}

    def _deserialize(self, value, attr, data, **kwargs):
        tag_id = as_row_id(value.get("id") if isinstance(value, dict) else value)
        if tag_id is None:
            raise self.make_error("invalid")
        return tag_id


class PromptsPatchSchema(BodySchema):
    positive = fields.String(allow_none=True, validate=validate.Length(max=100_000))
    negative = fields.String(allow_none=True, validate=validate.Length(max=100_000))


class MetaPatchSchema(BodySchema):
    """Keys sent are merged into the stored meta; ``images_count`` is derived and ignored."""

    description = fields.String(allow_none=True, validate=validate.Length(max=100_000))
    community_links = fields.String(allow_none=True, validate=validate.Length(max=10_000))
    images_count = fields.Raw(load_only=True)
    prompts = fields.Nested(PromptsPatchSchema, allow_none=True)


class ModelPatchSchema(BodySchema):
    """``PATCH /api/models/{sha256}``: all of it applies or none."""

    name = fields.String(allow_none=True, validate=validate.Length(max=1000))
    path = fields.String(validate=validate.Length(min=1, max=4096))
    type = fields.String(allow_none=True, validate=validate.Length(max=200))
    meta_json = fields.Nested(MetaPatchSchema)
    tags = fields.List(TagRef())
    author = fields.String(allow_none=True, validate=validate.Length(max=200))
    base_model = fields.String(allow_none=True, validate=validate.Length(max=200))
    trigger_words = fields.List(
        fields.String(validate=validate.Length(min=1, max=2000)), validate=validate.Length(max=500)
    )
    # Sent back by the panel with the rest of the record; read-only, so accepted and ignored.
    sha256 = fields.Raw(load_only=True)
    size_bytes = fields.Raw(load_only=True)
    created_at = fields.Raw(load_only=True)
    base_family = fields.Raw(load_only=True)
    training_tags = fields.Raw(load_only=True)
    header_metadata = fields.Raw(load_only=True, allow_none=True)
    autov2 = fields.Raw(load_only=True)
    autov3 = fields.Raw(load_only=True)
    metadata_sources = fields.Raw(load_only=True)
    imported_info = fields.Raw(load_only=True)
    metadata_report = fields.Raw(load_only=True, allow_none=True)


class TagsAddSchema(BodySchema):
    newtags = fields.List(
        fields.String(validate=validate.Length(max=1000)),
        required=True,
        validate=validate.Length(max=10_000),
        error_messages={"required": "newtags must be a list", "invalid": "newtags must be a list"},
    )


class TypesSchema(ma.Schema):
    types = fields.List(fields.String())


class ModelListSchema(ma.Schema):
    """``GET /api/models``."""

    models = fields.List(fields.Nested(ModelSimpleRecordSchema))
