"""Schemas of the scan, pending-queue and promotion API."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..errors import BadRequest
from .library import PromptsSchema
from .common import AsyncFlag, BodySchema, QuerySchema, RowId, TagSchema

STRATEGY_CHOICES = ("override", "merge", "ignore", "delete", "null")
MAX_IMPORT_IDS = 100_000


def load_or_400(schema: ma.Schema, data) -> dict:
    """Load ``data``; a problem becomes a 400 whose message starts with the field's name."""
    try:
        return schema.load(data)
    except ma.ValidationError as exc:
        messages = exc.normalized_messages()
        field, problems = next(iter(messages.items()))
        text = problems[0] if isinstance(problems, list) and problems else str(problems)
        raise BadRequest(text if field == "_schema" else f"{field} {text}", details=messages) from None


class _Strict(BodySchema):
    error_messages = {"unknown": "is not a known field", "type": "The JSON body must be an object"}


class ScanBodySchema(_Strict):
    """``POST /api/scan`` body (optional): ``{"async": true}`` runs it as a job."""

    asynchronous = AsyncFlag()


class ImportModelsSchema(_Strict):
    """``POST /api/migration/import_models`` body."""

    id = fields.List(
        fields.Raw(allow_none=True),
        required=True,
        validate=validate.Length(min=1, max=MAX_IMPORT_IDS, error="must be a non-empty array"),
        error_messages={"required": "must be a non-empty array", "null": "must be a non-empty array",
                        "invalid": "must be a non-empty array"},
    )
    conflict_strategy = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(STRATEGY_CHOICES, error="must be one of override, merge, ignore, "
                                "delete or null"),
        error_messages={"invalid": "must be one of override, merge, ignore, delete or null"},
    )
    asynchronous = AsyncFlag()


class PendingModelQuerySchema(QuerySchema):
    """``GET /api/migration/pending_model?id=``."""

    id = RowId(required=True, error_messages={"required": "is required", "invalid": "must be an integer"})


class OldMetaJsonSchema(ma.Schema):
    """``meta_json`` of a pending model (the legacy ``extra_json`` shape, with ``images``)."""

    description = fields.String()
    community_links = fields.String()
    images = fields.List(fields.String())
    prompts = fields.Nested(PromptsSchema)


class PendingModelRecordSchema(ma.Schema):
    """``PendingModelRecord``: one pending model in full."""

    id = fields.Integer()
    path = fields.String()
    sha256 = fields.String()
    name = fields.String()
    type = fields.String()
    size_bytes = fields.Integer()
    created_at = fields.Integer()
    meta_json = fields.Nested(OldMetaJsonSchema)
    tags = fields.List(fields.Nested(TagSchema))


class PendingModelSimpleRecordSchema(ma.Schema):
    """``PendingModelSimpleRecord``: a pending model in the list (tags passed through as built)."""

    id = fields.Integer()
    name = fields.String()
    image = fields.String()
    type = fields.String()
    tags = fields.Raw()


class ScanReportSchema(ma.Schema):
    """The scan report; ``relinked`` and ``errors`` are our additions."""

    status = fields.String()
    scanned = fields.Integer()
    added = fields.Integer()
    pending_ids = fields.List(fields.Integer())
    skipped = fields.Integer()
    relinked = fields.Integer()
    errors = fields.Integer()
    # Metadata from files (issue 13): counts and each broken or refused sidecar by name.
    metadata = fields.Raw()


class _PendingRef(ma.Schema):
    id = fields.Integer()
    path = fields.String()
    name = fields.String()


class _ExistingRef(ma.Schema):
    id = fields.String()
    path = fields.String()
    name = fields.String()


class ConflictSchema(ma.Schema):
    pending = fields.Nested(_PendingRef)
    existing = fields.Nested(_ExistingRef)


class FailedSchema(ma.Schema):
    id = fields.Raw()
    error = fields.String()


class WarningSchema(ma.Schema):
    id = fields.Integer()
    warning = fields.String()


class BatchPromotionReportSchema(ma.Schema):
    """``BatchPromotionReport``; ``warnings`` appears only when an item had a non-fatal problem."""

    total = fields.Integer()
    success = fields.List(fields.Integer())
    conflict = fields.List(fields.Nested(ConflictSchema))
    ignored = fields.List(fields.Integer())
    deleted = fields.List(fields.Integer())
    failed = fields.List(fields.Nested(FailedSchema))
    warnings = fields.List(fields.Nested(WarningSchema))


class PendingModelListSchema(ma.Schema):
    """``GET /api/migration/pending_models``."""

    models = fields.List(fields.Nested(PendingModelSimpleRecordSchema))
