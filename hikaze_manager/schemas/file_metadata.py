"""Schemas of the file-metadata API: re-read requests and their report."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from .common import AsyncFlag, BodySchema, Sha256


class RereadBodySchema(BodySchema):
    """``POST /api/models/reread_metadata``."""

    sha256 = fields.List(Sha256(), required=True,
                         validate=validate.Length(min=1, max=100_000, error="sha256 must be a "
                                                  "non-empty list of at most 100000 hashes"))
    asynchronous = AsyncFlag()


class _Failed(ma.Schema):
    sha256 = fields.String()
    error = fields.String()


class _Warning(ma.Schema):
    sha256 = fields.String()
    warning = fields.String()


class RereadReportSchema(ma.Schema):
    """What a re-read did per model."""

    total = fields.Integer()
    updated = fields.List(fields.String())
    unchanged = fields.List(fields.String())
    failed = fields.List(fields.Nested(_Failed))
    warnings = fields.List(fields.Nested(_Warning))
    metadata = fields.Raw()
