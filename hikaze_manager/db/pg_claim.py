"""One live server per machine name on a shared library: a session advisory lock on a connection
of its own, taken again as soon as the database is back after a restart. A server that finds its
name taken meanwhile by another live server makes no changes until it can take the name back."""

from __future__ import annotations

import hashlib
import logging
import threading
import time

from . import close_quietly
from . import errors as db_errors

logger = logging.getLogger(__name__)

# The watcher polls the claim's socket (no round trip) this often, so the claim is taken again
# within this long of the database's return, even on a server no request reaches.
WATCH_INTERVAL_S = 0.5
RETRY_TAKEN_S = 3.0  # how often a server whose name is taken asks for it again (one statement)


class StartRefused(RuntimeError):
    """The shared library cannot be served by this server; the message says why and what to do."""


class MachineInUse(StartRefused):
    """Another live server already runs as this machine on the shared library."""


def claim_key(schema: str) -> int:
    """The advisory lock (a signed 64-bit key) held by the one live server of a machine schema."""
    digest = hashlib.sha256(f"hikaze-machine:{schema}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Claim:
    """The claim of one machine name, shared by every app of this process on that library."""

    def __init__(self, store):
        self.machine = store.machine
        self._key = claim_key(store.schema)
        self._open = lambda: store._pg.connect(store.url, store.search_path)
        self.users = 0
        self._conn = None
        self._taken: str | None = None  # another live server has the name: why writes stop
        self._tried = 0.0  # when the claim was last asked for
        self._failed = False  # and the database did not answer
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self) -> None:
        """Hold the name now; MachineInUse if another live server holds it."""
        with self._lock:
            if self._holds():
                return
            try:
                got = self._lock_it()
            except BaseException:
                self._drop()
                raise
            if not got:
                if not self.users:  # refused at start: nothing of this claim stays open
                    self._drop()
                raise MachineInUse(
                    f"another Hikaze Manager is running as machine {self.machine!r} on this "
                    "library; give this one --machine-name NAME (or HIKAZE_MACHINE_NAME)")
            self._taken = None
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="hikaze-machine-claim",
                                            daemon=True)
            self._thread.start()

    def refusal(self) -> str | None:
        """Why this server may not write now (another live server has its name), else None:
        a poll of the claim's socket while it holds; a lost claim is taken again first."""
        if self._holds():
            return None
        self.renew()
        return self._taken

    def renew(self, *, wait: bool = True) -> None:
        """Take the claim again if its session is gone (a database restart) or another server
        had the name; a database that cannot be reached is left to the caller's own statements.
        ``wait=False``: return at once if another thread is renewing it."""
        if self._holds() or not self._lock.acquire(blocking=wait):
            return
        try:
            if self._stop.is_set() or self._holds():
                return
            # A database that just failed to answer is not asked again at once by every waiting
            # request (a host that drops packets takes the connect timeout each time).
            since = time.monotonic() - self._tried
            if since < (RETRY_TAKEN_S if self._taken is not None else
                        WATCH_INTERVAL_S if self._failed else 0):
                return
            try:
                got = self._lock_it()
            except db_errors.Error:
                self._drop()
                self._failed, self._tried = True, time.monotonic()
                return
            self._failed, self._tried = False, time.monotonic()
            if got and self._taken is not None:
                logger.warning("[Hikaze] machine %r is this server's again: it makes changes "
                               "again", self.machine)
            elif not got and self._taken is None:
                logger.error("[Hikaze] %s", self.lost_message())
            self._taken = None if got else self.lost_message()
        finally:
            self._lock.release()

    def lost_message(self) -> str:
        """The 503 of a write while another server has this machine's name."""
        return (f"another Hikaze Manager is now running as machine {self.machine!r} on this "
                "library (it started while the database was away): this server makes no changes "
                "until that one stops, reads still work; give one of them another "
                "--machine-name NAME (or HIKAZE_MACHINE_NAME)")

    def release(self) -> None:
        """Give the name up (the last app of this process using it closed)."""
        self._stop.set()
        with self._lock:
            self._drop()

    def _holds(self) -> bool:
        conn = self._conn
        return self._taken is None and conn is not None and conn.usable()

    def _lock_it(self) -> bool:
        """Ask for the lock on the claim's connection (a new one if it is gone)."""
        if self._conn is None or not self._conn.usable():
            self._drop()
            conn = self._open()
            try:
                if conn.raw.info.server_version >= 140000:  # a server-wide idle limit must spare it
                    conn.raw.execute("SET idle_session_timeout = 0")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn.raw.execute("SELECT pg_try_advisory_lock(%s)",
                                      (self._key,)).fetchone()[0]

    def _drop(self) -> None:
        if self._conn is not None:
            close_quietly(self._conn)
        self._conn = None

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL_S):
            if not self._holds():
                self.renew()


# One claim per (library URL, machine schema) and process: apps made again in one process (a
# restart inside ComfyUI or a test) are the same machine and share it; it goes with the last.
_claims: dict[tuple[str, str], Claim] = {}
_claims_lock = threading.Lock()


def acquire(store) -> Claim:
    """This process's claim on ``store``'s machine name, taken if needed; MachineInUse if
    another live server holds it."""
    key = (store.url, store.schema)
    with _claims_lock:
        claim = _claims.get(key) or Claim(store)
        claim.take()
        _claims[key] = claim
        claim.users += 1
        return claim


def release(store, claim: Claim) -> None:
    """One app of this process is done with ``claim``; the last one gives the name up."""
    with _claims_lock:
        claim.users -= 1
        if claim.users <= 0:
            if _claims.get((store.url, store.schema)) is claim:
                del _claims[(store.url, store.schema)]
            claim.release()
