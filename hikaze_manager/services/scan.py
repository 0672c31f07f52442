"""Scan the model folders: new model files become pending rows; moved library files are relinked.

The walk is a recursive ``os.scandir`` with one ``stat`` per model file, relative to the folder's
fd on POSIX (as fast as ``find``, perf-anchors section 4). Symlinks are followed; every directory
is entered once, keyed by (st_dev, st_ino), so link loops end. Problems with single entries (a broken link, a file that
vanished between listing and ``stat``, an unreadable folder, a name that is not valid UTF-8) are
counted in ``errors`` and never stop the scan.

Names that are not valid UTF-8 (Linux allows any bytes) are skipped and counted: SQLite ``TEXT``
must be UTF-8, and any lossy spelling (e.g. ``backslashreplace``) would store a path that no longer
opens the file, so the row could never be hashed, promoted or loaded.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat as stat_module
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from .. import db
from . import hashing, metadata
from .jobs import byte_progress
from .model_types import ModelTypeIndex

logger = logging.getLogger(__name__)

INSERT_BATCH = 500
_FORMAT_MASK, _REGULAR = stat_module.S_IFMT(0o170000), stat_module.S_IFREG
_SYMLINK, _DIRECTORY = stat_module.S_IFLNK, stat_module.S_IFDIR
# POSIX: list each folder through its own fd, so every stat resolves one name (fstatat) instead of
# walking the whole path again; that is what find does. Windows has no fd scandir.
_SCAN_BY_FD = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def _fd_prefix_limit() -> int:
    """Folders whose path is at least this long (bytes) are listed by path, not by fd.

    fstatat would find a file whose full path passes PATH_MAX, but nothing could open it by that
    path later; listed by path, its stat fails (ENAMETOOLONG) and it is reported, as before.
    """
    try:
        return os.pathconf("/", "PC_PATH_MAX") - 255 if _SCAN_BY_FD else 0  # 255: NAME_MAX
    except (OSError, ValueError):
        return 0


_FD_PREFIX_LIMIT = _fd_prefix_limit()
SKIPPED_DIR_NAMES = frozenset({".git", "__pycache__", ".hikaze-trash"})  # trash: services/trash.py
EMPTY_OLD_META = {
    "description": "",
    "community_links": "",
    "images": [],
    "prompts": {"positive": "", "negative": ""},
}


class FoundFile(NamedTuple):
    """A model file seen by the walk."""

    path: str
    type: str
    size: int
    mtime_ns: int


@dataclass
class WalkStats:
    """What the walk counted besides the files it yielded."""

    scanned: int = 0
    unusable: int = 0
    duplicates: int = 0
    unreadable_folders: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        """Record a model file that could not be used (the first 50 problems are logged)."""
        self.unusable += 1
        self._log(message)

    def folder_problem(self, message: str) -> None:
        """Record a folder that could not be read (it is not a model file: never ``skipped``)."""
        self.unreadable_folders += 1
        self._log(message)

    def _log(self, message: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(message)
            logger.warning("[Hikaze] scan: %s", message)


def _utf8_ok(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def walk_models(
    index: ModelTypeIndex, stats: WalkStats, check: Callable[[], None] | None = None
) -> Iterator[tuple[str, str, int, int]]:
    """Yield ``(path, type, size, mtime_ns)`` for every model file, each real directory once.

    A file reached twice (a symlink or hard link to another model file) is yielded once; regular
    files are visited before symlinked files, so the real path wins over a link to it. This is
    the hot loop of a scan (one iteration per directory entry), hence the inlined checks.
    """
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: dict[int, set[int]] = {}  # st_dev -> st_ino: no tuple to build and hash per file
    linked: list[tuple[str, str]] = []
    dev, inos = None, set()  # the last file's device and its inodes: a tree is mostly one device
    for type_name, model_type in index.types.items():
        extensions = model_type.extensions
        # A name is a model when its last suffix is one of these; an extension with a second dot
        # could never be a last suffix. ``name.lower().endswith`` is one C call per entry.
        suffixes = tuple(e for e in extensions if e.rfind(".") == 0)
        bare = frozenset(suffixes)  # ".pt" alone is a hidden file, not a model
        for root in model_type.roots:
            root = os.path.normpath(os.path.abspath(os.path.expanduser(root)))
            try:
                st = os.stat(root)
            except FileNotFoundError:
                continue  # a configured folder that does not exist (yet) is normal
            except OSError as exc:
                stats.folder_problem(f"cannot read folder {root!r}: {exc.strerror or exc}")
                continue
            if not stat_module.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) in seen_dirs:
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            stack = [root]
            while stack:
                folder = stack.pop()
                if check is not None:
                    check()
                prefix = folder if folder.endswith(os.sep) else folder + os.sep
                fd = -1
                try:
                    if len(os.fsencode(prefix)) < _FD_PREFIX_LIMIT:
                        fd = os.open(folder, _DIR_FLAGS)
                    entries = os.scandir(fd if fd >= 0 else folder)
                except OSError as exc:
                    if fd >= 0:
                        os.close(fd)
                    stats.folder_problem(f"cannot read folder {folder!r}: {exc.strerror or exc}")
                    continue
                scanned = 0
                try:
                    with entries:
                        for entry in entries:
                            name = entry.name
                            lower = name.lower()
                            if not lower.endswith(suffixes) or lower in bare:
                                try:
                                    is_dir = entry.is_dir()
                                except OSError:  # e.g. a symlink loop (ELOOP): not a folder
                                    is_dir = False
                                if is_dir:
                                    _enter(entry, prefix + name, stats, seen_dirs, stack)
                                continue
                            try:  # lstat: its mode tells links apart without another call
                                st = entry.stat(follow_symlinks=False)
                            except OSError as exc:  # vanished since listing, permission
                                scanned += 1
                                stats.problem(f"cannot stat {prefix + name!r}: "
                                              f"{exc.strerror or exc}")
                                continue
                            mode = st.st_mode & _FORMAT_MASK
                            if mode == _REGULAR:
                                scanned += 1
                                if st.st_dev != dev:
                                    dev = st.st_dev
                                    inos = seen_files.setdefault(dev, set())
                                ino, path = st.st_ino, prefix + name
                                if ino not in inos and path.isascii():
                                    inos.add(ino)  # the fast path of _usable()
                                    yield path, type_name, st.st_size, st.st_mtime_ns  # no object: hot
                                    continue
                            elif mode == _SYMLINK:
                                if _is_dir(entry):
                                    _enter(entry, prefix + name, stats, seen_dirs, stack)
                                else:
                                    scanned += 1
                                    linked.append((prefix + name, type_name))
                                continue
                            elif mode == _DIRECTORY:  # a folder named like a model
                                _enter(entry, prefix + name, stats, seen_dirs, stack)
                                continue
                            else:
                                scanned += 1
                            found = _usable(prefix + name, type_name, st, stats, seen_files)
                            if found is not None:
                                yield found
                except OSError as exc:  # the folder vanished or failed mid-listing
                    stats.folder_problem(f"cannot read folder {folder!r}: {exc.strerror or exc}")
                finally:
                    stats.scanned += scanned
                    if fd >= 0:
                        os.close(fd)
    for path, type_name in linked:
        try:
            st = os.stat(path)
        except OSError as exc:  # broken link, loop, or the target vanished
            stats.problem(f"cannot stat {path!r}: {exc.strerror or exc}")
            continue
        found = _usable(path, type_name, st, stats, seen_files)
        if found is not None:
            yield found


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # e.g. a symlink loop (ELOOP): not a folder; a model name is reported later
        return False


def _enter(entry: os.DirEntry, path: str, stats: WalkStats, seen_dirs: set, stack: list) -> None:
    if entry.name in SKIPPED_DIR_NAMES:
        return
    try:
        st = entry.stat()
    except OSError as exc:
        stats.folder_problem(f"cannot read folder {path!r}: {exc.strerror or exc}")
        return
    key = (st.st_dev, st.st_ino)
    if key not in seen_dirs:  # a symlink back to an ancestor (or a second link) ends here
        seen_dirs.add(key)
        stack.append(path)


def _usable(path: str, type_name: str, st: os.stat_result, stats: WalkStats,
            seen_files: dict[int, set[int]]) -> tuple[str, str, int, int] | None:
    if not stat_module.S_ISREG(st.st_mode):
        stats.problem(f"not a regular file: {path!r}")
        return None
    if not path.isascii() and not _utf8_ok(path):
        stats.problem(f"name is not valid UTF-8, skipped: {path!r}")
        return None
    inos = seen_files.setdefault(st.st_dev, set())
    if st.st_ino in inos:  # the same file reached twice (hard or symbolic link)
        stats.duplicates += 1
        return None
    inos.add(st.st_ino)
    return path, type_name, st.st_size, st.st_mtime_ns


def _norm(path: str) -> str:
    """``hashing.normalize_path``, skipped for the common already-normal POSIX path (hot in rescans)."""
    if (os.sep == "/" and path[:1] == "/" and "//" not in path and "/./" not in path
            and "/../" not in path and not path.endswith(("/", "/.", "/.."))):
        return path
    return hashing.normalize_path(path)


def _known_paths(conn: sqlite3.Connection) -> tuple[set[str], dict[str, tuple[str, int]],
                                                   list[tuple[str, int]]]:
    """Normalised paths of library and pending rows, library rows by normalised path, and the
    library models with no path on this machine (in a shared library: known, no local copy)."""
    norm = _norm
    rows = conn.execute("SELECT sha256, path, size_bytes FROM models").fetchall()
    library = {norm(path): (sha, size or 0) for sha, path, size in rows if path}
    absent = [(sha, size or 0) for sha, path, size in rows if not path]
    known = set(library)
    known.update(norm(p) for (p,) in conn.execute("SELECT path FROM pending_import") if p)
    return known, library, absent


def _library_copies(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """Hashed files whose content is in the library: path -> (size, mtime) when hashed."""
    rows = conn.execute(
        "SELECT f.path, f.size_bytes, f.mtime_ns FROM file_hashes f "
        "JOIN models m ON m.sha256 = f.sha256"
    )
    return {path: (size, mtime) for path, size, mtime in rows}


def scan_models(conn: sqlite3.Connection, index: ModelTypeIndex, job=None) -> dict:
    """Walk the model folders and queue new model files as pending; return the scan report."""
    check = job.check_cancelled if job is not None else None
    stats = WalkStats()
    if job is not None:
        job.advance(message="listing model folders")
    known, library, absent = _known_paths(conn)
    found_paths: set[str] = set()
    new_files: list[FoundFile] = []
    skipped = 0
    for item in walk_models(index, stats, check):
        key = os.path.normcase(item[0])  # already absolute and normal: root + plain names
        found_paths.add(key)
        if key in known:
            skipped += 1
        else:
            new_files.append(FoundFile._make(item))
    if job is not None:
        job.set_totals(files=stats.scanned)
        job.advance(files=stats.scanned - len(new_files), message="checking new files")

    # Library entries whose file is gone: a new file of the same size may be the same model moved.
    missing: dict[int, set[str]] = {}
    for key, (sha, size) in library.items():
        if key not in found_paths and not os.path.isfile(key):
            missing.setdefault(size, set()).add(sha)
    for sha, size in absent:  # a model another machine has: this copy becomes this machine's path
        missing.setdefault(size, set()).add(sha)
    relinked = 0
    to_queue: list[FoundFile] = []
    candidates = [f for f in new_files if f.size in missing]
    # Copies seen before this scan, read BEFORE the move check below hashes (and caches) new
    # files: a new copy hashed only for that check must still reach Pending.
    copies = _library_copies(conn) if new_files else {}
    digests: dict[str, hashing.HashResult] = {}
    if candidates:
        if job is not None:
            job.set_totals(bytes_=sum(f.size for f in candidates))
        progress = byte_progress(job)
        digests = hashing.hash_files(conn, [f.path for f in candidates], progress=progress)
    for found in new_files:
        result = digests.get(found.path)
        sha = result.sha256 if result is not None else None
        if sha is not None and sha in missing.get(found.size, ()):
            with db.transaction(conn):
                conn.execute("UPDATE models SET path = ? WHERE sha256 = ?", (found.path, sha))
            missing[found.size].discard(sha)
            relinked += 1
            logger.info("[Hikaze] scan: model %s moved to %r", sha, found.path)
        elif copies.get(hashing.normalize_path(found.path)) == (found.size, found.mtime_ns):
            skipped += 1  # a copy of a library model, already seen (merged or deleted duplicate)
        else:
            to_queue.append(found)
    read_report = metadata.ReadReport()
    pending_ids, insert_skipped = _queue_pending(conn, to_queue, job, read_report)
    skipped += insert_skipped + stats.unusable + stats.duplicates
    if job is not None:
        job.advance(files=len(new_files), message="done")
    return {
        "status": "success",
        "scanned": stats.scanned,
        "added": len(pending_ids),
        "pending_ids": pending_ids,
        "skipped": skipped,
        "relinked": relinked,
        "errors": stats.unusable + stats.unreadable_folders,
        "metadata": read_report.as_dict(),
    }


def _queue_pending(conn: sqlite3.Connection, files: list[FoundFile], job,
                   read_report: metadata.ReadReport) -> tuple[list[int], int]:
    """Insert pending rows in batched transactions; return (new ids, rows that already existed).

    The metadata beside each file (header, sidecars, preview) is read before its batch's
    transaction, so no file is read while the write lock is held.
    """
    ids: list[int] = []
    skipped = 0
    listings = metadata.previews.ListingCache()
    for start in range(0, len(files), INSERT_BATCH):
        if job is not None:
            job.check_cancelled()
        batch = files[start : start + INSERT_BATCH]
        metas = [json.dumps({**EMPTY_OLD_META, metadata.PENDING_KEY: metadata.read_for_pending(
            found.path, found.size, listings, read_report)}, ensure_ascii=False) for found in batch]
        with db.transaction(conn):
            for found, meta in zip(batch, metas):
                cursor = conn.execute(
                    "INSERT INTO pending_import(path, sha256, name, type, size_bytes, created_at,"
                    " meta_json) VALUES (?, '', ?, ?, ?, ?, ?) ON CONFLICT(path) DO NOTHING",
                    (found.path, os.path.basename(found.path), found.type, found.size,
                     found.mtime_ns // 1_000_000, meta),
                )
                if cursor.rowcount == 1:
                    ids.append(cursor.lastrowid)
                else:
                    skipped += 1
    return ids, skipped
