"""Small file helpers shared by the services."""

from __future__ import annotations

import os
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
