"""The one list query each store writes as JSON itself (see ``services/list_bodies.py``).

The whole list is one value: the store writes every row's JSON and joins them, the image counts
(from the picture folder, or the shared store's rows) passed in as one JSON object. The name
falls back to the file name of the path (``display_name``); tags are ordered by name key like
``library.list_models``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from . import dialect_of

_SLASHED = "replace(COALESCE(m.path, ''), '\\', '/')"
_ORDER = "ORDER BY lower(COALESCE(NULLIF(m.name, ''), m.path)), m.sha256"

# SQLite: rtrim() with every character but '/' strips the last path segment, so what is left
# is the folder part. Each model's tag list is kept as JSON by triggers (``model_tag_lists``,
# see ``db/upgrades.py``), in the order above.
_SQLITE_NAME = (
    "CASE WHEN m.name IS NOT NULL AND m.name != '' THEN m.name "
    f"ELSE substr({_SLASHED}, length(rtrim({_SLASHED}, replace({_SLASHED}, '/', ''))) + 1) END"
)
_SQLITE_ROW = (
    f"json_object('sha256', m.sha256, 'name', {_SQLITE_NAME}, 'images_count', COALESCE(c.n, 0), "
    "'type', COALESCE(m.type, ''), 'path', COALESCE(m.path, ''), "
    "'size_bytes', CAST(COALESCE(m.size_bytes, 0) AS INTEGER), "
    "'created_at', CAST(COALESCE(m.created_at, 0) AS INTEGER), "
    "'tags', json(COALESCE(l.tags, '[]')), 'base_model', COALESCE(m.base_model, ''), "
    "'base_family', COALESCE(NULLIF(m.base_family, ''), 'UNKNOWN'))"
)
# One value for the whole list: no Python object per row. The aggregate keeps the ordered
# subquery's order; the image counts arrive as one JSON object, {sha256: count}.
_SQLITE = (
    "WITH c(sha256, n) AS MATERIALIZED (SELECT key, value FROM json_each(?)) "
    f"SELECT CAST(group_concat(row, ',') AS BLOB) FROM (SELECT {_SQLITE_ROW} AS row "
    "FROM models m LEFT JOIN model_tag_lists l ON l.model_hash = m.sha256 "
    "LEFT JOIN c ON c.sha256 = m.sha256 WHERE {where} " + _ORDER + ")"
)

_PG_NAME = (
    "CASE WHEN m.name IS NOT NULL AND m.name != '' THEN m.name "
    f"ELSE regexp_replace({_SLASHED}, '^.*/', '') END"
)
# PostgreSQL: the JSON text is concatenated (to_json() escapes a string as json.dumps does); the
# tag lists are kept by triggers there too (``hikaze.model_tag_lists``, ``db/pg_schema.sql``).
def _pg_str(expr: str) -> str:
    return f"to_json(CAST({expr} AS TEXT))::text"


_PG = (
    "WITH c AS (SELECT key AS sha256, value AS n FROM json_each_text(CAST(? AS json))) "
    "SELECT string_agg('{\"sha256\":' || " + _pg_str("m.sha256") + " || ',\"name\":' || "
    + _pg_str(_PG_NAME) + " || ',\"images_count\":' || COALESCE(c.n, '0') || "
    "',\"type\":' || " + _pg_str("COALESCE(m.type, '')") + " || ',\"path\":' || "
    + _pg_str("COALESCE(m.path, '')") + " || ',\"size_bytes\":' || COALESCE(m.size_bytes, 0) || "
    "',\"created_at\":' || COALESCE(m.created_at, 0) || ',\"tags\":' || COALESCE(l.tags, '[]') || "
    "',\"base_model\":' || " + _pg_str("COALESCE(m.base_model, '')") + " || ',\"base_family\":' || "
    + _pg_str("COALESCE(NULLIF(m.base_family, ''), 'UNKNOWN')") + " || '}', ',' "
    + _ORDER + ") "
    "FROM models m LEFT JOIN model_tag_lists l ON l.model_hash = m.sha256 "
    "LEFT JOIN c ON c.sha256 = m.sha256 WHERE {where}"
)


def models_list_json(conn, where: str, params: list, image_counts: Mapping[str, int]) -> bytes:
    """The models ``where`` matches (``m`` is the models table, ``params`` its values) with their
    image counts, as the items of a JSON array in list order: UTF-8, without the brackets."""
    sql = _PG if dialect_of(conn) == "postgres" else _SQLITE
    cursor = conn.cursor()
    cursor.row_factory = None
    values = [json.dumps(image_counts), *params]
    text = cursor.execute(sql.replace("{where}", where), values).fetchone()[0]
    if text is None:
        return b""
    return text if isinstance(text, bytes) else text.encode("utf-8")
