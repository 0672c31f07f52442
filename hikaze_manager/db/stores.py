"""The two places a library can live: a SQLite file in the data folder, or a PostgreSQL database
shared by several machines. Both hand out connections with the same (sqlite3) surface."""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from . import (RequestConnections, close_quietly, connect as sqlite_connect, pg_claim, release,
               transaction)
from . import errors as db_errors
from .pg_claim import MachineInUse, StartRefused  # noqa: F401 (imported from here)
from .watch import DataVersionWatcher

logger = logging.getLogger(__name__)

PG_SCHEMA_SQL = Path(__file__).with_name("pg_schema.sql")
PG_SCHEMA_VERSION = 2  # 2: no btree on a raw path (pg_schema.sql); older servers open it read-only
MACHINE_NAME_MAX = 100


def default_machine_name() -> str:
    """This machine's name when none is configured: its host name."""
    return socket.gethostname() or "localhost"


def valid_machine_name(name: object) -> str | None:
    """``name`` stripped if it can name a machine (1-100 printable characters), else None."""
    if not isinstance(name, str):
        return None
    name = name.strip()
    if not 0 < len(name) <= MACHINE_NAME_MAX or not name.isprintable():
        return None
    return name


def configured_machine_name(configured: object) -> str:
    """This machine's name from its setting (unset or empty: the host name); ValueError if invalid."""
    name = valid_machine_name(default_machine_name() if configured in (None, "") else configured)
    if name is None:
        raise ValueError("MACHINE_NAME must be 1 to 100 printable characters")
    return name


def machine_schema(name: str) -> str:
    """The PostgreSQL schema of one machine's own tables: a readable slug plus a digest of the
    exact name, so names differing only in case or punctuation never share a schema."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:32] or "machine"
    return f"m_{slug}_{hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]}"


class _Store:
    """What both stores share: short-lived connections made from the store's own ``connect``."""

    def connect(self, *, read_only: bool = False):
        raise NotImplementedError

    def connection(self, *, read_only: bool = False) -> closing:
        """A short-lived connection for code outside a request (jobs, start-up, the node)."""
        return closing(self.connect(read_only=read_only))

    def write_refusal(self) -> str | None:
        """Why this server may not write now although the library is writable, else None."""
        return None


class SqliteStore(_Store):
    """The embedded default: one SQLite file (WAL) in the data folder."""

    kind = "sqlite"

    def __init__(self, database: str | Path, *, immutable: bool = False):
        self.database = Path(database)
        self.immutable = immutable
        self._connections = RequestConnections()

    def connect(self, *, read_only: bool = False):
        """A new connection, closed by the caller."""
        return sqlite_connect(self.database, read_only=read_only, immutable=self.immutable)

    def checkout(self, read_only: bool):
        """This thread's reused connection, for a request."""
        return self._connections.checkout(self.database, read_only, self.immutable)

    def watcher(self) -> DataVersionWatcher:
        """A probe whose value changes with every commit from anywhere."""
        return DataVersionWatcher(self.database)

    def describe(self) -> str:
        """Where the library is, for logs and the status payload."""
        return str(self.database)

    def close(self) -> None:
        """Nothing to release: each thread's SQLite connection closes with the thread."""


class _ThreadConnections(threading.local):
    def __init__(self) -> None:
        self.conns: dict[bool | str, object] = {}


class PostgresStore(_Store):
    """A library in PostgreSQL: shared tables in schema ``hikaze``, this machine's in its own."""

    kind = "postgres"

    def __init__(self, url: str, machine: str):
        from . import pg

        self.url = url
        self.machine = machine
        self.schema = machine_schema(machine)
        self._pg = pg
        self._local = _ThreadConnections()
        self._lock = threading.Lock()
        self._open: weakref.WeakSet = weakref.WeakSet()  # every connection handed out, to close
        self._claim: pg_claim.Claim | None = None

    @property
    def search_path(self) -> tuple[str, str]:
        """This machine's schema first: its ``models`` view hides the shared records table."""
        return (self.schema, "hikaze")

    def connect(self, *, read_only: bool = False):
        """A new connection, closed by the caller."""
        conn = self._pg.connect(self.url, self.search_path, read_only=read_only)
        if not read_only and self._claim is not None:
            # A new writer (its last one broke: the database may have restarted, ending the
            # claim's session too): take the name back before this one writes anything.
            self._claim.renew(wait=False)
        with self._lock:
            self._open.add(conn)
        return conn

    def checkout(self, read_only: bool | str):
        """This thread's reused connection, for a request: a new one when the kept one broke or
        the server ended its session (a restart: every thread's connection is dead at once)."""
        conn = self._local.conns.get(read_only)
        if conn is None or not conn.usable():
            self._local.conns.pop(read_only, None)
            if conn is not None:
                close_quietly(conn)
            conn = self.connect(read_only=read_only is True)
            self._local.conns[read_only] = conn
        return conn

    @contextmanager
    def reader(self) -> Iterator:
        """This thread's reused connection for reads beside the request's (pictures): never the
        request's own, which may be inside a transaction."""
        conn = self.checkout("reader")
        try:
            yield conn
        finally:
            release(conn)

    def watcher(self) -> "PgVersionWatcher":
        """A probe of the library's version row, which every commit on any machine changes."""
        return PgVersionWatcher(self)

    def joined(self, conn) -> bool:
        """True once this machine's tables exist (a server with this machine name has run)."""
        row = conn.raw.execute("SELECT to_regclass(%s)", (f'"{self.schema}".models',)).fetchone()
        return row[0] is not None

    def describe(self) -> str:
        """The URL without its password, and this machine's name."""
        return f"{self._pg.redact(self.url)} (machine {self.machine!r})"

    def prepare(self) -> str | None:
        """Create or complete the schema (shared and this machine's); the reason if read-only."""
        from psycopg import errors

        with self.connection() as conn:
            try:
                return self._prepare(conn)
            except (errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction) as exc:
                return self._read_only_reason(conn, exc)

    def _read_only_reason(self, conn, exc) -> str:
        """Why a library this role or session cannot write is read-only; StartRefused when it
        lacks what this machine needs to be served (its tables, at the current version)."""
        from psycopg import errors

        role, database, found = conn.raw.execute(
            "SELECT current_user, current_database(), to_regclass('hikaze.schema_version')"
        ).fetchone()
        version = None
        if found is not None:
            row = conn.raw.execute("SELECT value FROM hikaze.schema_version").fetchone()
            version = row[0] if row else None
        if isinstance(exc, errors.ReadOnlySqlTransaction):
            why = f"the database {database!r} accepts only reads (a standby, or read-only sessions)"
            fix = "point this machine at the primary server"
        else:
            detail = str(exc).splitlines()[0] if str(exc) else "permission denied"
            why = f"role {role!r} may not change it ({detail})"
            fix = (f"grant role {role!r} CREATE on database {database!r} and on its schemas, and "
                   "write access to their tables, or start once with a role that has them")
        if version is not None and version > PG_SCHEMA_VERSION:
            return _newer_schema(version)
        if version == PG_SCHEMA_VERSION and self.joined(conn):
            return f"The shared library cannot be written: {why}; it is opened read-only."
        if version is None:
            missing = "is not set up"
        elif version == PG_SCHEMA_VERSION:
            missing = f"has no tables for machine {self.machine!r} yet"
        else:
            missing = f"needs upgrading to schema version {PG_SCHEMA_VERSION}"
        raise StartRefused(f"the shared library {missing}, and {why}: {fix}")

    def _prepare(self, conn) -> str | None:
        from psycopg import sql

        sections = _schema_sections()
        # Quoted by the driver for this server; the section uses it only where SQL takes a
        # string constant (the view, the trigger's argument), never inside a function body.
        literal = sql.Literal(self.machine).as_string(conn.raw)
        with transaction(conn):
            conn.raw.execute("CREATE SCHEMA IF NOT EXISTS hikaze")
            conn.raw.execute(
                "CREATE TABLE IF NOT EXISTS hikaze.schema_version (id INTEGER PRIMARY KEY "
                "CHECK (id = 1), value INTEGER NOT NULL)")
            row = conn.raw.execute("SELECT value FROM hikaze.schema_version").fetchone()
            if row is not None and row[0] > PG_SCHEMA_VERSION:
                return _newer_schema(row[0])
            conn.raw.execute(sections["shared"])
            conn.raw.execute(sections["machine"].replace("{machine}", f'"{self.schema}"')
                             .replace("{machine_name}", literal))
            _add_version_triggers(conn, self.schema)
            now = int(time.time() * 1000)
            conn.raw.execute(
                "INSERT INTO hikaze.machines(name, schema_name, first_seen, last_seen) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET last_seen = %s",
                (self.machine, self.schema, now, now, now))
            conn.raw.execute(
                "INSERT INTO hikaze.schema_version(id, value) VALUES (1, %s) "
                "ON CONFLICT (id) DO UPDATE SET value = excluded.value", (PG_SCHEMA_VERSION,))
        return None

    def claim(self) -> None:
        """Hold this machine's name on the library while the server runs (pg_claim); MachineInUse
        if another live server holds it. Two servers with one name would share one machine's
        paths, pending rows and journal."""
        if self._claim is None:
            self._claim = pg_claim.acquire(self)

    def renew_claim(self) -> None:
        """Take the claim again when its connection was lost (the database restarted)."""
        if self._claim is not None:
            self._claim.renew(wait=False)

    def write_refusal(self) -> str | None:
        """Why this server may not write now: another live server took its machine name."""
        return self._claim.refusal() if self._claim is not None else None

    def connection(self, *, read_only: bool = False) -> closing:
        """A short-lived connection for code outside a request (jobs, start-up, the node);
        MachineTaken for a writer while another live server has this machine's name."""
        refusal = None if read_only else self.write_refusal()
        if refusal is not None:
            raise db_errors.MachineTaken(refusal)
        return closing(self.connect(read_only=read_only))

    def _release_claim(self) -> None:
        claim, self._claim = self._claim, None
        if claim is not None:
            pg_claim.release(self, claim)

    def close(self) -> None:
        """Close every connection this store opened that is still open (at app shutdown)."""
        self._release_claim()
        with self._lock:
            conns = list(self._open)
            self._open = weakref.WeakSet()
        for conn in conns:
            conn.close()


def _newer_schema(version: int) -> str:
    return (f"The shared library has schema version {version}, newer than this Hikaze Manager "
            f"understands ({PG_SCHEMA_VERSION}); it is opened read-only. Update Hikaze Manager "
            "on this machine.")


def _schema_sections() -> dict[str, str]:
    text = PG_SCHEMA_SQL.read_text(encoding="utf-8")
    shared, machine = text.split("-- @@machine", 1)
    return {"shared": shared.split("-- @@shared", 1)[1], "machine": machine}


SERIAL_TABLES = ("tags", "pending_import", "image_writes")


def _add_version_triggers(conn, schema: str) -> None:
    """Every table but the version rows, the machine list and the tag lists (changed only with
    the links, whose statement bumps it) bumps the version once per writing statement; serial
    tables count ids as SQLite's AUTOINCREMENT does."""
    tables = conn.raw.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('hikaze', %s) AND table_type = 'BASE TABLE' "
        "AND table_name NOT IN ('version', 'schema_version', 'machines', 'model_tag_lists')", (schema,)).fetchall()
    for table_schema, table in tables:
        conn.raw.execute(
            f'CREATE OR REPLACE TRIGGER bump_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE '
            f'ON "{table_schema}"."{table}" FOR EACH STATEMENT EXECUTE FUNCTION hikaze.bump_version()')
        if table in SERIAL_TABLES:
            conn.raw.execute(
                f'CREATE OR REPLACE TRIGGER autoincrement BEFORE INSERT ON "{table_schema}"."{table}" '
                'FOR EACH ROW EXECUTE FUNCTION hikaze.autoincrement()')


class PgVersionWatcher:
    """The library version row, read on one long-lived connection (about 0.1 ms a probe)."""

    def __init__(self, store: PostgresStore):
        self._store = store
        self._lock = threading.Lock()
        self._conn = None

    def version(self) -> tuple | None:
        """The version now, or None when the database cannot be reached."""
        from . import errors as db_errors

        with self._lock:
            try:
                if self._conn is None or not self._conn.usable():
                    self._close_locked()
                    self._conn = self._store.connect(read_only=True)
                    self._store.renew_claim()
                return ("pg", self._conn.execute("SELECT value FROM hikaze.version").fetchone()[0])
            except db_errors.Error as exc:
                logger.warning("[Hikaze] library version probe failed: %s", exc)
                self._close_locked()
                return None

    def _close_locked(self) -> None:
        if self._conn is not None:
            close_quietly(self._conn)
        self._conn = None

    def close(self) -> None:
        """Release the probe connection."""
        with self._lock:
            self._close_locked()
