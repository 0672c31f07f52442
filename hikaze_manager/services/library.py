"""The library of models keyed by SHA-256: listing, details and all-or-nothing updates."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Mapping

from .. import db
from ..errors import NotFound, PreconditionFailed
from . import tags as tags_service
from .list_cache import etag_of
from .metadata import store as metadata_store

OTHERS = "others"
_LIST_COLUMNS = ("m.sha256, m.path, m.name, m.type, m.size_bytes, m.created_at, m.base_model,"
                 " m.base_family")


def parse_meta(text: str | None) -> dict:
    """The stored meta object; anything unparsable or not an object reads as empty."""
    if not text:
        return {}
    try:
        meta = json.loads(text)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def as_text(value) -> str:
    """A stored meta value as the API's string (None reads as empty)."""
    return value if isinstance(value, str) else ("" if value is None else str(value))


def shape_prompts(meta: Mapping) -> dict:
    """``prompts`` with both keys as strings, whatever was stored."""
    prompts = meta.get("prompts")
    prompts = prompts if isinstance(prompts, Mapping) else {}
    return {"positive": as_text(prompts.get("positive")), "negative": as_text(prompts.get("negative"))}


def shape_meta(meta: Mapping, images_count: int) -> dict:
    """The API's ``meta_json``: defaults filled in, ``images_count`` from disk."""
    return {
        "description": as_text(meta.get("description")),
        "community_links": as_text(meta.get("community_links")),
        "images_count": images_count,
        "prompts": shape_prompts(meta),
    }


def display_name(name: str | None, path: str | None) -> str:
    """The name, or the file name of the path when the name is empty."""
    if name:
        return name
    path = path or ""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def model_types_in_db(conn: sqlite3.Connection) -> list[str]:
    """Distinct non-empty types of library models (fallback when no types are configured)."""
    rows = conn.execute(
        "SELECT DISTINCT type FROM models WHERE type IS NOT NULL AND type != '' ORDER BY type"
    )
    return [row[0] for row in rows]


def _type_filter(model_type: str, known_types: list[str]) -> tuple[str, list]:
    if model_type.lower() == OTHERS:
        if not known_types:
            return "1 = 1", []
        placeholders = ",".join("?" * len(known_types))
        return (
            f"(m.type IS NULL OR m.type = '' OR m.type NOT IN ({placeholders}))",
            list(known_types),
        )
    return "m.type = ?", [model_type]


def _plain_cursor(conn: sqlite3.Connection) -> sqlite3.Cursor:
    cursor = conn.cursor()
    cursor.row_factory = None  # tuples: the listing's hot loops index by position
    return cursor


def _tags_by_model(conn: sqlite3.Connection, where: str, params: list) -> dict[str, list[dict]]:
    # Tag objects are built once and shared; each model's list is sorted by the tags' name
    # rank, which is cheaper than making SQLite sort every (model, tag) pair.
    tags = {}
    rank = {}
    for position, (tag_id, name) in enumerate(
        _plain_cursor(conn).execute("SELECT id, name FROM tags ORDER BY name_key, id")
    ):
        tags[tag_id] = {"id": tag_id, "name": name}
        rank[tag_id] = position
    by_model: dict[str, list[int]] = {}
    for model_hash, tag_id in _plain_cursor(conn).execute(
        "SELECT mt.model_hash, mt.tag_id FROM model_tags mt "
        f"JOIN models m ON m.sha256 = mt.model_hash WHERE {where}",
        params,
    ):
        by_model.setdefault(model_hash, []).append(tag_id)
    # A link to a tag that is gone (deleted by a program with foreign keys off) is not shown.
    return {
        model_hash: [tags[t] for t in sorted((t for t in ids if t in rank), key=rank.__getitem__)]
        for model_hash, ids in by_model.items()
    }


def list_models(
    conn: sqlite3.Connection, model_type: str, known_types: list[str], image_counts: Mapping[str, int]
) -> list[dict]:
    """Models of one type (or ``others``) with their tags, in three queries whatever the size."""
    where, params = _type_filter(model_type, known_types)
    rows = _plain_cursor(conn).execute(
        f"SELECT {_LIST_COLUMNS} FROM models m WHERE {where} "
        "ORDER BY lower(COALESCE(NULLIF(m.name, ''), m.path)), m.sha256",
        params,
    ).fetchall()
    tags = _tags_by_model(conn, where, params)
    no_tags: list = []
    return [
        {
            "sha256": sha256,
            "name": name or display_name(name, path),
            "images_count": image_counts.get(sha256, 0),
            "type": type_ or "",
            "path": path or "",
            "size_bytes": size_bytes or 0,
            "created_at": created_at or 0,
            "tags": tags.get(sha256, no_tags),
            "base_model": base_model or "",
            "base_family": base_family or "UNKNOWN",
        }
        for sha256, path, name, type_, size_bytes, created_at, base_model, base_family in rows
    ]


def model_tags(conn: sqlite3.Connection, sha256: str) -> list[dict]:
    """Tags of one model, ordered by name."""
    rows = _plain_cursor(conn).execute(
        "SELECT t.id, t.name FROM model_tags mt JOIN tags t ON t.id = mt.tag_id "
        "WHERE mt.model_hash = ? ORDER BY t.name_key, t.id",
        (sha256,),
    )
    return [{"id": tag_id, "name": name} for tag_id, name in rows]


def get_model(conn: sqlite3.Connection, sha256: str, images_count: int) -> dict:
    """The full record of one model, or 404."""
    row = _plain_cursor(conn).execute(
        "SELECT sha256, path, name, type, size_bytes, created_at, meta_json, base_model, base_family"
        " FROM models WHERE sha256 = ?",
        (sha256,),
    ).fetchone()
    if row is None:
        raise NotFound("Model not found")
    sha256, path, name, type_, size_bytes, created_at, meta_json, base_model, base_family = row
    meta = parse_meta(meta_json)
    return {
        "sha256": sha256,
        "path": path or "",
        "name": name or "",
        "type": type_ or "",
        "size_bytes": size_bytes or 0,
        "created_at": created_at or 0,
        "meta_json": shape_meta(meta, images_count),
        "tags": model_tags(conn, sha256),
        "author": as_text(meta.get("author")),
        **metadata_store.record_fields(conn, sha256, base_model, base_family),
    }


def model_body(conn: sqlite3.Connection, sha256: str, images_count: int) -> bytes:
    """The exact bytes ``GET /api/models/{sha256}`` sends (compact UTF-8 JSON), or 404."""
    record = get_model(conn, sha256, images_count)
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    try:
        return f"{text}\n".encode()
    except UnicodeEncodeError:  # a lone surrogate (undecodable file name): escape it, never a 500
        return f"{json.dumps(record, separators=(',', ':'))}\n".encode()


def model_etag(conn: sqlite3.Connection, sha256: str, images_count: int) -> str:
    """The ETag ``GET /api/models/{sha256}`` sends for the record as stored now, or 404."""
    return etag_of(model_body(conn, sha256, images_count))


def merge_meta(stored: dict, changes: Mapping) -> dict:
    """Apply a partial meta: keys sent replace, keys not sent are kept, ``prompts`` merges too."""
    merged = dict(stored)
    for key, value in changes.items():
        if key == "images_count":
            continue
        if key == "prompts":
            prompts = merged.get("prompts")
            prompts = dict(prompts) if isinstance(prompts, Mapping) else {}
            for prompt_key, prompt in (value or {}).items():
                prompts[prompt_key] = prompt or ""
            merged["prompts"] = prompts
        else:
            merged[key] = value or ""
    merged.pop("images_count", None)
    return merged


def update_model(
    conn: sqlite3.Connection,
    sha256: str,
    changes: Mapping,
    *,
    images_count: Callable[[str], int],
    check_path: Callable[[str], str] | None = None,
    if_match: Collection[str] | None = None,
) -> None:
    """Apply a validated PATCH in one transaction: every change or none.

    ``check_path`` validates a new path (and returns the stored form); it raises to refuse it.
    ``if_match`` (entity tags from ``If-Match``; None for no condition) is checked under the
    write lock, so two clients holding the same tag cannot both write: the second gets a 412.
    It is compared with the ETag of the record as it is now, pictures counted by ``images_count``
    (the same count the GET that handed out the tag used).
    """
    with db.transaction(conn):
        row = conn.execute(
            "SELECT path, name, base_model, meta_json FROM models WHERE sha256 = ?", (sha256,)
        ).fetchone()
        if row is None:
            raise NotFound("Model not found")
        if if_match is not None:
            current = model_etag(conn, sha256, images_count(sha256))
            if current not in if_match:
                raise PreconditionFailed(
                    "This model was changed by someone else since you loaded it; reload it and "
                    "apply your changes again",
                    details={"etag": current},
                )
        if "author" in changes:  # kept in the meta with the other texts a person can type
            meta_changes = {**changes.get("meta_json", {}), "author": (changes["author"] or "").strip()}
            changes = {**changes, "meta_json": meta_changes}
        assignments: dict[str, object] = {}
        for key in ("name", "type"):
            if key in changes:
                assignments[key] = changes[key]
        if "path" in changes and changes["path"] != row["path"]:
            if check_path is None:
                from ..errors import BadRequest

                raise BadRequest("path cannot be changed here")
            assignments["path"] = check_path(changes["path"])
        if "meta_json" in changes:
            meta = merge_meta(parse_meta(row["meta_json"]), changes["meta_json"])
            assignments["meta_json"] = json.dumps(meta, ensure_ascii=False)
        if "tags" in changes:
            tag_ids = tags_service.require_tag_ids(conn, changes["tags"])
            old_ids = {r[0] for r in conn.execute(
                "SELECT tag_id FROM model_tags WHERE model_hash = ?", (sha256,))}
            if set(tag_ids) != old_ids:
                metadata_store.mark_user_owned(conn, [sha256], "tags")
            conn.execute("DELETE FROM model_tags WHERE model_hash = ?", (sha256,))
            conn.executemany(
                "INSERT INTO model_tags(model_hash, tag_id) VALUES (?, ?)",
                [(sha256, tag_id) for tag_id in tag_ids],
            )
        metadata_store.apply_user_changes(conn, sha256, row, changes)
        if assignments:
            columns = ", ".join(f"{column} = ?" for column in assignments)
            conn.execute(
                f"UPDATE models SET {columns} WHERE sha256 = ?", [*assignments.values(), sha256]
            )
