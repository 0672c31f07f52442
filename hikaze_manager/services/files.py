"""Small file helpers shared by the services."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

TMP_PREFIX = ".hikaze-tmp-"


def write_temp_file(folder: Path, data: bytes, suffix: str = "") -> Path:
    """Write ``data`` to a new fsynced temp file in ``folder`` (swept at start-up if left behind)."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        remove_quietly(Path(tmp))
        raise
    return Path(tmp)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file in the same folder, fsync it, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_temp_file(path.parent, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def remove_quietly(path: Path) -> None:
    """Delete a file if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def sweep_temp_files(folder: Path, older_than_ns: int | None = None) -> int:
    """Delete temp files left by a crash in ``folder`` (only those last changed before
    ``older_than_ns``, if given); return how many were removed."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
            try:
                if older_than_ns is not None and (
                    entry.stat(follow_symlinks=False).st_mtime_ns >= older_than_ns
                ):
                    continue
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                pass
    return removed


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_OPEN_FAILURES = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def open_regular_file(path: Path):
    """Open ``path`` for reading only if it is a regular file itself (never through a symlink)."""
    try:
        if not _NOFOLLOW and os.path.islink(path):  # Windows: no O_NOFOLLOW
            return None
        # O_NONBLOCK: opening a FIFO must not wait for a writer (no effect on regular files).
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_BINARY", 0))
    except _OPEN_FAILURES:
        return None
    except OSError:  # ELOOP: the last component is a symlink
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device would block or leak
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file, or None if it is missing: unchanged stamps mean an unchanged copy."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def is_regular_file(path: Path | str) -> bool:
    """True if ``path`` itself (not a symlink's target) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def file_digest(path: Path) -> str | None:
    """SHA-256 of a regular file's bytes, or None if it is missing (or not a regular file)."""
    fh = open_regular_file(path)
    if fh is None:
        return None
    with fh:
        return hashlib.sha256(fh.read()).hexdigest()


def fsync_dir(folder: Path) -> None:
    """Persist renames in ``folder`` (no-op where directories can't be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
