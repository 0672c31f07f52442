"""Picture sets written for a DB change that is not committed yet (promotion, legacy migration).

A set is announced in ``image_writes`` (committed) before its files are written; the transaction
that makes the model refer to it deletes the announcement. So after a kill at any moment, an
announcement still there names a set whose DB change never happened: :func:`recover` removes it
at start-up (by picture digest, so renumbering since does not matter), and a retried promotion
or migration adds the picture once.

An announcement can outlive a change that did commit: the database went away before its undo
could run, and the retry found the picture already there. So a retry that reuses an announced
picture settles the old announcement with its own change (:func:`announced`), and recovery never
removes a picture of a model that is in the library: it may be that model's only picture, and an
extra picture is a smaller harm than a lost one.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field

from ..db import errors as db_errors
from ..db import transaction
from .image_base import picture_digest

logger = logging.getLogger(__name__)


@dataclass
class Journaled:
    """The image journal entries of one picture added for a DB change not committed yet."""

    own: int | None = None  # announced by this change: undone if the change fails
    settled: list[int] = field(default_factory=list)  # what the change's commit settles (own too)


def announce(conn: sqlite3.Connection, sha256: str, picture: str) -> int:
    """Record (and commit) that a set showing ``picture`` is about to be added to ``sha256``."""
    with transaction(conn):
        cursor = conn.execute(
            "INSERT INTO image_writes(sha256, picture, created_at) VALUES (?, ?, ?)",
            (sha256, picture, int(time.time() * 1000)),
        )
    return cursor.lastrowid


def announced(conn: sqlite3.Connection, sha256: str, picture: str) -> list[int]:
    """Ids of this machine's announcements of ``picture`` for ``sha256`` (a failed write's)."""
    return [row[0] for row in conn.execute(
        "SELECT id FROM image_writes WHERE sha256 = ? AND picture = ? ORDER BY id",
        (sha256, picture))]


def settle(conn: sqlite3.Connection, write_ids: list[int]) -> None:
    """Inside the committing transaction: these sets are now part of the library."""
    conn.executemany("DELETE FROM image_writes WHERE id = ?", [(i,) for i in write_ids])


def undo(conn: sqlite3.Connection, store, write_ids: list[int]) -> None:
    """Remove the sets of announcements whose DB change failed, then the announcements."""
    for write_id in write_ids:
        row = conn.execute(
            "SELECT sha256, picture FROM image_writes WHERE id = ?", (write_id,)
        ).fetchone()
        if row is None:
            continue
        try:
            store.remove_picture(row["sha256"], row["picture"])
        except Exception:  # the announcement stays: start-up tries again
            logger.exception("[Hikaze] could not remove picture set of %s", row["sha256"])
            continue
        with transaction(conn):
            conn.execute("DELETE FROM image_writes WHERE id = ?", (write_id,))


def add_set(conn: sqlite3.Connection, store, sha256: str, data: bytes) -> Journaled | None:
    """Add a set announced in the journal first; returns the journal ids to settle.

    When that very picture is already one of the model's sets (e.g. a retry after a crash or a
    lost database) nothing is added: a picture is never added twice. An announcement of it left
    by the failed attempt is settled with this change, else start-up recovery would remove the
    picture this change now relies on.
    """
    tiers = store.process(sha256, data)
    picture = picture_digest(tiers)
    if store.find_picture(sha256, picture):
        stale = announced(conn, sha256, picture)
        return Journaled(None, stale) if stale else None
    write_id = announce(conn, sha256, picture)
    try:
        store.add_processed(sha256, tiers)
    except BaseException:
        undo_quietly(conn, store, write_id)
        raise
    return Journaled(write_id, [write_id])


def undo_quietly(conn: sqlite3.Connection, store, write_id: int | None) -> bool:
    """Undo one announcement of a failed change (errors logged); False if the database is out
    of reach, so the caller's next undo would fail the same way."""
    if write_id is None:
        return True
    try:
        undo(conn, store, [write_id])
    except Exception as exc:  # the announcement stays: a retry reuses the set, start-up removes it
        if db_errors.is_unreachable(exc):
            logger.warning("[Hikaze] could not remove an image set after a failed change: the"
                           " database is out of reach (%s)", db_errors.primary_message(exc))
            return False
        logger.exception("[Hikaze] could not remove an image set after a failed change")
    return True


def recover(conn: sqlite3.Connection, store) -> int:
    """At start-up: undo every announcement left by a kill, keeping the pictures of models in the
    library; return how many announcements were undone. On a shared library no other server
    writes this machine's journal meanwhile: it holds the machine's claim (``db/pg_claim.py``)."""
    rows = conn.execute(
        "SELECT w.id, EXISTS (SELECT 1 FROM models m WHERE m.sha256 = w.sha256)"
        " FROM image_writes w ORDER BY w.id DESC").fetchall()
    kept = [row[0] for row in rows if row[1]]
    ids = [row[0] for row in rows if not row[1]]
    if kept:
        logger.warning("[Hikaze] keeping %d picture set(s) of interrupted writes: their models are"
                       " in the library", len(kept))
        with transaction(conn):
            settle(conn, kept)
    if ids:
        logger.warning("[Hikaze] removing %d picture set(s) of writes interrupted by a crash",
                       len(ids))
        undo(conn, store, ids)
    return len(ids)
