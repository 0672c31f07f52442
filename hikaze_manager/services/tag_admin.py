"""Tag management: usage counts, rename (onto an existing name: merge), merge, delete; atomic.

Every change can run as a dry run: the same statements inside the transaction, rolled back, so
the counts shown before confirming are the ones the change will produce.
"""

from __future__ import annotations

import json
import sqlite3

from .. import db
from ..errors import BadRequest
from . import tags as tags_service


class _DryRun(Exception):
    pass


def tag_usage(conn: sqlite3.Connection) -> list[dict]:
    """Every tag with how many library and pending models (of every machine) carry it."""
    with db.consistent_read(conn):
        rows = conn.execute(
            "SELECT t.id, t.name, (SELECT COUNT(*) FROM model_tags mt WHERE mt.tag_id = t.id)"
            " FROM tags t ORDER BY t.name_key, t.id"
        ).fetchall()
        pending = db.pending_tag_counts(conn)
    return [{"id": r[0], "name": r[1], "models": r[2], "pending": pending.get(r[0], 0)} for r in rows]


def _usage_of(conn: sqlite3.Connection, tag_id: int) -> dict:
    row = conn.execute(
        "SELECT t.id, t.name, (SELECT COUNT(*) FROM model_tags WHERE tag_id = t.id)"
        " FROM tags t WHERE t.id = ?",
        (tag_id,),
    ).fetchone()
    pending = db.pending_tag_counts(conn, tag_id).get(tag_id, 0)
    return {"id": row[0], "name": row[1], "models": row[2], "pending": pending}


def _run(conn: sqlite3.Connection, dry_run: bool, change) -> dict:
    report: dict = {}
    try:
        with db.transaction(conn):
            report = change()
            report["dry_run"] = dry_run
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return report


def _fold_into(conn: sqlite3.Connection, target: int, sources: list[int]) -> None:
    ids = json.dumps(sources)
    conn.execute(
        "INSERT OR IGNORE INTO model_tags(model_hash, tag_id) "
        "SELECT model_hash, ? FROM model_tags WHERE tag_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))",
        (target, ids),
    )
    # Pending rows are each machine's own; the tags are shared: fold every machine's pending links.
    db.on_every_machine(
        conn,
        "INSERT OR IGNORE INTO pending_model_tags(model_id, tag_id) "
        "SELECT model_id, ? FROM pending_model_tags WHERE tag_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))",
        (target, ids),
    )
    conn.execute(
        "DELETE FROM model_tags WHERE tag_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))", (ids,)
    )
    db.on_every_machine(
        conn,
        "DELETE FROM pending_model_tags WHERE tag_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))",
        (ids,),
    )
    conn.execute("DELETE FROM tags WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))", (ids,))


def _clean_name(name: str) -> str:
    clean = tags_service.normalize_tag_name(name)
    if not clean:
        raise BadRequest("name: must not be blank")
    if len(clean) > tags_service.MAX_TAG_LENGTH:
        raise BadRequest(f"name: tag names are at most {tags_service.MAX_TAG_LENGTH} characters")
    return clean


def rename_tag(conn: sqlite3.Connection, tag_id: int, name: str, dry_run: bool = False) -> dict:
    """Rename a tag; onto another tag's name (ignoring case) it merges into that tag."""
    clean = _clean_name(name)

    def change():
        tags_service.require_tag_ids(conn, [tag_id])
        before = _usage_of(conn, tag_id)
        key = clean.casefold()
        other = conn.execute(
            "SELECT id FROM tags WHERE name_key = ? AND id != ?", (key, tag_id)
        ).fetchone()
        if other is None:
            conn.execute("UPDATE tags SET name = ?, name_key = ? WHERE id = ?", (clean, key, tag_id))
            return {"tag": _usage_of(conn, tag_id), "merged": False, "before": [before]}
        target_before = _usage_of(conn, other[0])
        _fold_into(conn, other[0], [tag_id])
        return {"tag": _usage_of(conn, other[0]), "merged": True,
                "before": [before, target_before], "removed_ids": [tag_id]}

    return _run(conn, dry_run, change)


def merge_tags(conn: sqlite3.Connection, sources: list[int], target: int | str,
               dry_run: bool = False) -> dict:
    """Merge several tags into one (an id, or a name that is found or created)."""

    def change():
        ids = tags_service.require_tag_ids(conn, sources)
        if isinstance(target, str):
            target_id = tags_service.ensure_tags(conn, [_clean_name(target)])[0]["id"]
        else:
            target_id = tags_service.require_tag_ids(conn, [target])[0]
        before = [_usage_of(conn, i) for i in dict.fromkeys([*ids, target_id])]
        folded = [i for i in ids if i != target_id]
        _fold_into(conn, target_id, folded)
        return {"tag": _usage_of(conn, target_id), "merged": True, "before": before,
                "removed_ids": folded}

    return _run(conn, dry_run, change)


def delete_tags(conn: sqlite3.Connection, tag_ids: list[int], dry_run: bool = False) -> dict:
    """Delete tags; every model and pending model loses them, nothing else changes."""

    def change():
        ids = tags_service.require_tag_ids(conn, tag_ids)
        before = [_usage_of(conn, i) for i in ids]
        selection = json.dumps(ids)
        for table in ("model_tags", "pending_model_tags"):
            conn.execute(
                f"DELETE FROM {table} WHERE tag_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))", (selection,)
            )
        conn.execute("DELETE FROM tags WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))", (selection,))
        return {"deleted": before, "removed_ids": ids}

    return _run(conn, dry_run, change)
