"""What a loader node loaded in its previous run, so an unchanged file is not read again.

Keyed by the file's state (path, size, mtime, inode, ctime): a file replaced on disk, even by a
copy that kept the size and the modification time (``cp -p``, ``rsync -t``), is read again. Only
the files of the last run are kept, and the ones this run does not use are released before any
new file is read, so memory stays bounded by what one run of the node uses.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any


def file_key(path: str) -> tuple[str, int, int, int, int]:
    """(path, size, mtime_ns, inode, ctime_ns) of a file as it is now."""
    st = os.stat(path)
    return (path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


class LastRunCache:
    """Loaded objects of the previous run of one node (ComfyUI keeps one node object per node)."""

    def __init__(self) -> None:
        self._previous: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def load(self, paths: Sequence[str], read: Callable[[str], Any]) -> list[Any]:
        """The object for each path: the previous run's if the file is unchanged, else ``read``.

        A path listed twice is read once. Afterwards exactly this run's objects are kept.
        """
        keys = [file_key(path) for path in paths]
        with self._lock:
            values = {key: self._previous[key] for key in keys if key in self._previous}
            self._previous = dict(values)  # release the rest before reading anything new
        for path, key in zip(paths, keys):
            if key not in values:
                values[key] = read(path)
        with self._lock:
            self._previous = values
        return [values[key] for key in keys]

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._previous = {}
