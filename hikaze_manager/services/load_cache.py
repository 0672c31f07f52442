"""What the loader nodes loaded in their previous run, so an unchanged file is not read again.

Keyed by (path, size, mtime_ns): a file replaced or touched on disk is read again. Only the files
of the last run are kept (ComfyUI's own LoRA loader keeps its last one), so memory stays bounded by
what one workflow uses.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any


def file_key(path: str) -> tuple[str, int, int]:
    """(path, size, mtime_ns) of a file as it is now."""
    st = os.stat(path)
    return (path, st.st_size, st.st_mtime_ns)


class LastRunCache:
    """Loaded objects of the previous run; a run uses :meth:`run` and :meth:`get` inside it."""

    def __init__(self) -> None:
        self._previous: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def get(self, path: str, load: Callable[[str], Any], used: dict) -> Any:
        """The object for ``path``: the previous run's if the file is unchanged, else ``load(path)``.

        ``used`` collects this run's entries; pass it to :meth:`keep` when the run is done.
        """
        key = file_key(path)
        with self._lock:
            value = self._previous.get(key, used.get(key))
        if value is None:
            value = load(path)
        used[key] = value
        return value

    def keep(self, used: dict) -> None:
        """Remember exactly this run's objects for the next run (the older ones are released)."""
        with self._lock:
            self._previous = dict(used)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._previous = {}
