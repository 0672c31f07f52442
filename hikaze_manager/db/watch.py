"""A cheap "has anything been committed?" probe for the database file, from any connection or process."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from . import sqlite_uri


class DataVersionWatcher:
    """Reports a value that changes whenever any other connection commits to the database file.

    SQLite's ``PRAGMA data_version`` on one long-lived connection that never writes changes after
    every commit made through any other connection, in this process or another, to any table
    (including tables added later); about 5 us per call. The file's identity is part of the value,
    so a database file replaced on disk is seen too (the probe then reopens on the new file).
    """

    def __init__(self, path: str | Path):
        self._path = str(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None
        self._epoch = 0  # a reopened connection counts data_version afresh: never reuse a value

    def _open(self, identity: tuple[int, int]) -> sqlite3.Connection:
        if self._conn is not None:
            self._conn.close()
        self._conn = sqlite3.connect(
            sqlite_uri(self._path, "ro"), uri=True, isolation_level=None, check_same_thread=False
        )
        self._file = identity
        self._epoch += 1
        return self._conn

    def version(self) -> tuple[int, ...] | None:
        """``(device, inode, epoch, data_version)`` of the file now; None if it cannot be read."""
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        identity = (st.st_dev, st.st_ino)
        with self._lock:
            try:
                conn = self._conn if self._file == identity else self._open(identity)
                data_version = conn.execute("PRAGMA data_version").fetchone()[0]
                return (*identity, self._epoch, data_version)
            except sqlite3.Error:
                self.close_locked()
                return None

    def close_locked(self) -> None:
        """Close the probe connection; the caller holds the lock."""
        if self._conn is not None:
            self._conn.close()
        self._conn, self._file = None, None

    def close(self) -> None:
        """Close the probe connection (it reopens on the next :meth:`version`)."""
        with self._lock:
            self.close_locked()
