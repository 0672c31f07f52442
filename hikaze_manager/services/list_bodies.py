"""List bodies written as JSON by the database itself: the large lists without a Python object per row.

``models_body`` returns exactly the bytes ``jsonify({"models": library.list_models(...)})`` writes
(same order, keys and escaping on SQLite; ``tests/test_list_cache.py`` compares them), in a
fraction of the time and memory at 50,000 rows: the store writes the whole list as one value,
image counts included, so Python makes no object per row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from ..db.list_sql import models_list_json
from .library import _type_filter


def models_body(conn: sqlite3.Connection, model_type: str, known_types: list[str],
                image_counts: Mapping[str, int]) -> bytes:
    """``{"models": [...]}`` of one type (or ``others``) as JSON bytes, in one query."""
    return b'{"models":[' + models_list_json(conn, *_type_filter(model_type, known_types),
                                              image_counts) + b"]}\n"
