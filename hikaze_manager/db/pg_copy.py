"""The PostgreSQL-only statements a library copy needs (services/store_copy.py stays portable)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from . import ids_handed_out
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


def advance_sequence(conn, table: str, at_least: int) -> bool:
    """Make the id sequence of ``table`` hand out ids above ``at_least`` (never lowers it);
    True if it moved: ids the source handed out whose rows are gone are never handed out again."""
    if at_least <= ids_handed_out(conn, table):
        return False
    conn.raw.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, true)", (table, at_least))
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


def next_id(conn, table: str) -> int:
    """A new id from the id sequence of ``table``."""
    return conn.raw.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", (table,)).fetchone()[0]


def sequence_states(conn) -> list[tuple[str, int, bool]]:
    """``(name, last_value, is_called)`` of the id sequences a copy may move (the shared schema's
    and this machine's), to put back with :func:`restore_sequences`."""
    names = [row[0] for row in conn.raw.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'S' AND n.nspname = ANY(current_schemas(false)) ORDER BY 1")]
    return [(name, *conn.raw.execute(f"SELECT last_value, is_called FROM {name}").fetchone())
            for name in names]


def restore_sequences(conn, states: list[tuple[str, int, bool]]) -> None:
    """Put back the sequences that moved since :func:`sequence_states`: ``nextval`` and ``setval``
    are not undone by a rollback. Only under the write lock, or another writer's ids could repeat."""
    now = dict((name, (last, called)) for name, last, called in sequence_states(conn))
    for name, last_value, is_called in states:
        if now.get(name, (last_value, is_called)) != (last_value, is_called):
            conn.raw.execute("SELECT setval(%s::regclass, %s, %s)", (name, last_value, is_called))
