"""Shared schema pieces: strict bodies, lenient queries, sha256 and JSON-body loading."""

from __future__ import annotations

import json
import math
import re

import marshmallow as ma
from flask import request
from marshmallow import fields

from ..errors import BadRequest, UnsupportedMediaType

SHA256_RE = re.compile(r"[0-9a-fA-F]{64}\Z")


class BodySchema(ma.Schema):
    """Request bodies: unknown fields are an error that names them."""

    class Meta:
        unknown = ma.RAISE


class QuerySchema(ma.Schema):
    """Query strings: unknown parameters (cache-busters and the like) are ignored."""

    class Meta:
        unknown = ma.EXCLUDE


class Sha256(fields.String):
    """A SHA-256 hex digest: 64 hex characters in any case, loaded as lower case."""

    default_error_messages = {"invalid_sha256": "must be 64 hexadecimal characters"}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not SHA256_RE.match(text):
            raise self.make_error("invalid_sha256")
        return text.lower()


class AsyncFlag(fields.Boolean):
    """The ``async`` flag of a JSON body: exactly ``true`` or ``false`` (``1`` or ``"yes"`` is a 400)."""

    def __init__(self, **kwargs):
        super().__init__(data_key="async", load_default=False,
                         error_messages={"invalid": "must be true or false"}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class TagSchema(ma.Schema):
    """A tag as the API returns it."""

    id = fields.Integer()
    name = fields.String()


def parse_sha256(value: str | None, field: str = "sha256") -> str:
    """Validate a sha256 from a path or query; 400 naming the field if it is not 64 hex characters."""
    if value is None or value == "":
        raise BadRequest(f"{field} is required")
    if not SHA256_RE.match(value):
        raise BadRequest(f"{field} must be 64 hexadecimal characters")
    return value.lower()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def json_body() -> dict:
    """The request's JSON object; 415 for another content type, 400 for malformed or non-object JSON.

    Stricter than ``request.get_json``: ``NaN``, ``Infinity`` and numbers that overflow to them are
    refused (browsers could not parse them when echoed back), and so is nesting too deep to parse.
    """
    if not request.is_json:
        raise UnsupportedMediaType("Content-Type must be application/json")
    try:
        data = json.loads(
            request.get_data(cache=True), parse_constant=_reject_constant, parse_float=_finite_float
        )
    except (ValueError, RecursionError):
        raise BadRequest("Invalid JSON body") from None
    if data is None:
        raise BadRequest("Invalid JSON body")
    if not isinstance(data, dict):
        raise BadRequest("The JSON body must be an object")
    return data


def load_body(schema: ma.Schema) -> dict:
    """Load and validate the JSON body through ``schema``."""
    return schema.load(json_body())


def load_query(schema: ma.Schema) -> dict:
    """Load and validate the query string through ``schema``."""
    return schema.load(request.args)
