"""Full-file SHA-256: streamed in 1 MiB chunks (``hash_stream``), cached by (path, size, mtime), parallel.

* :func:`sha256_file` hashes one file and refuses a result if the file changed while it was read
  (size, mtime or inode differ between the start and the end), so no wrong hash is ever stored.
* :func:`hash_files` answers many files: unchanged files come from the ``file_hashes`` table
  (created by upgrade step 3), the rest are hashed on a small thread pool and recorded.

Threads are enough: ``hashlib`` and ``readinto`` release the GIL, and two threads hash at ~1.98x
one thread on two cores (perf-anchors section 2). The pool uses every core, but its threads run at
a lower scheduling priority (nice +10 on Linux), so waitress request threads win a busy core and
the server stays responsive; on an idle machine hashing still gets both cores.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import db
from . import hash_stream
from .metadata.safetensors import is_safetensors_name

logger = logging.getLogger(__name__)

CHUNK_SIZE = hash_stream.CHUNK_SIZE
MAX_WORKERS = 4
WORKER_NICENESS = 10

# Called with the number of bytes just hashed; may raise (e.g. JobCancelled) to stop hashing.
Progress = Callable[[int], None]


class FileChangedError(OSError):
    """The file was modified, replaced or truncated while it was being hashed."""


@dataclass(frozen=True)
class FileIdentity:
    """What makes a hash reusable: the file's path, size and modification time (plus inode)."""

    size: int
    mtime_ns: int
    inode: int = 0
    device: int = 0

    @classmethod
    def of(cls, st: os.stat_result) -> "FileIdentity":
        """The identity of a ``stat`` result."""
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


@dataclass
class HashResult:
    """The outcome for one path: a digest, or an error message for the report."""

    path: str
    sha256: str | None = None
    error: str | None = None
    size: int = 0
    cached: bool = False
    # Safetensors only, when asked for (``hash_files(autov3=True)``); "" = not a safetensors layout.
    autov3: str | None = None


class HashStats:
    """Process-wide counters of real hashing work (not cache hits); read by tests and benches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files = 0
        self.bytes = 0

    def add(self, size: int) -> None:
        """Count one fully hashed file."""
        with self._lock:
            self.files += 1
            self.bytes += size


STATS = HashStats()


class _DataSection:
    """A second SHA-256 over the bytes after a safetensors header (AutoV3), fed in the same pass."""

    def __init__(self) -> None:
        self.offset = -1
        self.digest = None
        self.pos = 0

    def update(self, chunk: memoryview) -> None:
        if self.pos == 0 and len(chunk) >= 9 and chunk[8] == 0x7B:  # "{": a JSON header
            self.offset = 8 + int.from_bytes(chunk[:8], "little")
            self.digest = hashlib.sha256()
        end = self.pos + len(chunk)
        if self.digest is not None and end > self.offset:
            self.digest.update(chunk[max(0, self.offset - self.pos):])
        self.pos = end

    def autov3(self) -> str:
        """The short hash, or ``""`` when the file has no safetensors layout (so: cached as known)."""
        if self.digest is None or self.offset > self.pos:
            return ""
        return self.digest.hexdigest()[:12]


def sha256_file(path: str | os.PathLike, progress: Progress | None = None) -> tuple[str, FileIdentity]:
    """Hash the whole file; return the hex digest and the identity it was taken from.

    Raises ``OSError`` if the file cannot be read and :class:`FileChangedError` if it changed while
    being read. ``progress`` runs once per 1 MiB chunk, so keep it cheap.
    """
    sha, _, identity = hash_file(path, progress)
    return sha, identity


def hash_file(path: str | os.PathLike, progress: Progress | None = None,
              autov3: bool = False) -> tuple[str, str | None, FileIdentity]:
    """:func:`sha256_file`, plus the AutoV3 of a safetensors file from the same reads if asked."""
    data = _DataSection() if autov3 else None
    digest = hashlib.sha256()
    sinks = [digest.update] if data is None else [digest.update, data.update]
    with open(path, "rb", buffering=0) as fh:
        before = FileIdentity.of(os.fstat(fh.fileno()))
        # Read exactly the size seen at open (a file that keeps growing must not keep us here),
        # then probe one byte more: data past the end means it changed.
        read = hash_stream.feed(fh, before.size, sinks, progress)
        after = FileIdentity.of(os.fstat(fh.fileno()))
    try:
        current = FileIdentity.of(os.stat(path))
    except FileNotFoundError:
        current = None
    if before != after or current != before or read != before.size:
        raise FileChangedError(f"file changed while hashing: {path}")
    STATS.add(read)
    return digest.hexdigest(), data.autov3() if data is not None else None, before


def normalize_path(path: str) -> str:
    """The one spelling of a path used as a key (absolute, normalised, case-folded on Windows)."""
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


def cached_sha256(conn: sqlite3.Connection, path: str, identity: FileIdentity) -> str | None:
    """The stored digest of ``path`` if the file is unchanged since it was hashed."""
    return _cached(conn, path, identity)[0]


def _cached(conn: sqlite3.Connection, path: str, identity: FileIdentity) -> tuple[str | None, str | None]:
    row = conn.execute(
        "SELECT size_bytes, mtime_ns, sha256, autov3 FROM file_hashes WHERE path = ?", (path,)
    ).fetchone()
    if row is None or row[0] != identity.size or row[1] != identity.mtime_ns:
        return None, None
    return row[2], row[3]


def store_sha256(conn: sqlite3.Connection, path: str, identity: FileIdentity, sha256: str,
                 autov3: str | None = None) -> None:
    """Remember a digest (and the AutoV3, if known) for (path, size, mtime)."""
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO file_hashes(path, size_bytes, mtime_ns, sha256, hashed_at, autov3) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size_bytes = excluded.size_bytes,"
            " mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, hashed_at = excluded.hashed_at,"
            " autov3 = excluded.autov3",
            (path, identity.size, identity.mtime_ns, sha256, int(time.time() * 1000), autov3),
        )


def default_workers() -> int:
    """Every core (at most :data:`MAX_WORKERS`); the threads are niced, see the module docstring."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def _lower_priority() -> None:
    # Linux applies PRIO_PROCESS with a thread id to that thread only; raising niceness needs no
    # privilege. Elsewhere this is a no-op and hashing simply competes as a normal thread.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)
    except (AttributeError, OSError):
        pass


def hash_files(
    conn: sqlite3.Connection,
    paths: Iterable[str],
    *,
    progress: Progress | None = None,
    on_file: Callable[[HashResult], None] | None = None,
    workers: int | None = None,
    autov3: bool = False,
) -> dict[str, HashResult]:
    """Digest every path (keys as given), from the cache when unchanged, else hashed in parallel.

    With ``autov3``, safetensors files also get their AutoV3 from the same reads; a cached file
    hashed without it is hashed again once.

    New digests are stored as each file finishes, so a cancelled batch keeps what it finished.
    An exception raised by ``progress`` (cancellation) stops the batch and propagates.
    """
    results: dict[str, HashResult] = {}
    todo: list[tuple[str, str, int]] = []
    for path in dict.fromkeys(paths):
        key = normalize_path(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            logger.warning("[Hikaze] cannot hash %r: %s", path, exc)
            results[path] = HashResult(path, error="SHA256 calculation failed")
            continue
        identity = FileIdentity.of(st)
        sha, short = _cached(conn, key, identity)
        wants = autov3 and is_safetensors_name(path)
        if sha is not None and (short is not None or not wants):
            results[path] = HashResult(path, sha, size=identity.size, cached=True, autov3=short)
        else:
            todo.append((path, key, identity.size))
    for result in list(results.values()):
        if on_file is not None:
            on_file(result)
    if not todo:
        return results

    def work(item: tuple[str, str, int]) -> tuple[str, str, str | None, FileIdentity]:
        sha, short, identity = hash_file(item[0], progress, autov3 and is_safetensors_name(item[0]))
        return item[0], sha, short, identity

    count = min(workers or default_workers(), len(todo))
    with ThreadPoolExecutor(count, thread_name_prefix="hikaze-hash", initializer=_lower_priority) as pool:
        futures = {pool.submit(work, item): item for item in todo}
        try:
            for future in futures:
                path, key, size = futures[future]
                try:
                    _, sha, short, identity = future.result()
                except FileChangedError:
                    result = HashResult(path, error="File changed while hashing", size=size)
                except OSError as exc:
                    logger.warning("[Hikaze] cannot hash %r: %s", path, exc)
                    result = HashResult(path, error="SHA256 calculation failed", size=size)
                else:
                    store_sha256(conn, key, identity, sha, short)
                    result = HashResult(path, sha, size=identity.size, autov3=short)
                results[path] = result
                if on_file is not None:
                    on_file(result)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results
