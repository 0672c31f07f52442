"""Database exceptions of both stores, for ``except`` clauses: services never name a driver."""

from __future__ import annotations

import sqlite3

try:
    import psycopg
except ImportError:  # SQLite-only installs (inside ComfyUI, for instance) need no PostgreSQL driver
    psycopg = None

_pg = (lambda name: (getattr(psycopg, name),) if psycopg else ())

Error = (sqlite3.Error, *_pg("Error"))
DatabaseError = (sqlite3.DatabaseError, *_pg("DatabaseError"))
IntegrityError = (sqlite3.IntegrityError, *_pg("IntegrityError"))
OperationalError = (sqlite3.OperationalError, *_pg("OperationalError"))


def is_busy(exc: BaseException) -> bool:
    """True when another writer held the database past the wait limit (retry later: 503)."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        return "locked" in text or "busy" in text
    if psycopg is not None and isinstance(exc, psycopg.Error):
        from psycopg import errors

        return isinstance(exc, (errors.LockNotAvailable, errors.QueryCanceled,
                                errors.SerializationFailure, errors.DeadlockDetected))
    return False


def is_unreachable(exc: BaseException) -> bool:
    """True when the database server could not be reached or the connection broke."""
    if psycopg is None or not isinstance(exc, psycopg.OperationalError):
        return False
    from psycopg import errors

    return exc.sqlstate is None or isinstance(exc, (errors.AdminShutdown, errors.CannotConnectNow))


def is_disk_full(exc: BaseException) -> bool:
    """True when the database refused a write for lack of space."""
    if isinstance(exc, sqlite3.OperationalError):
        return "disk is full" in str(exc)
    if psycopg is not None and isinstance(exc, psycopg.Error):
        from psycopg import errors

        return isinstance(exc, errors.DiskFull)
    return False
