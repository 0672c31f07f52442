"""Schemas of the images API: queries, the upload form and the small JSON answers."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..services.image_processing import TIERS
from .common import QuerySchema, Sha256


class ImageCountQuerySchema(QuerySchema):
    """``GET /api/images/get_img_count?sha256=``."""

    sha256 = Sha256(required=True)


class ImageQualityQuerySchema(QuerySchema):
    """``?quality=high|medium|low`` (default high, any case); anything else is a 400."""

    quality = fields.String(load_default="high", validate=validate.OneOf(TIERS))

    @ma.pre_load
    def _lower(self, data, **kwargs):
        if "quality" in data and isinstance(data["quality"], str):
            data = dict(data)
            data["quality"] = data["quality"].strip().lower() or "high"
        return data


class ImageDeleteQuerySchema(QuerySchema):
    """``DELETE /api/images/delete?sha256=&seq=``."""

    sha256 = Sha256(required=True)
    seq = fields.Integer(required=True, strict=False, validate=validate.Range(min=0, max=10**9))


class UploadFormSchema(QuerySchema):
    """The text part of ``POST /api/images/upload`` (the file part is read separately)."""

    sha256 = Sha256(required=True)


class ImageCountSchema(ma.Schema):
    count = fields.Integer()


class StatusSchema(ma.Schema):
    status = fields.String()


class UploadResultSchema(ma.Schema):
    status = fields.String()
    base_name = fields.String()
    seq = fields.Integer()
    count = fields.Integer()
