"""Tags: one per name ignoring case, after trimming and Unicode NFC normalisation."""

from __future__ import annotations

import sqlite3
import unicodedata

from ..errors import BadRequest

MAX_TAG_LENGTH = 200


def normalize_tag_name(name: str) -> str:
    """The stored spelling of a tag: trimmed, NFC-normalised, inner whitespace runs collapsed."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def tag_key(name: str) -> str:
    """The identity of a tag name: ``NSFW`` and ``nsfw`` share one key."""
    return normalize_tag_name(name).casefold()


def list_tags(conn: sqlite3.Connection) -> list[dict]:
    """Every tag, ordered by name ignoring case."""
    rows = conn.execute("SELECT id, name FROM tags ORDER BY name_key, id").fetchall()
    return [{"id": row["id"], "name": row["name"]} for row in rows]


def ensure_tags(conn: sqlite3.Connection, names: list[str]) -> list[dict]:
    """Return the tag for each distinct name, creating missing ones; call inside a transaction.

    Blank names are skipped; a name that differs only in case from an existing tag resolves to it.
    """
    result: list[dict] = []
    seen: set[str] = set()
    for raw in names:
        name = normalize_tag_name(raw)
        if not name:
            continue
        if len(name) > MAX_TAG_LENGTH:
            raise BadRequest(f"tag names are at most {MAX_TAG_LENGTH} characters")
        key = name.casefold()
        if key in seen:
            continue
        seen.add(key)
        row = conn.execute("SELECT id, name FROM tags WHERE name_key = ?", (key,)).fetchone()
        if row is None:
            cursor = conn.execute(
                "INSERT INTO tags(name, name_key) VALUES (?, ?)", (name, key)
            )
            row = {"id": cursor.lastrowid, "name": name}
            conn.execute(
                "UPDATE db_meta SET value = ? WHERE key = 'tags_id_max' AND CAST(value AS INTEGER) < ?",
                (str(cursor.lastrowid), cursor.lastrowid),
            )
        result.append({"id": row["id"], "name": row["name"]})
    return result


def require_tag_ids(conn: sqlite3.Connection, tag_ids: list[int]) -> list[int]:
    """Return the distinct ids in order, or raise 400 naming the ids that do not exist."""
    unique = list(dict.fromkeys(tag_ids))
    if not unique:
        return []
    placeholders = ",".join("?" * len(unique))
    found = {
        row[0]
        for row in conn.execute(f"SELECT id FROM tags WHERE id IN ({placeholders})", unique)
    }
    missing = [tag_id for tag_id in unique if tag_id not in found]
    if missing:
        raise BadRequest(
            "unknown tag id(s): " + ", ".join(str(m) for m in missing),
            details={"tags": [f"unknown tag id {m}" for m in missing]},
        )
    return unique
