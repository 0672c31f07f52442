"""Preview sets as rows of ``image_tiers``: the picture store of a library shared between machines.

Each tier of a set is one row ``(sha256, position, tier)``; a set exists when its ``high`` row
does. Every write is one transaction (the store's write lock: ``BEGIN IMMEDIATE`` on SQLite, the
advisory lock on PostgreSQL), so a set is always whole, positions stay ``0..n-1`` without gaps and
are never handed out twice, whichever machine writes. Each method runs on its own short
connection, outside any request transaction, as the file writes of
:class:`~.images.ImageStore` do, so the image journal protocol works unchanged. Pending originals
stay files under the local pending folder (pending rows belong to one machine).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from ..db import transaction
from ..errors import NotFound
from .image_base import SHA256, PictureStoreBase, check_set
from .image_processing import TIERS

# Portable DDL (BLOB becomes BYTEA on PostgreSQL). ``created_at`` (ms) is when the row got its
# position: a renumbering sets it, so Last-Modified moves like the ctime of a renamed file.
IMAGE_TIERS_DDL = """CREATE TABLE IF NOT EXISTS image_tiers (
    sha256 TEXT NOT NULL,
    position INTEGER NOT NULL,
    tier TEXT NOT NULL,
    data BLOB NOT NULL,
    digest TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (sha256, position, tier)
)"""

_IN_CHUNK = 500  # shas per statement in bulk removal, well under any bound-parameter limit


@dataclass(frozen=True)
class StoredTier:
    """One tier read from the database: its bytes, a validator of them, and when it got its place."""

    data: bytes
    etag: str
    modified: float  # seconds since the epoch


def _now_ms() -> int:
    return int(time.time() * 1000)


class DatabaseImageStore(PictureStoreBase):
    """The image sets of every model as database rows, and the pending originals as local files."""

    images_dir = None  # no folder to watch: the database version covers the pictures

    def __init__(self, connect: Callable[[], AbstractContextManager], pending_dir: str | Path, *,
                 read_connect: Callable[[], AbstractContextManager] | None = None):
        # Each write runs on a connection of its own (its own transaction, never a request's).
        # Reads may reuse one (``read_connect``): a new PostgreSQL connection costs ~10 ms, a
        # read of a tier ~0.1 ms.
        super().__init__(pending_dir)
        self._connect = connect
        self._read = read_connect or connect

    # -- counts

    def counts(self) -> Counter:
        """Number of image sets per sha256, from one query."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT sha256, COUNT(*) FROM image_tiers WHERE tier = 'high' GROUP BY sha256"
            ).fetchall()
        return Counter({row[0]: row[1] for row in rows})

    def count(self, sha256: str) -> int:
        """Number of image sets of one model (0 for a malformed sha256)."""
        sha256 = (sha256 or "").lower()
        if not SHA256.match(sha256):
            return 0
        with self._read() as conn:
            return conn.execute(
                "SELECT COUNT(*) FROM image_tiers WHERE sha256 = ? AND tier = 'high'", (sha256,)
            ).fetchone()[0]

    def owners(self) -> set[str]:
        """The sha256 of every model with a set, from one query."""
        with self._read() as conn:
            return {row[0] for row in conn.execute("SELECT DISTINCT sha256 FROM image_tiers")}

    # -- writing and deleting sets

    def add_processed(self, sha256: str, tiers: dict[str, bytes], *,
                      first_only: bool = False) -> int | None:
        """Store already-encoded tiers as the next set, in one transaction; returns its seq.

        ``first_only``: only as the model's first set (None, nothing written, if it has one).
        """
        check_set(sha256, 0)
        blobs = [(tier, bytes(tiers[tier])) for tier in TIERS]  # a missing tier fails here
        with self._connect() as conn, transaction(conn):
            seq = conn.execute(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM image_tiers WHERE sha256 = ?",
                (sha256,),
            ).fetchone()[0]
            if seq and first_only:
                return None
            now = _now_ms()
            conn.executemany(
                "INSERT INTO image_tiers(sha256, position, tier, data, digest, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(sha256, seq, tier, data, hashlib.sha256(data).hexdigest(), now)
                 for tier, data in blobs],
            )
        return seq

    def delete_image(self, sha256: str, seq: int) -> None:
        """Delete set ``seq`` and move every later set down by one, in one transaction."""
        check_set(sha256, seq)
        with self._connect() as conn, transaction(conn):
            if not _delete_set(conn, sha256, seq):
                raise NotFound(f"Image sequence {seq} not found for {sha256}")

    def remove_sets(self, shas: Iterable[str], *, conn=None) -> int:
        """Delete every set of these models in one transaction; returns how many; safe to repeat.

        ``conn``: run in the caller's transaction (which may hold the write lock) on it.
        """
        wanted = sorted(set(shas))
        if conn is not None:
            with transaction(conn):
                return _remove_sets(conn, wanted)
        with self._connect() as own, transaction(own):
            return _remove_sets(own, wanted)

    # -- pictures by content and start-up recovery

    def find_picture(self, sha256: str, picture: str) -> list[int]:
        """Seqs of the sets of ``sha256`` whose ``high`` tier has the digest ``picture``."""
        if not SHA256.match(sha256 or ""):
            return []
        with self._read() as conn:
            return _positions_of(conn, sha256, picture)

    def remove_picture(self, sha256: str, picture: str) -> int:
        """Delete every set of ``sha256`` showing ``picture`` (newest first); return how many."""
        if not SHA256.match(sha256 or ""):
            return 0
        with self._connect() as conn, transaction(conn):
            seqs = _positions_of(conn, sha256, picture)
            for seq in reversed(seqs):
                _delete_set(conn, sha256, seq)
        return len(seqs)

    def recover(self) -> set[str]:
        """At start-up: every write was one transaction, so nothing is half done; returns the
        sha256 of every model with a set (for the orphan sweep)."""
        return self.owners()

    # -- reading

    def open_tier(self, sha256: str, seq: int, tiers: tuple[str, ...]) -> StoredTier | None:
        """The first existing tier of a set, in the order of ``tiers``, or None; one statement."""
        for tier in tiers:
            check_set(sha256, seq, tier)
        rank = " ".join(f"WHEN ? THEN {i}" for i in range(len(tiers)))
        with self._read() as conn:
            row = conn.execute(
                "SELECT data, digest, created_at FROM image_tiers"
                f" WHERE sha256 = ? AND position = ? AND tier IN ({', '.join('?' * len(tiers))})"
                f" ORDER BY CASE tier {rank} END LIMIT 1",
                (sha256, seq, *tiers, *tiers),
            ).fetchone()
        if row is None:
            return None
        return StoredTier(bytes(row[0]), row[1], row[2] / 1000)


def _remove_sets(conn, wanted: list[str]) -> int:
    removed = 0
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start:start + _IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        removed += conn.execute(
            f"DELETE FROM image_tiers WHERE tier = 'high' AND sha256 IN ({marks})", chunk
        ).rowcount
        conn.execute(f"DELETE FROM image_tiers WHERE sha256 IN ({marks})", chunk)
    return removed


def _positions_of(conn, sha256: str, picture: str) -> list[int]:
    return [row[0] for row in conn.execute(
        "SELECT position FROM image_tiers WHERE sha256 = ? AND tier = 'high' AND digest = ?"
        " ORDER BY position", (sha256, picture))]


def _delete_set(conn, sha256: str, seq: int) -> bool:
    """Inside a transaction: drop set ``seq`` and shift later sets down; False if it was not there."""
    if not conn.execute("DELETE FROM image_tiers WHERE sha256 = ? AND position = ?",
                        (sha256, seq)).rowcount:
        return False
    # The primary key is checked row by row, so shifting in place could collide whatever the
    # order the rows are visited in: park the later sets at negative positions, then place them.
    conn.execute("UPDATE image_tiers SET position = -position WHERE sha256 = ? AND position > ?",
                 (sha256, seq))
    conn.execute("UPDATE image_tiers SET position = -position - 1, created_at = ?"
                 " WHERE sha256 = ? AND position < 0", (_now_ms(), sha256))
    return True
