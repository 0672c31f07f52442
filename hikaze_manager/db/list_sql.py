"""The one list query each store writes as JSON itself (see ``services/list_bodies.py``).

Each row is ``(sha256, head, tail)``: two JSON object texts the caller splices the image count
between. The name falls back to the file name of the path (``display_name``); tags are ordered
by name key like ``library.list_models``.
"""

from __future__ import annotations

from . import dialect_of

_SLASHED = "replace(COALESCE(m.path, ''), '\\', '/')"
_ORDER = "ORDER BY lower(COALESCE(NULLIF(m.name, ''), m.path)), m.sha256"

# SQLite: rtrim() with every character but '/' strips the last path segment, so what is left
# is the folder part; the aggregate keeps the ordered subquery's order.
_SQLITE_NAME = (
    "CASE WHEN m.name IS NOT NULL AND m.name != '' THEN m.name "
    f"ELSE substr({_SLASHED}, length(rtrim({_SLASHED}, replace({_SLASHED}, '/', ''))) + 1) END"
)
_SQLITE_TAGS = (
    "json((SELECT json_group_array(json_object('id', id, 'name', name)) FROM ("
    "SELECT t.id, t.name FROM model_tags mt JOIN tags t ON t.id = mt.tag_id "
    "WHERE mt.model_hash = m.sha256 ORDER BY t.name_key, t.id)))"
)
_SQLITE = (
    f"SELECT m.sha256, json_object('sha256', m.sha256, 'name', {_SQLITE_NAME}), "
    "json_object('type', COALESCE(m.type, ''), 'path', COALESCE(m.path, ''), "
    "'size_bytes', CAST(COALESCE(m.size_bytes, 0) AS INTEGER), "
    "'created_at', CAST(COALESCE(m.created_at, 0) AS INTEGER), "
    f"'tags', {_SQLITE_TAGS}, 'base_model', COALESCE(m.base_model, ''), "
    "'base_family', COALESCE(NULLIF(m.base_family, ''), 'UNKNOWN')) FROM models m WHERE {where} "
    + _ORDER
)

_PG_NAME = (
    "CASE WHEN m.name IS NOT NULL AND m.name != '' THEN m.name "
    f"ELSE regexp_replace({_SLASHED}, '^.*/', '') END"
)
# row_to_json / array_to_json write compact JSON in column order, as Python's json.dumps does.
_PG_TAGS = (
    "COALESCE((SELECT array_to_json(array_agg(tg)) FROM (SELECT t.id, t.name "
    "FROM model_tags mt JOIN tags t ON t.id = mt.tag_id WHERE mt.model_hash = m.sha256 "
    "ORDER BY t.name_key, t.id) tg), '[]'::json)"
)
_PG = (
    "SELECT m.sha256, (SELECT row_to_json(h) FROM (SELECT m.sha256 AS sha256, "
    f"{_PG_NAME} AS name) h)::text, "
    "(SELECT row_to_json(b) FROM (SELECT COALESCE(m.type, '') AS type, "
    "COALESCE(m.path, '') AS path, COALESCE(m.size_bytes, 0) AS size_bytes, "
    f"COALESCE(m.created_at, 0) AS created_at, {_PG_TAGS} AS tags, "
    "COALESCE(m.base_model, '') AS base_model, "
    "COALESCE(NULLIF(m.base_family, ''), 'UNKNOWN') AS base_family) b)::text "
    "FROM models m WHERE {where} " + _ORDER
)


def models_list_sql(conn, where: str) -> str:
    """The list query for ``conn``'s store, filtered by ``where`` (``m`` is the models table)."""
    return (_PG if dialect_of(conn) == "postgres" else _SQLITE).format(where=where)
