"""Edits of many library models at once: tags, type, removal; one set-based transaction each.

The selection travels as one JSON array bound to ``json_each``, so 5,000 models cost a handful of
statements, not 5,000 round trips.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from .. import db
from ..errors import BadRequest
from . import tags as tags_service
from .images import ImageStore
from .metadata import store as metadata_store

_SELECTED = "SELECT value FROM json_each(?)"
_SELECTED_IDS = "SELECT CAST(value AS BIGINT) FROM json_each(?)"


def _as_json(values: Iterable) -> str:
    return json.dumps(list(values))


def require_models(conn: sqlite3.Connection, shas: list[str]) -> list[str]:
    """The distinct hashes in order, or 400 naming the ones that are not in the library."""
    unique = list(dict.fromkeys(shas))
    found = {
        row[0]
        for row in conn.execute(
            f"SELECT sha256 FROM models WHERE sha256 IN ({_SELECTED})", (_as_json(unique),)
        )
    }
    missing = [sha for sha in unique if sha not in found]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise BadRequest(f"unknown model(s): {shown}", details={"sha256": missing[:100]})
    return unique


def _tags_by_name(conn: sqlite3.Connection, names: list[str]) -> tuple[list[dict], list[str]]:
    found, missing = [], []
    for name in names:
        key = tags_service.tag_key(name)
        row = conn.execute("SELECT id, name FROM tags WHERE name_key = ?", (key,)).fetchone()
        if row is None:
            missing.append(name)
        else:
            found.append({"id": row[0], "name": row[1]})
    return found, missing


def resolve_tag_refs(conn: sqlite3.Connection, refs: list, create: bool) -> list[dict]:
    """Tags for ids and names; new names are created when ``create``, else 400 names them."""
    ids = [ref for ref in refs if isinstance(ref, int)]
    names = [ref for ref in refs if isinstance(ref, str) and tags_service.normalize_tag_name(ref)]
    result: list[dict] = []
    if ids:
        tags_service.require_tag_ids(conn, ids)
        rows = conn.execute(
            f"SELECT id, name FROM tags WHERE id IN ({_SELECTED_IDS})", (_as_json(ids),)
        ).fetchall()
        result.extend({"id": row[0], "name": row[1]} for row in rows)
    if names:
        if create:
            result.extend(tags_service.ensure_tags(conn, names))
        else:
            found, missing = _tags_by_name(conn, names)
            if missing:
                raise BadRequest("unknown tag(s): " + ", ".join(missing[:10]),
                                 details={"remove": missing[:100]})
            result.extend(found)
    unique = {tag["id"]: tag for tag in result}
    return sorted(unique.values(), key=lambda t: (tags_service.tag_key(t["name"]), t["id"]))


def edit_tags(conn: sqlite3.Connection, shas: list[str], add: list, remove: list) -> dict:
    """Add and remove tags on many models in one transaction; all of it applies or none."""
    with db.transaction(conn):
        models = require_models(conn, shas)
        removed = resolve_tag_refs(conn, remove, create=False)
        added = resolve_tag_refs(conn, add, create=True)
        remove_ids = [t["id"] for t in removed]
        add_ids = [t["id"] for t in added if t["id"] not in set(remove_ids)]
        selection = _as_json(models)
        unlinked = conn.execute(
            f"DELETE FROM model_tags WHERE model_hash IN ({_SELECTED}) "
            f"AND tag_id IN ({_SELECTED_IDS})",
            (selection, _as_json(remove_ids)),
        ).rowcount if remove_ids else 0
        linked = conn.execute(
            "INSERT OR IGNORE INTO model_tags(model_hash, tag_id) "
            "SELECT m.value, CAST(t.value AS BIGINT) FROM json_each(?) m, json_each(?) t",
            (selection, _as_json(add_ids)),
        ).rowcount if add_ids else 0
        if remove_ids or add_ids:
            metadata_store.mark_user_owned(conn, models, "tags")
    return {
        "models": len(models),
        "added": [t for t in added if t["id"] in set(add_ids)],
        "removed": removed,
        "links_added": linked,
        "links_removed": unlinked,
    }


def set_type(conn: sqlite3.Connection, shas: list[str], model_type: str) -> dict:
    """Give many models one type in one statement."""
    with db.transaction(conn):
        models = require_models(conn, shas)
        changed = conn.execute(
            f"UPDATE models SET type = ? WHERE sha256 IN ({_SELECTED}) AND "
            "(type IS NULL OR type != ?)",
            (model_type, _as_json(models), model_type),
        ).rowcount
    return {"models": len(models), "changed": changed, "type": model_type}


def remove_models(conn: sqlite3.Connection, store: ImageStore, shas: list[str]) -> dict:
    """Remove models from the library (rows and tag links in one transaction), then their pictures.

    The model files are not touched. Picture removal runs after the commit and is idempotent: a
    crash in between leaves sets of a model that no longer exists, which
    :func:`remove_orphan_sets` deletes at the next start.
    """
    with db.transaction(conn):
        models = require_models(conn, shas)
        selection = _as_json(models)
        conn.execute(f"DELETE FROM model_tags WHERE model_hash IN ({_SELECTED})", (selection,))
        conn.execute(f"DELETE FROM models WHERE sha256 IN ({_SELECTED})", (selection,))
    pictures = store.remove_sets(models)
    return {"removed": len(models), "sha256": models, "pictures_removed": pictures}


def remove_orphan_sets(conn: sqlite3.Connection, store: ImageStore,
                       owners: set[str] | None = None) -> int:
    """At start-up: delete the sets of models no longer in the library (and not announced in the
    image journal), so a re-imported file never shows a removed model's pictures. ``owners``:
    the models with picture sets, as the store's ``recover()`` found them (else its ``owners()``).

    On a shared library the other machines keep running: a set one of them has written for a
    model it has not committed yet is announced in that machine's journal, so every machine's
    journal is read. All of it runs under the write lock, in which no machine announces, writes
    a set or commits a model: what the check finds is still true when the sets are deleted. (A
    grace period on the sets' age would guess how long an import may stall, and compare clocks
    of different machines.)
    """
    if owners is None:
        owners = store.owners()
    if not owners:
        return 0
    with db.transaction(conn):
        journals = db.every_machine_table(conn, "image_writes", "sha256")
        known = {row[0] for row in conn.execute(
            f"SELECT sha256 FROM models WHERE sha256 IN ({_SELECTED})"
            f" UNION SELECT w.sha256 FROM {journals} w WHERE w.sha256 IN ({_SELECTED})",
            (_as_json(owners), _as_json(owners)))}
        orphans = sorted(owners - known)
        return store.remove_sets(orphans, conn=conn) if orphans else 0
