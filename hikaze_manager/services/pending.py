"""The pending queue (``pending_import``): records as the API shapes them, in a fixed number of queries."""

from __future__ import annotations

import sqlite3

from ..errors import NotFound
from .library import as_text, display_name, parse_meta, shape_prompts


def old_meta(text: str | None) -> dict:
    """The stored ``OldMetaJson`` with defaults filled in; ``images`` is always a list of strings."""
    meta = parse_meta(text)
    images = meta.get("images")
    images = [str(i) for i in images if i is not None] if isinstance(images, list) else []
    return {
        "description": as_text(meta.get("description")),
        "community_links": as_text(meta.get("community_links")),
        "images": images,
        "prompts": shape_prompts(meta),
    }


def pending_tags(conn: sqlite3.Connection, ids: list[int] | None = None) -> dict[int, list[dict]]:
    """Tags per pending id (all rows, or only ``ids``), ordered by name, in one query."""
    sql = (
        "SELECT pt.model_id, t.id, t.name FROM pending_model_tags pt "
        "JOIN tags t ON t.id = pt.tag_id"
    )
    params: list = []
    if ids is not None:
        sql += f" WHERE pt.model_id IN ({','.join('?' * len(ids))})"
        params = list(ids)
    result: dict[int, list[dict]] = {}
    for model_id, tag_id, name in conn.execute(sql + " ORDER BY t.name_key, t.id", params):
        result.setdefault(model_id, []).append({"id": tag_id, "name": name})
    return result


def list_pending(conn: sqlite3.Connection) -> list[dict]:
    """Every pending model as a ``PendingModelSimpleRecord``, oldest first (two queries)."""
    rows = conn.execute(
        "SELECT id, path, name, type, meta_json FROM pending_import ORDER BY created_at, id"
    ).fetchall()
    tags = pending_tags(conn)
    records = []
    for row in rows:
        images = old_meta(row["meta_json"])["images"]
        records.append({
            "id": row["id"],
            "name": display_name(row["name"], row["path"]),
            "image": images[0] if images else "",
            "type": row["type"] or "",
            "tags": tags.get(row["id"], []),
        })
    return records


def get_pending(conn: sqlite3.Connection, pending_id: int) -> dict:
    """One pending model as a ``PendingModelRecord``, or 404."""
    row = conn.execute("SELECT * FROM pending_import WHERE id = ?", (pending_id,)).fetchone()
    if row is None:
        raise NotFound("Pending model not found")
    return {
        "id": row["id"],
        "path": row["path"] or "",
        "sha256": row["sha256"] or "",
        "name": display_name(row["name"], row["path"]),
        "type": row["type"] or "",
        "size_bytes": row["size_bytes"] or 0,
        "created_at": row["created_at"] or 0,
        "meta_json": old_meta(row["meta_json"]),
        "tags": pending_tags(conn, [pending_id]).get(pending_id, []),
    }
