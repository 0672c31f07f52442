"""Legacy migration, stage 1: bring a v1 library over, completely, read-only and safely twice.

Rows with a full SHA-256 become library entries, the others pending entries. The run has three
phases: plan (read our DB), images (written atomically by the image store, outside any lock),
then every DB change in ONE transaction, re-planned inside it so concurrent edits are respected.
A failure or cancel rolls the transaction back and deletes the images this run added; each set is
announced in the image journal before it is written and settled by that one transaction, so a
kill at any moment leaves no set behind once the server restarts (``services/image_journal.py``);
a set a failed run could not undo (the database was gone) is reused by the retry, never added
twice (``services/legacy_pictures.py``).

Re-running is safe because ``legacy_imports`` remembers each v1 row by (library identity, v1 id,
v1 path):

* a remembered row is never applied again (edits, deletions and promotions made since are kept),
  except that an image that could not be imported before (no or missing images folder) is added;
* a library entry that already exists is never overwritten: only its empty name, type, path,
  size, description, links and prompts are filled, tags are added (never removed), and the v1
  picture is added only if the entry has no picture at all;
* a pending row whose path is already pending or in the library is merged the same way, not
  duplicated; legacy ids are reused as pending ids only when free;
* tags are matched by name ignoring case (``ensure_tags``), never by id;
* the same picture (by content hash) is never added twice to one entry.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..db import ids_handed_out, transaction
from ..db import errors as db_errors
from ..db.upgrades import backup_database
from ..errors import Conflict
from . import image_journal
from . import tags as tags_service
from .jobs import Job
from .legacy_pictures import MODEL, PENDING, import_images, remove_images, settled
from .legacy_reader import LegacyLibrary, LegacyRow
from .library import parse_meta

logger = logging.getLogger(__name__)

MAX_PROBLEMS = 1000
_RUN_LOCK = threading.Lock()


@dataclass
class _Action:
    """What to do with one v1 row; ``op`` is insert, merge, resume (image only), skip or error."""

    row: LegacyRow
    op: str
    kind: str = MODEL
    sha256: str | None = None
    pending_id: int | None = None
    want_image: bool = False
    image_sha256: str | None = None
    # Image written by this run: see legacy_pictures.import_images.
    added: tuple | None = None

    def target(self) -> tuple:
        return self.op, self.kind, self.sha256, self.pending_id


@dataclass
class _Report:
    migrated: int = 0
    pending: int = 0
    skipped: int = 0
    errors: int = 0
    images_processed: int = 0
    image_errors: int = 0
    images_missing: int = 0
    problems: list[dict] = field(default_factory=list)
    problems_omitted: int = 0

    def problem(self, row: LegacyRow, text: str) -> None:
        if len(self.problems) >= MAX_PROBLEMS:
            self.problems_omitted += 1
            return
        self.problems.append({"legacy_id": row.legacy_id, "path": row.path, "problem": text})


def _now_ms() -> int:
    return int(time.time() * 1000)


def _model_meta(row: LegacyRow) -> dict:
    return {
        "description": row.description,
        "community_links": row.community_links,
        "prompts": {"positive": row.positive, "negative": row.negative},
    }


def _fill_meta(meta: dict, row: LegacyRow) -> dict:
    """Fill the empty description, links and prompts of ``meta`` from ``row``."""
    merged = dict(meta)
    for key, value in (("description", row.description), ("community_links", row.community_links)):
        if value and not merged.get(key):
            merged[key] = value
    prompts = merged.get("prompts")
    prompts = dict(prompts) if isinstance(prompts, dict) else {}
    for key, value in (("positive", row.positive), ("negative", row.negative)):
        if value and not prompts.get(key):
            prompts[key] = value
    merged["prompts"] = prompts
    return merged


# --- plan ----------------------------------------------------------------------------------------
def _pending_images(meta_text: str | None) -> list:
    images = parse_meta(meta_text).get("images")
    return images if isinstance(images, list) else []


def _plan_row(
    conn, row: LegacyRow, store, created: set, pending_paths: set, pictured: set
) -> _Action:
    if not row.path:
        return _Action(row, "error")
    has_image = row.image is not None
    if row.sha256:
        if row.sha256 in created:  # a duplicate hash in v1: one entry, tags united
            return _Action(row, "merge", MODEL, row.sha256, want_image=has_image)
        exists = conn.execute("SELECT 1 FROM models WHERE sha256 = ?", (row.sha256,)).fetchone()
        if exists is None:
            created.add(row.sha256)
            pictured.add(row.sha256)
            return _Action(row, "insert", MODEL, row.sha256, want_image=has_image)
        return _merge_model(row, row.sha256, store, pictured)
    pending = conn.execute(
        "SELECT id, meta_json FROM pending_import WHERE path = ?", (row.path,)
    ).fetchone()
    if pending is not None:
        want = has_image and not _pending_images(pending["meta_json"])
        return _Action(row, "merge", PENDING, pending_id=pending["id"], want_image=want)
    model = conn.execute(
        "SELECT sha256 FROM models WHERE path = ? ORDER BY sha256 LIMIT 1", (row.path,)
    ).fetchone()
    if model is not None:
        return _merge_model(row, model["sha256"], store, pictured)
    if row.path in pending_paths:
        return _Action(row, "skip")
    pending_paths.add(row.path)
    return _Action(row, "insert", PENDING, want_image=has_image)


def _merge_model(row: LegacyRow, sha256: str, store, pictured: set) -> _Action:
    want = row.image is not None and sha256 not in pictured and store.count(sha256) == 0
    if want:
        pictured.add(sha256)
    return _Action(row, "merge", MODEL, sha256, want_image=want)


def _plan_remembered(conn, row: LegacyRow, record: sqlite3.Row) -> _Action:
    """A row migrated before: nothing, unless its picture could not be brought over then."""
    if record["image_sha256"] is not None or row.image is None:
        return _Action(row, "skip")
    if record["kind"] == MODEL:
        found = conn.execute("SELECT 1 FROM models WHERE sha256 = ?", (record["sha256"],))
        if found.fetchone() is not None:
            return _Action(row, "resume", MODEL, record["sha256"], want_image=True)
        return _Action(row, "skip")
    pending = conn.execute(
        "SELECT id, path, meta_json FROM pending_import WHERE id = ?", (record["pending_id"],)
    ).fetchone()
    if pending is not None and pending["path"] == record["legacy_path"]:
        if not _pending_images(pending["meta_json"]):
            return _Action(row, "resume", PENDING, pending_id=pending["id"], want_image=True)
    return _Action(row, "skip")


def _plan(conn: sqlite3.Connection, library: LegacyLibrary, store) -> list[_Action]:
    remembered = {
        (record["legacy_id"], record["legacy_path"]): record
        for record in conn.execute(
            "SELECT * FROM legacy_imports WHERE source = ?", (library.source,)
        )
    }
    created: set[str] = set()
    pending_paths: set[str] = set()
    pictured: set[str] = set()
    actions = []
    for row in library.rows:
        record = remembered.get((row.legacy_id, row.path))
        if record is not None:
            actions.append(_plan_remembered(conn, row, record))
        else:
            actions.append(_plan_row(conn, row, store, created, pending_paths, pictured))
    return actions


# --- database ------------------------------------------------------------------------------------
def _link_tags(conn, table: str, column: str, key, row: LegacyRow, tag_ids: dict) -> None:
    ids = {tag_ids[k] for k in (tags_service.tag_key(name) for name in row.tags) if k in tag_ids}
    conn.executemany(
        f"INSERT OR IGNORE INTO {table}({column}, tag_id) VALUES (?, ?)",
        [(key, tag_id) for tag_id in sorted(ids)],
    )


def _remember(conn, source: str, action: _Action) -> None:
    row = action.row
    if action.op == "resume":
        conn.execute(
            "UPDATE legacy_imports SET image_sha256 = ?"
            " WHERE source = ? AND legacy_id = ? AND legacy_path = ?",
            (action.image_sha256, source, row.legacy_id, row.path),
        )
        return
    conn.execute(
        "INSERT INTO legacy_imports(source, legacy_id, legacy_path, kind, sha256, pending_id,"
        " image_sha256, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (source, row.legacy_id, row.path, action.kind, action.sha256, action.pending_id,
         action.image_sha256, _now_ms()),
    )


def _write_model(conn, action: _Action, tag_ids: dict) -> None:
    row = action.row
    if action.op == "insert":
        conn.execute(
            "INSERT INTO models(sha256, path, name, type, size_bytes, created_at, meta_json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.sha256, row.path, row.name, row.type, row.size_bytes, row.created_at,
             json.dumps(_model_meta(row), ensure_ascii=False)),
        )
    elif action.op == "merge":
        stored = conn.execute(
            "SELECT meta_json FROM models WHERE sha256 = ?", (action.sha256,)
        ).fetchone()
        meta = parse_meta(stored["meta_json"])
        filled = _fill_meta(meta, row)
        conn.execute(
            "UPDATE models SET"
            " path = CASE WHEN path IS NULL OR path = '' THEN ? ELSE path END,"
            " name = COALESCE(NULLIF(name, ''), ?),"
            " type = COALESCE(NULLIF(type, ''), ?),"
            " size_bytes = COALESCE(NULLIF(size_bytes, 0), ?),"
            " meta_json = ? WHERE sha256 = ?",
            (row.path, row.name, row.type, row.size_bytes,
             json.dumps(filled, ensure_ascii=False) if filled != meta else stored["meta_json"],
             action.sha256),
        )
    if action.op in ("insert", "merge"):
        _link_tags(conn, "model_tags", "model_hash", action.sha256, row, tag_ids)


def _pending_image_url(action: _Action) -> list[str]:
    # The legacy URL form; the pending image endpoints resolve it by its basename.
    return [f"/media/{action.added[1]}"] if action.added else []


def _write_pending(conn, action: _Action, tag_ids: dict) -> None:
    row = action.row
    if action.op == "insert":
        # Ids are never reused: the v1 id is kept only if no pending model ever had it.
        taken = row.legacy_id <= ids_handed_out(conn, "pending_import") or conn.execute(
            "SELECT 1 FROM pending_import WHERE id = ?", (row.legacy_id,)).fetchone()
        meta = {
            "description": row.description,
            "community_links": row.community_links,
            "images": _pending_image_url(action),
            "prompts": {"positive": row.positive, "negative": row.negative},
        }
        action.pending_id = conn.execute(
            "INSERT INTO pending_import(id, path, sha256, name, type, size_bytes, created_at,"
            " meta_json) VALUES (?, ?, '', ?, ?, ?, ?, ?) RETURNING id",
            (None if taken else row.legacy_id, row.path, row.name, row.type, row.size_bytes,
             row.created_at, json.dumps(meta, ensure_ascii=False)),
        ).fetchone()[0]
    else:
        stored = conn.execute(
            "SELECT meta_json FROM pending_import WHERE id = ?", (action.pending_id,)
        ).fetchone()
        meta = parse_meta(stored["meta_json"])
        filled = _fill_meta(meta, row) if action.op == "merge" else dict(meta)
        if action.added and not _pending_images(stored["meta_json"]):
            filled["images"] = _pending_image_url(action)
        if action.op == "merge":
            conn.execute(
                "UPDATE pending_import SET name = COALESCE(NULLIF(name, ''), ?),"
                " type = COALESCE(NULLIF(type, ''), ?),"
                " size_bytes = COALESCE(NULLIF(size_bytes, 0), ?) WHERE id = ?",
                (row.name, row.type, row.size_bytes, action.pending_id),
            )
        if filled != meta:
            conn.execute(
                "UPDATE pending_import SET meta_json = ? WHERE id = ?",
                (json.dumps(filled, ensure_ascii=False), action.pending_id),
            )
    if action.op in ("insert", "merge"):
        _link_tags(conn, "pending_model_tags", "model_id", action.pending_id, row, tag_ids)


def _ensure_legacy_tags(conn, actions: list[_Action], report: _Report) -> dict[str, int]:
    names: list[str] = []
    for action in actions:
        if action.op not in ("insert", "merge"):
            continue
        for name in action.row.tags:
            if len(tags_service.normalize_tag_name(name)) > tags_service.MAX_TAG_LENGTH:
                report.problem(action.row, f"tag {name[:40]!r}... is too long; not imported")
            else:
                names.append(name)
    return {tags_service.tag_key(t["name"]): t["id"] for t in tags_service.ensure_tags(conn, names)}


def _apply(conn, library: LegacyLibrary, planned: list[_Action], store, report, job) -> list:
    """Re-plan inside the transaction and write; return images written but no longer needed."""
    actions = _plan(conn, library, store)
    unused = []
    for old, new in zip(planned, actions):
        if old.target() == new.target():
            new.added, new.image_sha256 = old.added, old.image_sha256
        elif old.added:
            unused.append(old.added)
    tag_ids = _ensure_legacy_tags(conn, actions, report)
    for action in actions:
        if job is not None:
            job.check_cancelled()
            job.advance(files=1, message=f"model {action.row.name}")
        if action.op == "error":
            report.errors += 1
            report.problem(action.row, "the v1 row has no path; not migrated")
            continue
        if action.op == "skip" or (action.op == "resume" and not action.image_sha256):
            report.skipped += 1
            continue
        try:
            with transaction(conn):  # a savepoint: one bad row does not spoil the others
                (_write_model if action.kind == MODEL else _write_pending)(conn, action, tag_ids)
                _remember(conn, library.source, action)
        except (*db_errors.IntegrityError, *db_errors.DataError) as exc:  # the savepoint undid it
            report.errors += 1
            report.problem(action.row, f"not migrated: {db_errors.primary_message(exc)}")
            if action.added:
                unused.append(action.added)
            continue
        if action.op == "resume":
            report.skipped += 1
        elif action.kind == MODEL:
            report.migrated += 1
        else:
            report.pending += 1
        for problem in action.row.problems:
            report.problem(action.row, problem)
    image_journal.settle(conn, settled([action.added for action in actions
                                        if action.added and action.added not in unused]))
    return unused


def migrate_legacy_library(
    conn: sqlite3.Connection,
    library: LegacyLibrary,
    images_dir: Path | None,
    store,
    backups_dir: Path,
    job: Job | None = None,
) -> dict:
    """Run stage 1 for an already read v1 library; return the report."""
    if not _RUN_LOCK.acquire(blocking=False):
        raise Conflict("A legacy migration is already running; wait for it to finish")
    try:
        return _migrate(conn, library, images_dir, store, backups_dir, job)
    finally:
        _RUN_LOCK.release()


def _migrate(conn, library, images_dir, store, backups_dir, job) -> dict:
    report = _Report()
    planned = _plan(conn, library, store)
    if images_dir is None:
        for action in planned:
            action.want_image = False
    images = sum(1 for action in planned if action.want_image)
    if job is not None:
        job.set_totals(files=images + len(planned))
    backup_path = None
    if any(action.op not in ("skip", "error") for action in planned):
        backup_path = backup_database(conn, backups_dir, "pre-legacy-migration")
        if backup_path:
            logger.info("[Hikaze] backed up the library to %s before the v1 migration", backup_path)
    try:
        if images:
            import_images(conn, planned, images_dir, store, report, job)
        with transaction(conn):
            unused = _apply(conn, library, planned, store, report, job)
    except BaseException:
        remove_images(conn, store, [action.added for action in planned if action.added])
        raise
    remove_images(conn, store, unused)
    db_migration = {
        "migrated": report.migrated,
        "pending": report.pending,
        "errors": report.errors,
        "images_processed": report.images_processed,
        "image_errors": report.image_errors,
        "images_missing": report.images_missing,
        "skipped": report.skipped,
    }
    logger.info("[Hikaze] v1 migration from %s: %s", library.path, db_migration)
    return {
        "status": "success" if report.errors == 0 else "partial",
        "db_migration": db_migration,
        "source": library.source,
        "legacy_db_path": str(library.path),
        "legacy_images_dir": str(images_dir) if images_dir else None,
        "backup_path": backup_path,
        "problems": report.problems,
        "problems_omitted": report.problems_omitted,
    }
