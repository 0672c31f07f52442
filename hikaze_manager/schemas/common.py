"""Shared schema pieces: strict bodies, lenient queries, sha256 and JSON-body loading."""

from __future__ import annotations

import json
import math
import re

import marshmallow as ma
from flask import g, request
from marshmallow import fields

from ..db import as_row_id
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


class StrictBool(fields.Boolean):
    """Exactly ``true`` or ``false`` (``1`` or ``"yes"`` is a 400)."""

    default_error_messages = {"invalid": "must be true or false"}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class AsyncFlag(StrictBool):
    """The ``async`` flag of a JSON body."""

    def __init__(self, **kwargs):
        super().__init__(data_key="async", load_default=False, **kwargs)


class SafeString(fields.String):
    """A string either store can hold: valid Unicode text without lone surrogates or NUL."""

    default_error_messages = {"invalid_nul": "must not contain a NUL character (U+0000)"}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise self.make_error("invalid_nul")
        if not is_lone_surrogate_free(text):
            raise self.make_error("invalid_utf8")
        return text


class RowId(fields.Field):
    """An integer row id (an int or a string of ASCII digits) through :func:`db.as_row_id`."""

    default_error_messages = {"invalid": "must be an integer id"}

    def _deserialize(self, value, attr, data, **kwargs):
        row_id = as_row_id(value)
        if row_id is None:
            raise self.make_error("invalid")
        return row_id


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


def is_lone_surrogate_free(text: str) -> bool:
    """True if ``text`` can be encoded as UTF-8 (no lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


NUL_PROBLEM = "a NUL character (\\u0000)"
SURROGATE_PROBLEM = "a lone UTF-16 surrogate (\\uD800-\\uDFFF)"


def text_problem(text: str) -> str | None:
    """What in ``text`` neither store can keep (PostgreSQL text refuses NUL, SQLite and UTF-8
    lone surrogates), or None."""
    if "\x00" in text:
        return NUL_PROBLEM
    if not is_lone_surrogate_free(text):
        return SURROGATE_PROBLEM
    return None


def is_storable_text(text: str) -> bool:
    """True if ``text`` can be stored in either store and sent back as UTF-8."""
    return text_problem(text) is None


def find_unstorable_text(data) -> tuple[str, str] | None:
    """``(where, problem)`` for the first string in decoded JSON that cannot be stored, or None.

    A lone UTF-16 surrogate (``"\\ud800"``) cannot be stored in SQLite nor sent back as UTF-8,
    and PostgreSQL text cannot hold NUL: both are refused on the way in, on either store, so a
    library moves between the stores unchanged. Iterative, so any nesting ``json.loads`` accepted
    is walked without recursion.
    """
    stack = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                return f"the value of {where or 'the body'}", problem
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = text_problem(key)
                if problem is not None:
                    return f"a key of {where or 'the body'}", problem
                stack.append((f"{where}.{key}" if where else key, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def check_url_text(args, view_args: dict | None) -> None:
    """400 naming the parameter when a query string (``args``, None for none) or URL part holds
    text no store can keep."""
    for key, value in args.items(multi=True) if args else ():
        problem = text_problem(key) or text_problem(value)
        if problem is not None:
            name = key if text_problem(key) is None else "a parameter name"
            raise BadRequest(f"Invalid query string: {problem} in {_clip(name)}",
                             details={_clip(name): [f"must not contain {problem}"]})
    for key, value in (view_args or {}).items():
        problem = text_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise BadRequest(f"Invalid URL: {problem} in {key}",
                             details={key: [f"must not contain {problem}"]})


def _clip(where: str) -> str:
    return where if len(where) <= 200 else where[:200] + "..."


def json_body() -> dict:
    """The request's JSON object; 415 for another content type, 400 for malformed or non-object JSON.

    Stricter than ``request.get_json``: ``NaN``, ``Infinity`` and numbers that overflow to them are
    refused (browsers could not parse them when echoed back), and so are nesting too deep to parse
    and lone surrogates or NUL characters anywhere in keys or values. Parsed once per request (the
    guards in ``security`` check every JSON body before any view runs).
    """
    if "hikaze_json" in g:
        return g.hikaze_json
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
    found = find_unstorable_text(data)
    if found is not None:
        where, problem = _clip(found[0]), found[1]
        raise BadRequest(f"Invalid JSON body: {problem} in {where}",
                         details={"body": [f"{problem} in {where}"]})
    g.hikaze_json = data
    return data


def load_body(schema: ma.Schema) -> dict:
    """Load and validate the JSON body through ``schema``."""
    return schema.load(json_body())


def load_query(schema: ma.Schema) -> dict:
    """Load and validate the query string through ``schema``."""
    return schema.load(request.args)


class TagListSchema(ma.Schema):
    """``{"tags": [...]}``."""

    tags = fields.List(fields.Nested(TagSchema))
