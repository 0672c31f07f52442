"""Database exceptions of both stores, for ``except`` clauses: services never name a driver."""

from __future__ import annotations

import sqlite3
import sys

# psycopg is imported only by a PostgreSQL store (db/pg.py): importing it costs a SQLite-only
# start-up (and ComfyUI) about 0.1 s. Until it is imported no psycopg error can be raised, so
# each class tuple below is made when an ``except`` clause reads it (``db_errors.Error``), with
# psycopg's class once that module is loaded. Read them as attributes of this module, never
# ``from .errors import Error`` at import time, which would freeze the tuple without psycopg.
_CLASSES = ("Error", "DatabaseError", "DataError", "IntegrityError", "OperationalError")


def __getattr__(name: str) -> tuple[type[BaseException], ...]:
    if name not in _CLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    psycopg = _psycopg()
    return (getattr(sqlite3, name), *((getattr(psycopg, name),) if psycopg else ()))


def _psycopg():
    """The psycopg module if a store loaded it, else None."""
    return sys.modules.get("psycopg")


def _pg_is(exc: BaseException, *names: str) -> bool:
    """True when ``exc`` is one of ``psycopg.errors``' classes ``names`` (never before a store
    loaded psycopg: then none can have been raised)."""
    psycopg = _psycopg()
    return psycopg is not None and isinstance(exc, tuple(getattr(psycopg.errors, n) for n in names))


def _sqlite_says(exc: BaseException, *words: str) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and any(w in str(exc) for w in words)


def is_busy(exc: BaseException) -> bool:
    """True when another writer held the database past the wait limit (retry later: 503)."""
    return _sqlite_says(exc, "locked", "busy") or _pg_is(
        exc, "LockNotAvailable", "QueryCanceled", "SerializationFailure", "DeadlockDetected")


def is_lock_timeout(exc: BaseException) -> bool:
    """True when a writer gave up waiting for the library's write lock (another writer has it)."""
    return _sqlite_says(exc, "locked", "busy") or _pg_is(exc, "LockNotAvailable")


def is_unreachable(exc: BaseException) -> bool:
    """True when the database server could not be reached, went away, or ended our session."""
    psycopg = _psycopg()
    if psycopg is not None and isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        return True  # libpq's own: refused, timed out, the connection lost
    return _pg_is(exc, "ConnectionException", "AdminShutdown", "CrashShutdown", "CannotConnectNow",
                  "DatabaseDropped", "IdleSessionTimeout", "IdleInTransactionSessionTimeout")


def is_read_only(exc: BaseException) -> bool:
    """True when the database refused a write because it is read-only (a SQLite file opened
    read-only; a PostgreSQL standby after a failover, or default_transaction_read_only)."""
    return _sqlite_says(exc, "readonly") or _pg_is(exc, "ReadOnlySqlTransaction")


def is_not_permitted(exc: BaseException) -> bool:
    """True when the database role this server logs in as lacks a privilege the statement needs."""
    return _pg_is(exc, "InsufficientPrivilege")


def refusal_classes() -> tuple[type[BaseException], ...]:
    """psycopg's classes outside OperationalError that mean "not now" rather than a bug of ours
    (read-only, no privilege, session ended), for error handlers; empty until psycopg is loaded."""
    psycopg = _psycopg()
    if psycopg is None:
        return ()
    from psycopg import errors

    return (errors.ReadOnlySqlTransaction, errors.InsufficientPrivilege,
            errors.IdleInTransactionSessionTimeout)


def is_disk_full(exc: BaseException) -> bool:
    """True when the database refused a write for lack of space."""
    return _sqlite_says(exc, "disk is full") or _pg_is(exc, "DiskFull")


def primary_message(exc: BaseException) -> str:
    """The driver's one-line reason, without the statement or PL/pgSQL context lines (which
    quote our SQL)."""
    diag = getattr(exc, "diag", None)
    text = (getattr(diag, "message_primary", None) if diag is not None else None) or str(exc)
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class MachineTaken(RuntimeError):
    """Another live server took this server's machine name on the shared library (while the
    database was away): this one makes no changes until it can take the name back."""
