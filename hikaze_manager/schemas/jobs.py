"""Schemas of the jobs API and of the ``202`` answer that starts a job."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields


class JobProgressSchema(ma.Schema):
    files_done = fields.Integer()
    files_total = fields.Integer()
    bytes_done = fields.Integer()
    bytes_total = fields.Integer()
    message = fields.String()


class JobSnapshotSchema(ma.Schema):
    """A job as ``GET /api/jobs/{id}`` shows it; ``result`` is the report of the finished work."""

    id = fields.String()
    kind = fields.String()
    state = fields.String()
    progress = fields.Nested(JobProgressSchema)
    cancel_requested = fields.Boolean()
    result = fields.Raw(allow_none=True)
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    created_at = fields.Integer()
    started_at = fields.Integer(allow_none=True)
    finished_at = fields.Integer(allow_none=True)


class JobListSchema(ma.Schema):
    jobs = fields.List(fields.Nested(JobSnapshotSchema))


class JobAcceptedSchema(ma.Schema):
    """``202``: the work runs as a job; poll the ``Location``."""

    job_id = fields.String()
    job = fields.Nested(JobSnapshotSchema)


class PanelConfigSchema(ma.Schema):
    """``GET /api/panel/config``."""

    allowed_origins = fields.List(fields.String())
    read_only_reason = fields.String(allow_none=True)
    schema_version = fields.Integer()
