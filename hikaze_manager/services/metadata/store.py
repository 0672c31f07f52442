"""Imported metadata in the library: fill-only-empty, the source of each value, user ownership.

A value's source is kept per field in ``model_metadata.sources``: an import source
(``lora_manager``, ``header``, ...) or ``user``. A field the user changed through the API is
``user`` for good: no import or re-read touches it again. A field with a value but no source
(typed before this feature, or migrated) counts as the user's too. Imported values may replace
earlier imported values (a re-read after the sidecar changed), never a user's.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Mapping

from ... import db
from .. import tags as tags_service
from . import merge
from .textio import word_list

USER = "user"
EXTRA_FIELDS = ("author", "tags", "nsfw", "preferred_weight")
HEADER_EXTRA = ("resolution", "network_module", "network_dim", "network_alpha", "base_checkpoint")
# Import field -> where it lives: a ``models`` column, a ``meta_json`` path, or model_metadata.
_MODEL_COLUMNS = {"name": "name", "base_model": "base_model"}
_META_PATHS = {"description": ("description",), "link": ("community_links",),
               "prompt": ("prompts", "positive"), "negative_prompt": ("prompts", "negative"),
               "author": ("author",)}
NSFW_TAG = "NSFW"
OWNED_FIELDS = (*_MODEL_COLUMNS, *_META_PATHS, "trigger_words")


def _loads(text, default):
    if not text:
        return default
    try:
        value = json.loads(text)
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _meta_get(meta: dict, path: tuple[str, ...]):
    value = meta
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _meta_set(meta: dict, path: tuple[str, ...], value) -> None:
    target = meta
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value


def _metadata_row(conn: sqlite3.Connection, sha256: str) -> dict:
    row = conn.execute("SELECT * FROM model_metadata WHERE sha256 = ?", (sha256,)).fetchone()
    return dict(row) if row is not None else {}


def _write_row(conn: sqlite3.Connection, sha256: str, values: Mapping) -> None:
    columns = ["sha256", *values, "updated_at"]
    params = [sha256, *values.values(), int(time.time() * 1000)]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    conn.execute(
        f"INSERT INTO model_metadata({', '.join(columns)}) VALUES ({','.join('?' * len(columns))})"
        f" ON CONFLICT(sha256) DO UPDATE SET {updates}",
        params,
    )


def _placeholder_name(name: str, path: str) -> bool:
    base = os.path.basename((path or "").replace("\\", "/"))
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return name in (base, stem)


def apply_import(conn: sqlite3.Connection, sha256: str, found: Mapping | None, *,
                 autov3: str | None = None) -> dict:
    """Fill the model's fields from what the files say (see module docstring); one transaction.

    Returns ``{"applied": [fields], "rejected": [...], "unverified": [...], "problems": [...]}``.
    """
    found = found or {}
    with db.transaction(conn):
        model = conn.execute(
            "SELECT path, name, base_model, size_bytes, meta_json FROM models WHERE sha256 = ?",
            (sha256,),
        ).fetchone()
        if model is None:
            return {"applied": [], "rejected": [], "unverified": [], "problems": []}
        stored = _metadata_row(conn, sha256)
        sources = _loads(stored.get("sources"), {})
        resolved = merge.resolve(found, sha256, model["size_bytes"] or None)
        values, origin = resolved["values"], resolved["sources"]
        meta = _loads(model["meta_json"], {})
        columns: dict = {}
        trigger_words = _loads(stored.get("trigger_words"), [])
        applied: list[str] = []
        for field in OWNED_FIELDS:
            if field not in values or sources.get(field) == USER:
                continue
            if field in _MODEL_COLUMNS:
                current = model[_MODEL_COLUMNS[field]] or ""
            elif field in _META_PATHS:
                current = _meta_get(meta, _META_PATHS[field]) or ""
            else:
                current = trigger_words
            replaceable = (not current or field in sources
                           or (field == "name" and _placeholder_name(current, model["path"])))
            if not replaceable:
                continue
            new = values[field]
            if field in _MODEL_COLUMNS:
                columns[_MODEL_COLUMNS[field]] = new
            elif field in _META_PATHS:
                _meta_set(meta, _META_PATHS[field], new)
            else:
                trigger_words = new
            sources[field] = origin[field]
            if new != current:
                applied.append(field)
        if _import_tags(conn, sha256, values, origin, sources):
            applied.append("tags")
        header = found.get("header_fields") or {}
        base_model = columns.get("base_model", model["base_model"] or "")
        columns["base_family"] = merge.base_family(base_model, header)
        if any(f in _META_PATHS for f in applied):
            columns["meta_json"] = _dumps(meta)
        conn.execute(
            f"UPDATE models SET {', '.join(f'{c} = ?' for c in columns)} WHERE sha256 = ?",
            [*columns.values(), sha256],
        )
        extra = {k: values[k] for k in EXTRA_FIELDS if k in values}
        extra.update({k: header[k] for k in HEADER_EXTRA if header.get(k)})
        report = {"rejected": resolved["rejected"], "unverified": resolved["unverified"],
                  "problems": list(found.get("problems") or [])}
        row: dict = {
            "trigger_words": _dumps(trigger_words),
            "autov2": sha256[:10],
            "sources": _dumps(sources),
            "extra": _dumps(extra),
            "report": _dumps(report),
        }
        if found:
            row["training_tags"] = _dumps(found.get("training_tags") or [])
            row["header_metadata"] = (_dumps(found["header_metadata"])
                                      if found.get("header_metadata") is not None else None)
        if autov3:
            row["autov3"] = autov3
        _write_row(conn, sha256, row)
    return {"applied": applied, **report}


def _import_tags(conn: sqlite3.Connection, sha256: str, values: Mapping, origin: Mapping,
                 sources: dict) -> bool:
    """Imported tags onto a model with none yet, and NSFW while its tags are not the user's.

    Tags the model has without a recorded source (set in the pending list, or before this
    feature) count as the user's. Returns True if a tag was linked.
    """
    if sources.get("tags") == USER:
        return False
    has_tags = conn.execute(
        "SELECT 1 FROM model_tags WHERE model_hash = ? LIMIT 1", (sha256,)).fetchone() is not None
    if has_tags and "tags" not in sources:
        return False
    names = [] if has_tags else list(values.get("tags") or [])
    if values.get("nsfw") is True:
        names.append(NSFW_TAG)
    if not names:
        return False
    linked = conn.executemany(
        "INSERT OR IGNORE INTO model_tags(model_hash, tag_id) VALUES (?, ?)",
        [(sha256, tag["id"]) for tag in tags_service.ensure_tags(conn, names)],
    ).rowcount
    sources["tags"] = origin.get("tags") or origin.get("nsfw")
    return linked > 0


def mark_user_owned(conn: sqlite3.Connection, sha256s, field: str) -> None:
    """Inside a transaction: ``field`` of each model becomes the user's (imports leave it)."""
    for sha256 in sha256s:
        sources = _loads(_metadata_row(conn, sha256).get("sources"), {})
        if sources.get(field) != USER:
            sources[field] = USER
            _write_row(conn, sha256, {"sources": _dumps(sources)})


def apply_user_changes(conn: sqlite3.Connection, sha256: str, before: Mapping, changes: Mapping) -> None:
    """Inside a PATCH's transaction: write ``base_model``/``trigger_words`` and mark every
    field the user changed as ``user``-owned. ``before`` is the models row before the PATCH."""
    stored = _metadata_row(conn, sha256)
    sources = _loads(stored.get("sources"), {})
    row: dict = {}
    owned: list[str] = []
    if "name" in changes and (changes["name"] or "") != (before["name"] or ""):
        owned.append("name")
    meta_changes = changes.get("meta_json") or {}
    old_meta = _loads(before["meta_json"], {})
    for field, path in _META_PATHS.items():
        if path[0] not in meta_changes:
            continue
        value = meta_changes[path[0]]
        if len(path) == 2:
            if not isinstance(value, Mapping) or path[1] not in value:
                continue
            value = value[path[1]]
        if (value or "") != (_meta_get(old_meta, path) or ""):
            owned.append(field)
    if "base_model" in changes:
        base_model = (changes["base_model"] or "").strip()
        if base_model != (before["base_model"] or ""):
            owned.append("base_model")
        header = {}
        tags = _loads(stored.get("header_metadata"), {})
        if tags:
            header = {"kohya": any(k.startswith("ss_") for k in tags),
                      "ss_v2": str(tags.get("ss_v2", "")).lower() == "true"}
        conn.execute("UPDATE models SET base_model = ?, base_family = ? WHERE sha256 = ?",
                     (base_model, merge.base_family(base_model, header), sha256))
    if "trigger_words" in changes:
        words = word_list(changes["trigger_words"])
        if words != _loads(stored.get("trigger_words"), []):
            owned.append("trigger_words")
        row["trigger_words"] = _dumps(words)
    if not owned and not row:
        return
    for field in owned:
        sources[field] = USER
    row["sources"] = _dumps(sources)
    _write_row(conn, sha256, row)


def record_fields(conn: sqlite3.Connection, sha256: str, base_model: str | None,
                  base_family: str | None) -> dict:
    """The metadata part of a full model record."""
    stored = _metadata_row(conn, sha256)
    return {
        "base_model": base_model or "",
        "base_family": base_family or "UNKNOWN",
        "trigger_words": _loads(stored.get("trigger_words"), []),
        "training_tags": _loads(stored.get("training_tags"), []),
        "header_metadata": _loads(stored.get("header_metadata"), {}) or None,
        "autov2": stored.get("autov2") or sha256[:10],
        "autov3": stored.get("autov3") or "",
        "metadata_sources": _loads(stored.get("sources"), {}),
        "imported_info": _loads(stored.get("extra"), {}),
        "metadata_report": _loads(stored.get("report"), {}) or None,
    }


def trigger_words_for(conn: sqlite3.Connection, sha256s) -> dict[str, list[str]]:
    """Trigger words per model (every sha asked for is a key; unknown ones map to ``[]``)."""
    wanted = list(dict.fromkeys(s.lower() for s in sha256s if isinstance(s, str)))
    result = {sha: [] for sha in wanted}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = conn.execute(
            f"SELECT sha256, trigger_words FROM model_metadata WHERE sha256 IN "
            f"({','.join('?' * len(chunk))})", chunk)
        for sha, text in rows:
            result[sha] = [w for w in _loads(text, []) if isinstance(w, str)]
    return result


def autov3_known(conn: sqlite3.Connection, sha256: str) -> bool:
    """True if the model's AutoV3 is stored already."""
    row = conn.execute("SELECT autov3 FROM model_metadata WHERE sha256 = ?", (sha256,)).fetchone()
    return bool(row and row[0])
