"""PostgreSQL connections (psycopg 3) with the small sqlite3 surface the services use.

Services write one SQL text for both stores: ``?`` placeholders and the few SQLite spellings
still in use (``INSERT OR IGNORE``, ``json_each(?)``, ``LIKE``) are translated here, once per
SQL string. Transactions keep SQLite's semantics: ``BEGIN IMMEDIATE`` (our write transaction)
takes one advisory lock shared by every machine, so writers run one at a time exactly as they
do on SQLite and every read-modify-write in the services stays correct unchanged; ``BEGIN``
(a consistent read) is a REPEATABLE READ snapshot.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import ClientCursor
from psycopg.pq import TransactionStatus

DIALECT = "postgres"
WRITE_LOCK_KEY = 0x48696B617A65  # "Hikaze": the one advisory lock all writers take
LOCK_TIMEOUT = "15s"  # SQLite's busy timeout: a writer waits this long, then the request gets 503

_TOKENS = re.compile(r"""('(?:[^']|'')*')|("(?:[^"]|"")*")|(\?)|(%)""")
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_JSON_EACH = re.compile(
    r"\bjson_each\(%s\)(?:\s+(?!(?:WHERE|ON|JOIN|LEFT|INNER|CROSS|ORDER|GROUP|LIMIT|UNION)\b)"
    r"(?:AS\s+)?(\w+))?", re.IGNORECASE)
_LIKE = re.compile(r"\bLIKE\b")
_STATEMENTS = {
    "BEGIN IMMEDIATE": f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})",
    "BEGIN": "BEGIN ISOLATION LEVEL REPEATABLE READ",
}


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """The PostgreSQL text of one of our SQLite-style statements."""
    special = _STATEMENTS.get(sql.strip())
    if special:
        return special

    def token(match: re.Match) -> str:
        if match.group(3):
            return "%s"
        if match.group(4):
            return "%%"
        return match.group(0)

    out = _TOKENS.sub(token, sql)
    if _INSERT_OR_IGNORE.match(out):
        out = _INSERT_OR_IGNORE.sub("INSERT INTO", out, count=1).rstrip().rstrip(";")
        out += " ON CONFLICT DO NOTHING"
    out = _JSON_EACH.sub(
        lambda m: f"json_array_elements_text(%s::json) AS {m.group(1) or 'json_each'}(value)", out)
    return _LIKE.sub("ILIKE", out)


class Row(tuple):
    """A result row readable by position and by column name, like ``sqlite3.Row``."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._index)


def _row_maker(cursor) -> type[Row] | None:
    if cursor.description is None:
        return None
    names = [column.name for column in cursor.description]
    return type("Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


class Cursor:
    """What ``conn.execute`` returns: fetch methods, iteration, ``rowcount``, ``lastrowid``."""

    def __init__(self, conn: "Connection", row_factory=Row):
        self._conn = conn
        self._cursor = ClientCursor(conn.raw)
        self.row_factory = row_factory
        self._make: type[Row] | None = None

    def execute(self, sql: str, params: Sequence = ()) -> "Cursor":
        """Run one statement."""
        self._cursor.execute(translate(sql), tuple(params) if params else None)
        self._started()
        return self

    def executemany(self, sql: str, seq_of_params) -> "Cursor":
        """Run one statement for each parameter tuple; ``rowcount`` is their sum."""
        self._cursor.executemany(translate(sql), [tuple(p) for p in seq_of_params])
        self._started()
        return self

    def _started(self) -> None:
        self._make = _row_maker(self._cursor) if self.row_factory is not None else None

    def _wrap(self, row):
        if row is None or self._make is None:
            return row
        return self._make(row)

    def fetchone(self):
        """The next row, or None."""
        if self._cursor.description is None:
            return None
        return self._wrap(self._cursor.fetchone())

    def fetchall(self) -> list:
        """Every remaining row."""
        if self._cursor.description is None:
            return []
        rows = self._cursor.fetchall()
        make = self._make
        return rows if make is None else [make(r) for r in rows]

    def fetchmany(self, size: int = 100) -> list:
        """Up to ``size`` more rows."""
        if self._cursor.description is None:
            return []
        rows = self._cursor.fetchmany(size)
        make = self._make
        return rows if make is None else [make(r) for r in rows]

    def __iter__(self) -> Iterator:
        if self._cursor.description is None:
            return iter(())
        make = self._make
        return iter(self._cursor) if make is None else (make(r) for r in self._cursor)

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed (or returned)."""
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        """The id the last INSERT drew from its table's sequence (``lastval()``)."""
        try:
            with self._conn.raw.cursor() as cur:
                cur.execute("SELECT lastval()")
                return cur.fetchone()[0]
        except psycopg.errors.ObjectNotInPrerequisiteState:
            return None

    @property
    def description(self):
        """Column descriptions of the last result."""
        return self._cursor.description

    def close(self) -> None:
        """Release the cursor."""
        self._cursor.close()


class Connection:
    """A psycopg connection in autocommit mode behind the sqlite3 methods the services call."""

    dialect = DIALECT

    def __init__(self, raw: psycopg.Connection):
        self.raw = raw
        self.row_factory = Row

    @property
    def in_transaction(self) -> bool:
        """True between BEGIN and COMMIT/ROLLBACK (also after a failed statement in one)."""
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def cursor(self) -> Cursor:
        """A new cursor; set ``row_factory = None`` on it for plain tuples."""
        return Cursor(self, self.row_factory)

    def execute(self, sql: str, params: Sequence = ()) -> Cursor:
        """Run one statement and return its cursor."""
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, seq_of_params) -> Cursor:
        """Run one statement per parameter tuple."""
        return self.cursor().executemany(sql, seq_of_params)

    def commit(self) -> None:
        """Commit an open transaction (sqlite3 compatibility)."""
        if self.in_transaction:
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back an open transaction."""
        if self.in_transaction:
            self.raw.execute("ROLLBACK")

    @property
    def closed(self) -> bool:
        """True once the connection is closed or broken."""
        return self.raw.closed or self.raw.broken

    def close(self) -> None:
        """Close the connection."""
        self.raw.close()

    def __hash__(self) -> int:
        return id(self)

    def __del__(self) -> None:
        # A server thread's reused connection goes when the thread does: close it then.
        raw = getattr(self, "raw", None)
        if raw is not None and not raw.closed:
            try:
                raw.close()
            except Exception:  # interpreter shutdown or a broken socket: nothing left to release
                pass


def connect(url: str, search_path: Sequence[str], *, read_only: bool = False) -> Connection:
    """Open a connection to ``url`` with our settings (autocommit, search_path, lock wait)."""
    raw = psycopg.connect(url, autocommit=True, connect_timeout=15)
    path = ", ".join(f'"{name}"' for name in search_path)
    raw.execute(f"SET search_path = {path}; SET lock_timeout = '{LOCK_TIMEOUT}'"
                + ("; SET default_transaction_read_only = on" if read_only else ""))
    return Connection(raw)


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``: the only form a URL is logged or shown in."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    if parts.password is None:
        cleaned = parts
    else:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        cleaned = parts._replace(netloc=netloc)
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", cleaned.query)
    return urlunsplit(cleaned._replace(query=query))
