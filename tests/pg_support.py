"""A real, throw-away PostgreSQL server for the tests and the bench (Debian's package binaries).

``PostgresServer().start()`` runs ``initdb`` into a fresh temporary folder, starts the server on a
free 127.0.0.1 port (unix socket inside that folder, trust auth for local and 127.0.0.1 only) and
``stop()`` stops it and removes the folder. As root the server runs as the ``postgres`` system user
(initdb and postgres refuse root). A watchdog process stops the server when this process dies
without running atexit (SIGKILL). Imports nothing from the project or pytest, so bench/ can use it.
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

SUPERUSER = "postgres"
SERVICE_USER = "postgres"
# Roles made by new_role() belong to this group; pg_hba asks its members for their password
# (scram) on TCP, so a URL with a password really uses it.
PASSWORD_GROUP = "hikaze_password_login"
REQUIRE_ENV = "HIKAZE_REQUIRE_POSTGRES"

_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "max_wal_size": "256MB",
    "log_min_messages": "warning",
    "log_checkpoints": "off",
}

# Runs in its own process: when the pipe to the test process closes (normal stop or a SIGKILLed
# test process), stop the server (immediate: nothing to keep) and remove its folder.
_WATCHDOG = r"""
import json, os, shutil, subprocess, sys
cfg = json.loads(sys.argv[1])
sys.stdin.buffer.read()
if os.path.exists(os.path.join(cfg["data"], "postmaster.pid")):
    subprocess.run(cfg["stop"], user=cfg["user"], group=cfg["user"], extra_groups=[] if cfg["user"] else None,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, cwd="/")
shutil.rmtree(cfg["root"], ignore_errors=True)
"""


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or psycopg) are not installed."""


def postgres_unavailable(reason: str):
    """Skip, or fail when the environment demands PostgreSQL (CI sets HIKAZE_REQUIRE_POSTGRES=1)."""
    import pytest

    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
    pytest.skip(reason)


def serve_for_tests():
    """Generator body of a pytest fixture: a started throw-away server, stopped afterwards; a
    missing PostgreSQL skips (or fails, see :func:`postgres_unavailable`)."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        postgres_unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


def find_bindir() -> Path:
    """The folder holding initdb/pg_ctl/postgres: pg_config's bindir, else the highest Debian version."""
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p)], reverse=True)
    candidates.extend(Path(p) for p in versions)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via pg_config --bindir or "
        "/usr/lib/postgresql/*/bin; install Debian's package: apt-get install postgresql")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (start() retries if it is taken since)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresServer:
    """One throw-away PostgreSQL cluster: start(), new_database(), new_role(), stop()."""

    def __init__(self, bindir: str | Path | None = None, locale: str = "C"):
        self.bindir = Path(bindir) if bindir else find_bindir()
        self.locale = locale
        self.os_user = SERVICE_USER if os.geteuid() == 0 else None  # None: run as ourselves
        self.root: Path | None = None
        self.port: int | None = None
        self.pid: int | None = None
        self.start_seconds: float | None = None
        self.major: int | None = None  # server major version, from the cluster's PG_VERSION
        self._watchdog: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._admin = None

    # --- life cycle -------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        extra = {}
        if self.os_user:
            extra = {"user": self.os_user, "group": self.os_user, "extra_groups": []}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGDATA", None)
        return subprocess.run(args, capture_output=True, text=True, env=env, cwd=self.root,
                              **extra, **kwargs)

    def _check(self, args: list[str], what: str, **kwargs) -> None:
        out = self._run(args, **kwargs)
        if out.returncode != 0:
            log = self.log_path
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{what} failed ({out.returncode}): {out.stderr.strip()}\n{tail}")

    def start(self) -> "PostgresServer":
        """initdb into a new temporary folder and start the server (waits until it accepts connections)."""
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise PostgresUnavailable("psycopg (3) is not installed: pip install 'psycopg[binary]'") from exc
        began = time.monotonic()
        # Under the system temp folder, not pytest's tmp_path: its 0700 parents would lock out
        # the postgres user, and the unix socket path must stay short (108 bytes).
        base = "/tmp" if os.path.isdir("/tmp") else None
        self.root = Path(tempfile.mkdtemp(prefix="hikaze-pg-", dir=base))
        self.socket_dir.mkdir()
        if self.os_user:
            try:
                entry = pwd.getpwnam(self.os_user)
            except KeyError:
                shutil.rmtree(self.root)
                self.root = None
                raise PostgresUnavailable(
                    f"running as root needs the unprivileged '{self.os_user}' system user (initdb refuses "
                    "root); Debian's postgresql-common package creates it") from None
            for path in (self.root, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._start_watchdog()
        atexit.register(self.stop)
        try:
            self._init_and_start()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _init_and_start(self) -> None:
        self._check([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                     "-E", "UTF8", f"--locale={self.locale}", "--auth=trust", "--no-sync"],
                    "initdb", timeout=300)
        self.major = int((self.data_dir / "PG_VERSION").read_text().strip().split(".")[0])
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n")
        for attempt in range(5):
            self.port = free_port()
            settings = dict(_SETTINGS, port=str(self.port),
                            unix_socket_directories=f"'{self.socket_dir}'")
            with open(self.data_dir / "postgresql.auto.conf", "w") as conf:
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
            out = self._run([str(self.bindir / "pg_ctl"), "start", "-w", "-t", "120", "-D",
                             str(self.data_dir), "-l", str(self.log_path)],
                            timeout=180, start_new_session=True)
            if out.returncode == 0:
                break
            log = self.log_path.read_text(errors="replace")
            if "could not bind" not in log or attempt == 4:  # anything but a lost port race is fatal
                raise RuntimeError(f"pg_ctl start failed: {out.stderr.strip()}\n{log[-3000:]}")
        self.pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        self.admin_execute(f"CREATE ROLE {PASSWORD_GROUP} NOLOGIN")

    def _start_watchdog(self) -> None:
        cfg = {"data": str(self.data_dir), "root": str(self.root), "user": self.os_user,
               "stop": [str(self.bindir / "pg_ctl"), "stop", "-m", "immediate", "-w", "-D",
                        str(self.data_dir)]}
        self._watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, json.dumps(cfg)],
                                          stdin=subprocess.PIPE, start_new_session=True)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder; safe to call twice."""
        with self._lock:
            if self._admin is not None:
                try:
                    self._admin.close()
                finally:
                    self._admin = None
            if self.root is None:
                return
            if (self.data_dir / "postmaster.pid").exists():
                self._run([str(self.bindir / "pg_ctl"), "stop", "-m", "fast", "-w", "-t", "60",
                           "-D", str(self.data_dir)], timeout=120)
            if self._watchdog is not None:
                self._watchdog.stdin.close()  # the watchdog removes a folder the server user owns
                try:
                    self._watchdog.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self._watchdog.kill()
                self._watchdog = None
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        atexit.unregister(self.stop)

    def halt(self, mode: str = "fast") -> None:
        """Stop the server but keep its data and port, as an outage would (``fast``: sessions
        are told and closed; ``immediate``: a crash, sockets just close); :meth:`resume` it."""
        if mode == "immediate":  # with synchronous_commit off the last commits would be lost
            self.admin_execute("CHECKPOINT")
        with self._lock:
            if self._admin is not None:
                self._admin.close()
                self._admin = None
            self._check([str(self.bindir / "pg_ctl"), "stop", "-m", mode, "-w", "-t", "60", "-D",
                         str(self.data_dir)], "pg_ctl stop", timeout=120)

    def resume(self) -> None:
        """Start a :meth:`halt`-ed server again on its port (waits until it accepts connections)."""
        self._check([str(self.bindir / "pg_ctl"), "start", "-w", "-t", "120", "-D",
                     str(self.data_dir), "-l", str(self.log_path)], "pg_ctl start",
                    timeout=180, start_new_session=True)
        self.pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def __enter__(self) -> "PostgresServer":
        return self.start() if self.root is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- databases and roles ----------------------------------------------------------------

    def url_for(self, database: str = "postgres", user: str = SUPERUSER,
                password: str | None = None) -> str:
        """postgresql:// URL of a database on this server (TCP on 127.0.0.1)."""
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    @property
    def url(self) -> str:
        """URL of the server's ``postgres`` database as the superuser (no password: trust)."""
        return self.url_for()

    def admin_execute(self, sql, params=None) -> list[tuple]:
        """Run one statement as the superuser in autocommit mode (over the unix socket)."""
        import psycopg

        with self._lock:
            if self._admin is None or self._admin.closed:
                self._admin = psycopg.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER,
                                              dbname="postgres", autocommit=True)
            cur = self._admin.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def new_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create a fresh database (optionally a copy of ``template``, which must have no sessions); its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if template:
            sql += f" TEMPLATE {_quote_ident(template)}"
        # FILE_COPY (PostgreSQL 15+) copies the template's files instead of WAL-logging every
        # block: about half the time for the small databases tests use.
        self.admin_execute(sql + (" STRATEGY FILE_COPY" if self.major >= 15 else ""))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any session still connected to it."""
        self.admin_execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def new_role(self, name: str, password: str, database: str = "postgres") -> str:
        """A superuser role that must log in with ``password`` over TCP; its URL (password included)."""
        from psycopg import sql

        self.admin_execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {} IN ROLE {}").format(
            sql.Identifier(name), sql.Literal(password), sql.Identifier(PASSWORD_GROUP)))
        return self.url_for(database, user=name, password=password)
