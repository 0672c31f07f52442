"""PostgreSQL connections (psycopg 3) with the small sqlite3 surface the services use.

Services write one SQL text for both stores: ``?`` placeholders and the few SQLite spellings
still in use (``INSERT OR IGNORE``, ``json_each(?)``, ``LIKE``) are translated here, once per
SQL string. Transactions keep SQLite's semantics: ``BEGIN IMMEDIATE`` (our write transaction)
takes one advisory lock shared by every machine and is READ COMMITTED whatever the server's
default, so writers run one at a time exactly as they do on SQLite, each seeing every earlier
commit, and every read-modify-write in the services stays correct unchanged; ``BEGIN``
(a consistent read) is a REPEATABLE READ snapshot.
"""

from __future__ import annotations

import functools
import re
import select
from collections.abc import Iterator, Sequence

import psycopg
from psycopg import ClientCursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from .pg_redact import guard_log, redact, scrub  # noqa: F401 (redact is imported from here)

DIALECT = "postgres"
WRITE_LOCK_KEY = 0x48696B617A65  # "Hikaze": the one advisory lock all writers take
LOCK_TIMEOUT = "15s"  # SQLite's busy timeout: a writer waits this long, then the request gets 503
# A session idle inside a transaction for this long is ended by the server, which frees the write
# lock it holds: a machine frozen (suspended, paused VM, SIGSTOP) in the middle of a write would
# otherwise make every other machine's writes 503 until it wakes. Our transactions never wait
# this long between two statements (the longest gaps: one picture read or one v1 row planned).
IDLE_IN_TRANSACTION_TIMEOUT = "60s"
# An uncached list sorts its rows' JSON (~5 MB at 10k models): above the server's 4 MB default
# the sort spills to temp files, written and read back every time. The limit is per sort.
WORK_MEM = "64MB"
# TCP keepalives, so a peer that vanished (power cut, network gone) is noticed in about a minute
# and a half instead of the system's default two hours: libpq's on our side (a request never hangs
# on a dead server), the server's on its side (a dead machine's session and lock are dropped).
# tcp_user_timeout bounds the wait for a server that stops acknowledging what we sent.
KEEPALIVE_PARAMS = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
                    "keepalives_count": "6", "tcp_user_timeout": "90000"}
SERVER_KEEPALIVES = {"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10",
                     "tcp_keepalives_count": "6"}

# What the rewrites below must never look into: string literals and quoted identifiers (data,
# kept byte for byte) and comments (dropped). SQLite's rules: '' and "" escape a quote, block
# comments do not nest, and an unterminated literal or comment runs to the end of the text.
_OPAQUE = re.compile(r"""'(?:[^']|'')*'?|"(?:[^"]|"")*"?|--[^\n]*|/\*.*?(?:\*/|\Z)""", re.DOTALL)
_HELD = "\x00"  # stands for one literal while the code around it is rewritten
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_JSON_EACH = re.compile(
    r"\bjson_each\(%s\)(?:\s+(?!(?:WHERE|ON|JOIN|LEFT|INNER|CROSS|ORDER|GROUP|LIMIT|UNION)\b)"
    r"(?:AS\s+)?(\w+))?", re.IGNORECASE)
_LIKE = re.compile(r"\bLIKE\b", re.IGNORECASE)
# pending_import and file_hashes are unique on md5(path): a path may be too long for a btree.
_ON_CONFLICT_PATH = re.compile(r"\bON\s+CONFLICT\s*\(\s*path\s*\)", re.IGNORECASE)
_STATEMENTS = {
    # READ COMMITTED whatever the server's default: each statement after the lock sees every
    # writer that committed while we waited (a REPEATABLE READ snapshot is taken by the lock
    # statement itself, before the lock is granted, and would lose their updates).
    "BEGIN IMMEDIATE": "BEGIN ISOLATION LEVEL READ COMMITTED; "
                       f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})",
    "BEGIN": "BEGIN ISOLATION LEVEL REPEATABLE READ",
}


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """The PostgreSQL text of one of our SQLite-style statements, for parameters bound by psycopg
    (always bound, so ``%%`` always means ``%``)."""
    if _HELD in sql:
        raise ValueError("SQL text holds a NUL character")
    held: list[str] = []

    def hold(match: re.Match) -> str:
        text = match.group(0)
        if text.startswith(("--", "/*")):
            return " "
        held.append(text.replace("%", "%%"))
        return _HELD

    code = _OPAQUE.sub(hold, sql)
    special = None if held else _STATEMENTS.get(" ".join(code.split()).upper())
    if special:
        return special
    code = code.replace("%", "%%").replace("?", "%s")
    if _INSERT_OR_IGNORE.match(code):
        code = _INSERT_OR_IGNORE.sub("INSERT INTO", code, count=1).rstrip().rstrip(";")
        returning = _RETURNING.search(code)
        at = returning.start() if returning else len(code)
        code = f"{code[:at].rstrip()} ON CONFLICT DO NOTHING {code[at:]}".rstrip()
    code = _JSON_EACH.sub(
        lambda m: f"json_array_elements_text(%s::json) AS {m.group(1) or 'json_each'}(value)", code)
    code = _LIKE.sub("ILIKE", code)
    code = _ON_CONFLICT_PATH.sub("ON CONFLICT (md5(path))", code)
    literals = iter(held)
    return re.sub(_HELD, lambda _: next(literals), code)


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
        self._cursor.execute(translate(sql), tuple(params))
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
        """True between BEGIN and COMMIT/ROLLBACK (also after a failed statement in one); never
        on a broken connection, whose transaction the server has already ended."""
        status = self.raw.info.transaction_status
        return status in (TransactionStatus.ACTIVE, TransactionStatus.INTRANS,
                          TransactionStatus.INERROR) and not self.closed

    def cursor(self) -> Cursor:
        """A new cursor; set ``row_factory = None`` on it for plain tuples."""
        return Cursor(self, self.row_factory)

    def execute(self, sql: str, params: Sequence = ()) -> Cursor:
        """Run one statement and return its cursor."""
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, seq_of_params) -> Cursor:
        """Run one statement per parameter tuple."""
        return self.cursor().executemany(sql, seq_of_params)

    @property
    def closed(self) -> bool:
        """True once the connection is closed or broken."""
        return self.raw.closed or self.raw.broken

    def usable(self) -> bool:
        """True when the connection can serve another request: open, and not ended by the server.

        A session the server ended while we were idle (restart, failover, terminated backend)
        looks fine until used; its socket is readable, though (the server's goodbye or EOF),
        while an idle live session has nothing to read.
        """
        if self.closed:
            return False
        try:
            return not _readable(self.raw.fileno())
        except (OSError, ValueError, psycopg.Error):
            return False

    def close(self) -> None:
        """Close the connection."""
        self.raw.close()

    def __del__(self) -> None:
        # A server thread's reused connection goes when the thread does: close it then.
        raw = getattr(self, "raw", None)
        if raw is not None and not raw.closed:
            try:
                raw.close()
            except Exception:  # interpreter shutdown or a broken socket: nothing left to release
                pass


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):  # select() fails on descriptors past 1024, which a busy server has
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


def on_every_machine(conn: Connection, sql: str, params: Sequence = ()) -> None:
    """``sql`` once in each machine's schema of the library (search_path switched for each)."""
    own = conn.raw.execute("SELECT current_setting('search_path')").fetchone()[0]
    schemas = [row[0] for row in conn.raw.execute(
        "SELECT schema_name FROM hikaze.machines ORDER BY name")]
    # In a transaction the switch is local to it: when a statement fails, the ROLLBACK (or
    # ROLLBACK TO the caller's savepoint) puts our own search_path back, and nothing may be run
    # on the aborted transaction before that, or its error would hide the real one.
    local = conn.in_transaction
    try:
        for schema in schemas:
            quoted = '"' + schema.replace('"', '""') + '"'
            conn.raw.execute("SELECT set_config('search_path', %s, %s)",
                             (f"{quoted}, hikaze", local))
            conn.execute(sql, params)
    finally:
        if conn.raw.info.transaction_status in (TransactionStatus.IDLE, TransactionStatus.INTRANS):
            conn.raw.execute("SELECT set_config('search_path', %s, %s)", (own, local))


def every_machine_table(conn: Connection, table: str, columns: str) -> str:
    """A FROM item: ``columns`` of ``table`` in each machine's schema that has one, UNION ALL."""
    schemas = [row[0] for row in conn.raw.execute(
        "SELECT schema_name FROM hikaze.machines WHERE to_regclass(quote_ident(schema_name)"
        " || '.' || quote_ident(%s)) IS NOT NULL ORDER BY name", (table,))]
    quoted = '"' + table.replace('"', '""') + '"'
    selects = [f'SELECT {columns} FROM "{schema.replace(chr(34), chr(34) * 2)}".{quoted}'
               for schema in schemas] or [f"SELECT {columns} FROM {quoted} WHERE FALSE"]
    return "(" + " UNION ALL ".join(selects) + ")"


def connect(url: str, search_path: Sequence[str], *, read_only: bool = False) -> Connection:
    """Open a connection to ``url`` with our settings (autocommit, search_path, lock wait,
    keepalives, idle-in-transaction timeout)."""
    guard_log(url)
    failure = None
    try:
        given = conninfo_to_dict(url)
        # The URL's own keepalive settings win; tcp_user_timeout needs libpq 12.
        extra = {key: value for key, value in KEEPALIVE_PARAMS.items() if key not in given
                 and (key != "tcp_user_timeout" or psycopg.pq.version() >= 120000)}
        raw = psycopg.connect(url, autocommit=True, connect_timeout=15, **extra)
    except psycopg.Error as exc:
        # libpq quotes the connection string (or pieces of a misspelt password) in its errors:
        # never let that reach a log.
        message = scrub(str(exc), url)
        if message == str(exc):
            raise
        failure = type(exc)(message)
    if failure is not None:
        raise failure  # outside the except block: no __context__ keeps the original message
    path = ", ".join(f'"{name}"' for name in search_path)
    # JIT compiling costs more than it saves on our short queries (0.3 s on a 10k list).
    # Single statements outside a transaction are READ COMMITTED too, as SQLite's autocommit
    # writes are: a database or role defaulting to a stricter level would fail them (40001).
    keepalives = "".join(f"; SET {name} = {value}" for name, value in SERVER_KEEPALIVES.items())
    raw.execute(f"SET search_path = {path}; SET lock_timeout = '{LOCK_TIMEOUT}'; SET jit = off; "
                f"SET work_mem = '{WORK_MEM}'; "
                f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_TIMEOUT}'"
                f"{keepalives}; SET default_transaction_isolation = 'read committed'"
                + ("; SET default_transaction_read_only = on" if read_only else ""))
    return Connection(raw)
