"""The PostgreSQL-only statements a library copy needs (services/store_copy.py stays portable)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .stores import PostgresStore


class BoundPostgresStore(PostgresStore):
    """A store whose every connection is one given connection, so :meth:`prepare` runs inside
    the caller's transaction (as a savepoint): the schema, the copy and a dry run's rollback
    are one unit."""

    def __init__(self, url: str, machine: str, conn):
        super().__init__(url, machine)
        self._bound = conn

    @contextmanager
    def connection(self, *, read_only: bool = False) -> Iterator:
        """The bound connection (left open: its owner closes it)."""
        yield self._bound


def sequence_value(conn, table: str, column: str = "id") -> int:
    """The last value a table's id sequence handed out (0 when none yet)."""
    name = conn.raw.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, column)).fetchone()[0]
    last, called = conn.raw.execute(f"SELECT last_value, is_called FROM {name}").fetchone()
    return last if called else last - 1


def advance_sequence(conn, table: str, at_least: int, column: str = "id") -> bool:
    """Make the sequence of ``table.column`` hand out ids above ``at_least`` (never lowers it);
    True if it moved. Rows inserted with explicit ids do not move a sequence by themselves."""
    if at_least <= sequence_value(conn, table, column):
        return False
    conn.raw.execute("SELECT setval(pg_get_serial_sequence(%s, %s), %s, true)",
                     (table, column, at_least))
    return True


def tier_data_digests(conn, shas: Sequence[str]) -> list[tuple]:
    """``(sha256, position, tier, digest, sha256 of data)`` of every stored tier of these models;
    the data is hashed by the server, so the check reads no picture bytes over the wire."""
    if not shas:
        return []
    return conn.raw.execute(
        "SELECT sha256, position, tier, digest, encode(sha256(data), 'hex') FROM image_tiers"
        " WHERE sha256 = ANY(%s)", (list(shas),)).fetchall()


def table_columns(conn, table: str) -> list[str]:
    """The column names of a table or view, as this connection's search path resolves it."""
    cur = conn.raw.execute(f'SELECT * FROM "{table}" LIMIT 0')
    return [column.name for column in cur.description]


def next_id(conn, table: str, column: str = "id") -> int:
    """A new id from the sequence of ``table.column``."""
    return conn.raw.execute("SELECT nextval(pg_get_serial_sequence(%s, %s))",
                            (table, column)).fetchone()[0]
