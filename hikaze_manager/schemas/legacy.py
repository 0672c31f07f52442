"""Schemas of the legacy (v1) migration API."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from .common import AsyncFlag, BodySchema


class LegacyMigrateSchema(BodySchema):
    """``POST /api/migration/migrate_legacy_db``."""

    legacy_db_path = fields.String(
        required=True,
        validate=validate.Length(min=1, max=4096, error="legacy_db_path is required"),
        error_messages={"required": "legacy_db_path is required"},
    )
    legacy_images_dir = fields.String(
        allow_none=True, load_default=None, validate=validate.Length(max=4096)
    )
    run_async = AsyncFlag()


class DbMigrationSchema(ma.Schema):
    migrated = fields.Integer()
    pending = fields.Integer()
    errors = fields.Integer()
    images_processed = fields.Integer()
    image_errors = fields.Integer()
    images_missing = fields.Integer()
    skipped = fields.Integer()


class MigrationProblemSchema(ma.Schema):
    legacy_id = fields.Integer()
    path = fields.String()
    problem = fields.String()


class LegacyMigrationReportSchema(ma.Schema):
    """The stage-1 report: the reference's counters plus where things came from and what failed."""

    status = fields.String()
    db_migration = fields.Nested(DbMigrationSchema)
    source = fields.String()
    legacy_db_path = fields.String()
    legacy_images_dir = fields.String(allow_none=True)
    backup_path = fields.String(allow_none=True)
    problems = fields.List(fields.Nested(MigrationProblemSchema))
    problems_omitted = fields.Integer()


class LegacyCandidateSchema(ma.Schema):
    """One v1 database found on this machine."""

    path = fields.String()
    images_dir = fields.String(allow_none=True)
    size_bytes = fields.Integer()
    mtime = fields.Integer()
    looks_like_v1 = fields.Boolean()
    model_count = fields.Integer(allow_none=True)
    migrated_rows = fields.Integer()
    source = fields.String(allow_none=True)
    problem = fields.String(allow_none=True)


class LegacyCandidateListSchema(ma.Schema):
    """``GET /api/migration/legacy_candidates``."""

    candidates = fields.List(fields.Nested(LegacyCandidateSchema))
