"""Schemas of the management API: batch edits, tag administration, duplicates, missing, trash.

Plain marshmallow ``Schema`` classes (requests load through them, responses dump through them),
so an OpenAPI generator can register them as they are.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..db import as_row_id
from .common import (
    SHA256_RE,
    BodySchema,
    RowId,
    SafeString,
    Sha256,
    StrictBool,
    TagSchema,
    is_storable_text,
)

MAX_SELECTION = 100_000


class TagIdOrName(fields.Field):
    """A tag given by id (an integer or ``{"id": n}``) or by name (a string)."""

    default_error_messages = {"invalid": "each tag must be an id, an object with an id, or a name"}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            if len(value) > 1000 or not is_storable_text(value):
                raise self.make_error("invalid")
            return value
        tag_id = as_row_id(value.get("id")) if isinstance(value, dict) else (
            as_row_id(value) if isinstance(value, int) else None)
        if tag_id is None:
            raise self.make_error("invalid")
        return tag_id


class Sha256List(fields.Field):
    """A selection: a list of SHA-256 hex digests, loaded lower case (checked in one pass, not a
    field object per item: 5,000 hashes must cost nothing)."""

    default_error_messages = {
        "invalid": "must be a list of 64-character hexadecimal SHA-256 digests",
        "length": f"must hold 1 to {MAX_SELECTION} digests",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise self.make_error("invalid")
        if not 1 <= len(value) <= MAX_SELECTION:
            raise self.make_error("length")
        match = SHA256_RE.match
        if not all(isinstance(v, str) and match(v) for v in value):
            raise self.make_error("invalid")
        return [v.lower() for v in value]


def _selection(**kwargs):
    return Sha256List(required=True, **kwargs)


def _tag_list():
    return fields.List(TagIdOrName(), load_default=list, validate=validate.Length(max=10_000))


class ModelTagsEditSchema(BodySchema):
    """``POST /api/models/tags``: add and remove tags on many models at once."""

    sha256 = _selection()
    add = _tag_list()
    remove = _tag_list()

    @ma.validates_schema
    def _something(self, data, **kwargs):
        if not data.get("add") and not data.get("remove"):
            raise ma.ValidationError("give tags to add or remove", "_schema")


class ModelsSetTypeSchema(BodySchema):
    sha256 = _selection()
    type = SafeString(required=True, validate=validate.Length(min=1, max=200))


class ModelsRemoveSchema(BodySchema):
    sha256 = _selection()


class TagRenameSchema(BodySchema):
    id = RowId(required=True)
    name = SafeString(required=True, validate=validate.Length(min=1, max=1000))
    dry_run = StrictBool(load_default=False)


class TagMergeSchema(BodySchema):
    source = fields.List(RowId(), required=True, validate=validate.Length(min=1, max=10_000))
    target = TagIdOrName(required=True)
    dry_run = StrictBool(load_default=False)


class TagDeleteSchema(BodySchema):
    id = fields.List(RowId(), required=True, validate=validate.Length(min=1, max=10_000))
    dry_run = StrictBool(load_default=False)


class TrashFileSchema(BodySchema):
    """``POST /api/files/trash``: the file (a path or a library model) and its name as confirmation."""

    path = SafeString(validate=validate.Length(min=1, max=4096))
    sha256 = Sha256()
    confirm = SafeString(required=True, validate=validate.Length(min=1, max=1000))
    remove_from_library = StrictBool(load_default=False)

    @ma.validates_schema
    def _one_target(self, data, **kwargs):
        if ("path" in data) == ("sha256" in data):
            raise ma.ValidationError("give exactly one of path or sha256", "_schema")


class TrashRestoreSchema(BodySchema):
    # The pattern is for the OpenAPI document ("\Z" is not a JSON-schema regex); "$" would also
    # accept a trailing newline, which the second check refuses.
    id = SafeString(required=True, validate=[
        validate.Regexp(r"^[0-9]{10,20}-[0-9a-f]{8}$", error="Not a trash entry id"),
        validate.Length(max=29, error="Not a trash entry id"),
        validate.ContainsNoneOf("\n", error="Not a trash entry id"),
    ])


# -- responses


class TagEditReportSchema(ma.Schema):
    models = fields.Integer()
    added = fields.List(fields.Nested(TagSchema))
    removed = fields.List(fields.Nested(TagSchema))
    links_added = fields.Integer()
    links_removed = fields.Integer()


class SetTypeReportSchema(ma.Schema):
    models = fields.Integer()
    changed = fields.Integer()
    type = fields.String()


class RemoveReportSchema(ma.Schema):
    removed = fields.Integer()
    sha256 = fields.List(fields.String())
    pictures_removed = fields.Integer()


class TagUsageSchema(ma.Schema):
    id = fields.Integer()
    name = fields.String()
    models = fields.Integer()
    pending = fields.Integer()


class TagUsageListSchema(ma.Schema):
    tags = fields.List(fields.Nested(TagUsageSchema))


class TagChangeReportSchema(ma.Schema):
    tag = fields.Nested(TagUsageSchema)
    merged = fields.Boolean()
    before = fields.List(fields.Nested(TagUsageSchema))
    deleted = fields.List(fields.Nested(TagUsageSchema))
    removed_ids = fields.List(fields.Integer())
    dry_run = fields.Boolean()


class DuplicatePathSchema(ma.Schema):
    path = fields.String()
    sha256 = fields.String()
    source = fields.String()
    size_bytes = fields.Integer()


class SameContentSchema(ma.Schema):
    sha256 = fields.String()
    name = fields.String()
    in_library = fields.Boolean()
    size_bytes = fields.Integer()
    total_bytes = fields.Integer()
    reclaimable_bytes = fields.Integer()
    paths = fields.List(fields.Nested(DuplicatePathSchema))


class SameNameSchema(ma.Schema):
    name = fields.String()
    total_bytes = fields.Integer()
    files = fields.List(fields.Nested(DuplicatePathSchema))


class DuplicatesReportSchema(ma.Schema):
    same_content = fields.List(fields.Nested(SameContentSchema))
    same_name = fields.List(fields.Nested(SameNameSchema))
    reclaimable_bytes = fields.Integer()


class MissingModelSchema(ma.Schema):
    sha256 = fields.String()
    name = fields.String()
    path = fields.String()
    type = fields.String()
    size_bytes = fields.Integer()
    found_elsewhere = fields.List(fields.String())


class MissingListSchema(ma.Schema):
    models = fields.List(fields.Nested(MissingModelSchema))


class TrashEntrySchema(ma.Schema):
    id = fields.String()
    path = fields.String()
    sha256 = fields.String(allow_none=True)
    trashed_at = fields.Integer()
    expires_at = fields.Integer()
    size_bytes = fields.Integer()
    files = fields.List(fields.String())
    removed_from_library = fields.Boolean()


class TrashListSchema(ma.Schema):
    entries = fields.List(fields.Nested(TrashEntrySchema))
    purged = fields.Integer()
    retention_days = fields.Float()


class SortKeysSchema(ma.Schema):
    models = fields.Dict(keys=fields.String(), values=fields.Dict())
    pending = fields.Dict(keys=fields.String(), values=fields.Dict())
