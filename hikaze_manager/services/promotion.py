"""Promotion (stage 2): pending rows become library models keyed by the SHA-256 of their file.

Differences from the reference (reference-behaviour 4.2, 8.2.8-9), on purpose:

* A strategy applies only to items that conflict with a library model; an item without a conflict
  is promoted whatever the strategy.
* ``override`` replaces the library entry's fields where the pending row has a value (so it never
  wipes a description); ``merge`` keeps the entry and fills each empty field. Both union the tags
  and keep the existing images.
* ``delete`` also removes the pending image file (unless another pending row still uses it).
* Each item is atomic across the database and the image files: the set is announced in the image
  journal before it is written and settled by the item's transaction; if that fails (or the
  process is killed) the set is removed again (at start-up at the latest), and a picture already
  in the model's sets is not added again, so a retry never duplicates an image.
* Files are hashed through the hash cache, several at once.
"""

from __future__ import annotations

import json
import logging
import ntpath
import sqlite3
import time

from .. import db
from ..db import as_row_id
from ..db import errors as db_errors
from . import hashing, image_journal
from .jobs import JobCancelled, byte_progress
from .library import display_name, parse_meta
from .metadata import importing as file_metadata
from .metadata.store import apply_import
from .pending import old_meta

logger = logging.getLogger(__name__)

STRATEGIES = ("override", "merge", "ignore", "delete")
META_TEXT_FIELDS = ("description", "community_links")
PROMPT_FIELDS = ("positive", "negative")


class _Outcome(Exception):
    """Ends one item early with a report entry (raised inside its transaction to roll it back)."""

    def __init__(self, bucket: str, entry):
        super().__init__(bucket)
        self.bucket = bucket
        self.entry = entry


def normalize_strategy(value) -> str | None:
    """``None`` and the string ``"null"`` mean "report conflicts"; others must be known strategies."""
    if value is None or value == "null":
        return None
    if value not in STRATEGIES:
        raise ValueError(value)
    return value


def _parse_id(raw) -> int | None:
    parsed = as_row_id(raw)
    return parsed if parsed is not None and parsed >= 0 else None


def _image_name(meta: dict) -> str | None:
    images = meta["images"]
    if not images:
        return None
    name = images[0].replace("\\", "/").rsplit("/", 1)[-1]
    return name or None


def _load_rows(conn: sqlite3.Connection, ids: list[int]) -> dict[int, sqlite3.Row]:
    rows: dict[int, sqlite3.Row] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        sql = f"SELECT * FROM pending_import WHERE id IN ({','.join('?' * len(chunk))})"
        rows.update((row["id"], row) for row in conn.execute(sql, chunk))
    return rows


def promote_pending(conn: sqlite3.Connection, ids: list, strategy: str | None, images, job=None) -> dict:
    """Promote each id in order and return the ``BatchPromotionReport``."""
    report: dict = {"total": len(ids), "success": [], "conflict": [], "ignored": [], "deleted": [],
                    "failed": []}
    warnings: list[dict] = []
    parsed = [(raw, _parse_id(raw)) for raw in ids]
    rows = _load_rows(conn, [pid for _, pid in parsed if pid is not None])
    paths = [row["path"] for row in rows.values() if row["path"]]
    if job is not None:
        job.set_totals(files=len(ids), bytes_=sum((row["size_bytes"] or 0) for row in rows.values()
                                                   if row["path"]))
        job.advance(message="hashing")
    digests = hashing.hash_files(conn, paths, progress=byte_progress(job), on_file=_on_file(job),
                                 autov3=True)
    if job is not None:
        job.advance(message="promoting")
    for raw, pending_id in parsed:
        if job is not None and job.cancel_requested:  # stop between items; report what is done
            raise JobCancelled(_with_warnings(report, warnings), 207)
        try:
            bucket, entry = _promote_one(conn, raw, pending_id, rows, digests, strategy, images,
                                         warnings)
        except _Outcome as outcome:
            bucket, entry = outcome.bucket, outcome.entry
        report[bucket].append(entry)
        if job is not None:
            job.advance(files=1)
    return _with_warnings(report, warnings)


def _with_warnings(report: dict, warnings: list[dict]) -> dict:
    if warnings:
        report["warnings"] = warnings
    return report


def _on_file(job):
    if job is None:
        return None

    def on_file(result: hashing.HashResult) -> None:
        if result.cached or result.error:
            job.advance(bytes_=result.size)

    return on_file


def _fail(pending_id, message: str) -> _Outcome:
    return _Outcome("failed", {"id": pending_id, "error": message})


def _promote_one(conn, raw, pending_id, rows, digests, strategy, images, warnings):
    if pending_id is None:
        raise _fail(raw, "Invalid id")
    # Re-read the row: an earlier item of the batch (the same id twice) or another request may
    # have promoted or changed it since the batch was hashed.
    row = conn.execute("SELECT * FROM pending_import WHERE id = ?", (pending_id,)).fetchone()
    if row is None:
        raise _fail(pending_id, "Pending model not found")
    if not row["path"]:
        raise _fail(pending_id, "Pending model missing path")
    if row["path"] not in digests:
        digests.update(hashing.hash_files(conn, [row["path"]], autov3=True))
    digest = digests.get(row["path"])
    if digest is None or digest.sha256 is None:
        raise _fail(pending_id, (digest.error if digest else None) or "SHA256 calculation failed")
    sha = digest.sha256
    meta = old_meta(row["meta_json"])
    image_name = _image_name(meta)
    existing = conn.execute("SELECT path FROM models WHERE sha256 = ?", (sha,)).fetchone()
    if existing is not None and not existing["path"] and strategy != "override":
        # In the library with no file on this machine (a shared library: another machine's
        # model): no conflict, this file becomes its path here and fills what is empty.
        strategy = "merge"

    if existing is not None and strategy in ("ignore", None):
        if strategy == "ignore":
            return "ignored", pending_id
        return "conflict", _conflict_entry(conn, row, sha)
    if existing is not None and strategy == "delete":
        try:
            with db.transaction(conn):
                _current_row(conn, pending_id)
                conn.execute("DELETE FROM pending_import WHERE id = ?", (pending_id,))
                keep_image = _image_still_used(conn, image_name)
        except db_errors.Error as exc:  # either store: this item fails, the batch goes on
            raise _fail(pending_id, f"Database error: {db_errors.primary_message(exc)}") from None
        if image_name and not keep_image:
            _delete_pending_image(images, image_name)
        return "deleted", pending_id

    journaled, pending_image_used = _add_image(conn, images, sha, image_name, pending_id, warnings)
    found = file_metadata.found_for(row["path"], row["meta_json"])
    if not pending_image_used:  # no picture of its own: the preview beside the file, if the model has none
        journaled = _add_preview(conn, images, sha, row["path"], found, pending_id, warnings)
    autov3 = (digest.autov3 if digest.autov3 is not None
              else file_metadata.autov3_for(conn, sha, row["path"]))
    try:
        with db.transaction(conn):
            current = _current_row(conn, pending_id)
            if current["path"] != row["path"]:
                raise _fail(pending_id, "File changed while hashing")
            target = conn.execute("SELECT * FROM models WHERE sha256 = ?", (sha,)).fetchone()
            if target is not None and not target["path"] and strategy != "override":
                strategy = "merge"
            if target is not None and strategy is None:  # promoted meanwhile by someone else
                raise _Outcome("conflict", _conflict_entry(conn, row, sha))
            if target is not None and strategy in ("ignore", "delete"):
                raise _Outcome("ignored", pending_id)
            if target is None:
                _insert_model(conn, sha, current, meta, digest.size)
            elif strategy == "override":
                _override_model(conn, target, current, meta, digest.size)
            else:
                _merge_model(conn, target, current, meta)
            # Tags given in the pending list first: imported tags then count them as the user's.
            conn.execute(
                "INSERT OR IGNORE INTO model_tags(model_hash, tag_id) "
                "SELECT ?, tag_id FROM pending_model_tags WHERE model_id = ?",
                (sha, pending_id),
            )
            summary = apply_import(conn, sha, found, autov3=autov3 or None)
            conn.execute("DELETE FROM pending_import WHERE id = ?", (pending_id,))
            keep_image = _image_still_used(conn, image_name)
            if journaled is not None:
                image_journal.settle(conn, journaled.settled)
    except BaseException as exc:
        if journaled is not None and journaled.own is not None:
            image_journal.undo_quietly(conn, images, journaled.own)
        if isinstance(exc, db_errors.Error):
            logger.warning("[Hikaze] promotion of pending %s failed: %s", pending_id, exc)
            raise _fail(pending_id, f"Database error: {db_errors.primary_message(exc)}") from None
        raise
    if pending_image_used and not keep_image:
        _delete_pending_image(images, image_name)
    warnings.extend({"id": pending_id, "warning": line}
                    for line in file_metadata.warnings_of(summary))
    return "success", pending_id


def _current_row(conn, pending_id: int) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM pending_import WHERE id = ?", (pending_id,)).fetchone()
    if row is None:
        raise _fail(pending_id, "Pending model not found")
    return row


def _conflict_entry(conn, row, sha: str) -> dict:
    existing = conn.execute("SELECT path, name FROM models WHERE sha256 = ?", (sha,)).fetchone()
    existing_path = existing["path"] if existing else ""
    return {
        "pending": {"id": row["id"], "path": row["path"],
                    "name": display_name(row["name"], row["path"])},
        "existing": {"id": sha, "path": existing_path,
                     "name": display_name(existing["name"] if existing else "", existing_path)},
    }


def _image_still_used(conn, image_name: str | None) -> bool:
    """True if another pending row still points at this pending image file."""
    if not image_name:
        return False
    like = "%" + image_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    for (text,) in conn.execute(
        "SELECT meta_json FROM pending_import WHERE meta_json LIKE ? ESCAPE '\\'", (like,)
    ):
        if _image_name(old_meta(text)) == image_name:
            return True
    return False


def _add_image(conn, images, sha: str, image_name: str | None, pending_id: int,
               warnings) -> tuple[image_journal.Journaled | None, bool]:
    """Turn the pending original into a new image set (see :func:`image_journal.add_set`).

    ``(journal entries or None, whether the picture is now one of the model's sets)``: a
    picture the model already has counts as used, so its pending original goes with the row.
    """
    if not image_name:
        return None, False
    try:
        path = images.pending_image_path(image_name)
        if path is None or not path.is_file():
            return None, False
        return image_journal.add_set(conn, images, sha, path.read_bytes()), True
    except Exception as exc:  # ImageError, UnsupportedImage, OSError...: promote without it
        message = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
        logger.warning("[Hikaze] pending %s: image %r not imported: %s", pending_id, image_name, message)
        warnings.append({"id": pending_id, "warning": f"image not imported: {message}"})
        return None, False


def _add_preview(conn, images, sha: str, path: str, found, pending_id: int,
                 warnings) -> image_journal.Journaled | None:
    """The preview file beside the model as its first set, journaled like the pending original."""
    data, warning = file_metadata.preview_picture(images, sha, path, found)
    if data is not None:
        try:
            return image_journal.add_set(conn, images, sha, data)
        except Exception as exc:  # ImageError, UnsupportedImage, OSError: import the rest anyway
            warning = f"preview not imported: {getattr(exc, 'message', None) or exc or type(exc).__name__}"
    if warning:
        warnings.append({"id": pending_id, "warning": warning})
    return None


def _delete_pending_image(images, name: str) -> None:
    try:
        images.delete_pending_image(name)
    except Exception as exc:
        logger.warning("[Hikaze] could not delete pending image %r: %s", name, exc)


def _library_meta(meta: dict) -> dict:
    return {
        "description": meta["description"],
        "community_links": meta["community_links"],
        "prompts": dict(meta["prompts"]),
    }


def _insert_model(conn, sha: str, row, meta: dict, size: int) -> None:
    conn.execute(
        "INSERT INTO models(sha256, path, name, type, size_bytes, created_at, meta_json) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (sha, row["path"], row["name"] or ntpath.basename(row["path"].replace("\\", "/")),
         row["type"] or "", size, row["created_at"] or int(time.time() * 1000),
         json.dumps(_library_meta(meta), ensure_ascii=False)),
    )


def _override_model(conn, target, row, meta: dict, size: int) -> None:
    """The pending row's values replace the entry's wherever the pending row has one."""
    stored = parse_meta(target["meta_json"])
    for key in META_TEXT_FIELDS:
        if meta[key]:
            stored[key] = meta[key]
    prompts = stored.get("prompts") if isinstance(stored.get("prompts"), dict) else {}
    for key in PROMPT_FIELDS:
        if meta["prompts"][key]:
            prompts[key] = meta["prompts"][key]
    stored["prompts"] = prompts
    stored.pop("images_count", None)
    conn.execute(
        "UPDATE models SET path = ?, name = ?, type = ?, size_bytes = ?, created_at = ?,"
        " meta_json = ? WHERE sha256 = ?",
        (row["path"], row["name"] or target["name"], row["type"] or target["type"], size,
         row["created_at"] or target["created_at"], json.dumps(stored, ensure_ascii=False),
         target["sha256"]),
    )


def _merge_model(conn, target, row, meta: dict) -> None:
    """The entry is kept; each of its empty fields is filled from the pending row."""
    stored = parse_meta(target["meta_json"])
    for key in META_TEXT_FIELDS:
        if not stored.get(key):
            stored[key] = meta[key]
    prompts = stored.get("prompts") if isinstance(stored.get("prompts"), dict) else {}
    for key in PROMPT_FIELDS:
        if not prompts.get(key):
            prompts[key] = meta["prompts"][key]
    stored["prompts"] = prompts
    stored.pop("images_count", None)
    conn.execute(
        "UPDATE models SET path = ?, name = ?, type = ?, meta_json = ? WHERE sha256 = ?",
        (target["path"] or row["path"], target["name"] or row["name"], target["type"] or row["type"],
         json.dumps(stored, ensure_ascii=False), target["sha256"]),
    )
