"""Connections: one per request (on ``g``) or per background task, explicit transactions.

SQLite (WAL) is set up here; PostgreSQL in :mod:`.pg`; :mod:`.stores` picks one per app.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask, current_app, g

from . import errors as db_errors

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 15.0
DB_FILE_NAME = "hikaze_model_manager.db"
SQLITE_INT_MIN, SQLITE_INT_MAX = -(2**63), 2**63 - 1


ROW_ID_DIGITS = 19  # SQLite's largest integer has 19 digits; longer text is never an id


def as_row_id(value) -> int | None:
    """The one strict id parser: an int, or a string of ASCII digits, within SQLite's range; else None.

    The length is checked before ``int()``, so a 5,000-digit string (over Python's int-digit limit)
    is simply not an id, and ``'²'`` or ``'٣'`` (``isdigit()`` but not ASCII) are not either.
    """
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] == "-" else text
        ok = 0 < len(digits) <= ROW_ID_DIGITS and digits.isascii() and digits.isdigit()
        value = int(text) if ok else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if SQLITE_INT_MIN <= value <= SQLITE_INT_MAX else None


def dialect_of(conn) -> str:
    """``"sqlite"`` or ``"postgres"``: which SQL the connection speaks (for the few texts in db/
    that differ)."""
    return getattr(conn, "dialect", "sqlite")


def ids_handed_out(conn, table: str) -> int:
    """The highest id ``table`` (an AUTOINCREMENT / serial table of ours) ever gave out, 0 if none:
    such an id is never given again, even after its row is gone."""
    if dialect_of(conn) == "postgres":
        row = conn.execute(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence(?, 'id')::regclass)", (table,)
        ).fetchone()
    else:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return int(row[0] or 0) if row else 0


def on_every_machine(conn, sql: str, params=()) -> None:
    """Run a statement on every machine's own tables (pending rows, hash cache), in the caller's
    transaction: a shared library's other machines too; SQLite has only this one."""
    if dialect_of(conn) == "postgres":
        from .pg import on_every_machine as run_everywhere

        run_everywhere(conn, sql, params)
    else:
        conn.execute(sql, params)


def pending_tag_counts(conn, tag_id: int | None = None) -> dict[int, int]:
    """How many pending models carry each tag (or only ``tag_id``), on every machine of a shared
    library: the tags are shared, so a delete or merge reaches every machine's pending links."""
    links = every_machine_table(conn, "pending_model_tags", "tag_id")
    where, params = ("", ()) if tag_id is None else (" WHERE tag_id = ?", (tag_id,))
    rows = conn.execute(f"SELECT tag_id, COUNT(*) FROM {links} AS links{where} GROUP BY tag_id",
                        params)
    return {row[0]: row[1] for row in rows}


def every_machine_table(conn, table: str, columns: str) -> str:
    """A FROM item with ``columns`` of one of each machine's own tables (``image_writes``) from
    every machine: a shared library's other machines too; SQLite has only this one."""
    if dialect_of(conn) == "postgres":
        from .pg import every_machine_table as union_of_machines

        return union_of_machines(conn, table, columns)
    return f"(SELECT {columns} FROM {table})"


def sqlite_uri(path: str | Path, mode: str = "rwc") -> str:
    """A ``file:`` URI for ``path`` that survives ``?``, ``#`` and ``%`` in the path."""
    absolute = Path(path).expanduser().absolute()
    return f"file:{urllib.request.pathname2url(str(absolute))}?mode={mode}"


def connect(path: str | Path, *, read_only: bool = False, immutable: bool = False) -> sqlite3.Connection:
    """Open a connection configured the one way this project uses SQLite.

    Autocommit mode (``isolation_level=None``): reads need no transaction, and every write goes
    through :func:`transaction`, which takes the write lock up front with ``BEGIN IMMEDIATE``.
    """
    conn = sqlite3.connect(
        sqlite_uri(path, "ro" if read_only or immutable else "rwc") + ("&immutable=1" if immutable else ""),
        uri=True,
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None,
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run a read-modify-write atomically; nested use becomes a savepoint."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT nested")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
            raise
        conn.execute("RELEASE nested")
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
    except BaseException:
        # PostgreSQL: BEGIN went through but the write lock's wait timed out, leaving an aborted
        # transaction that would refuse every later statement on this connection.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back by itself (SQLITE_FULL): then there is nothing to undo,
        # and a ROLLBACK would replace the real error with "no transaction is active".
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def consistent_read(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Several reads that must see one state of the database (a deferred read transaction)."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


@contextmanager
def connection(path: str | Path, *, read_only: bool = False,
               immutable: bool = False) -> Iterator[sqlite3.Connection]:
    """Short-lived connection for code outside a request (jobs, node execution)."""
    conn = connect(path, read_only=read_only, immutable=immutable)
    try:
        yield conn
    finally:
        conn.close()


class RequestConnections(threading.local):
    """One reusable connection per server thread (and database file).

    Opening a connection and reading the schema on its first statement costs more than a whole
    small request, so a thread keeps its connection between requests. It is handed out only
    outside a transaction, with the project's settings, and reopened when the file on disk was
    replaced (a different inode).
    """

    def __init__(self) -> None:
        self.conns: dict[tuple[str, bool, bool], tuple[tuple[int, int] | None, sqlite3.Connection]] = {}

    def checkout(self, path: str | Path, read_only: bool, immutable: bool = False) -> sqlite3.Connection:
        """This thread's connection to ``path``, ready for a request."""
        key = (str(path), read_only, immutable)
        try:
            st = os.stat(path)
            identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            identity = None
        held = self.conns.get(key)
        if held is not None and held[0] == identity and identity is not None:
            conn = held[1]
            conn.row_factory = sqlite3.Row
            return conn
        if held is not None:
            held[1].close()
        conn = connect(path, read_only=read_only, immutable=immutable)
        self.conns[key] = (identity, conn)
        return conn


def get_db() -> sqlite3.Connection:
    """Connection for the current request: this thread's reused one, opened on first use."""
    context = g._get_current_object()
    conn = context.get("db")
    if conn is None:
        state = current_app.extensions["hikaze"]
        conn = state.store.checkout(state.read_only_reason is not None)
        context.db = conn
    return conn


def release(conn) -> None:
    """Roll back what a request left open, so the connection can be reused. A PostgreSQL
    connection the ROLLBACK fails on (the server went away meanwhile) is closed instead: the
    next checkout opens a new one, and the request keeps the answer it already has."""
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except db_errors.Error as exc:
        if dialect_of(conn) != "postgres":
            raise
        logger.warning("[Hikaze] dropping a database connection that failed to roll back: %s", exc)
        close_quietly(conn)


def close_quietly(conn) -> None:
    """Close ``conn``; a broken connection may fail to close, and is dropped either way."""
    with contextlib.suppress(Exception):
        conn.close()


def close_db(_exc: BaseException | None = None) -> None:
    """End the request's use of its connection: roll back anything left open, keep it for reuse."""
    conn = g.pop("db", None)
    if conn is not None:
        release(conn)


def init_app(app: Flask) -> None:
    """Register the per-request teardown (each store keeps its own per-thread connections)."""
    app.teardown_appcontext(close_db)
