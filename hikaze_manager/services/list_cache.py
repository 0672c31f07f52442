"""Serialized list bodies kept until the library changes, with a validator (ETag) per body.

A body is cached under a *version* made of everything a list payload is built from: the database
(``PRAGMA data_version`` through :class:`~hikaze_manager.db.watch.DataVersionWatcher`, or the
shared library's version row, so every commit from any code path, process or machine counts), the image folder (``images_count``), and the model
type names. While the image folder changed within the last seconds (when its mtime may not move
again for the next change) the image counts themselves, from one listing, stand in for the folder
in the version; if the database cannot be probed the body is rebuilt on every request. A body is
never served stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from ..db.stores import PgVersionWatcher
from ..db.watch import DataVersionWatcher
from .images import COUNTS_SETTLE_NS, ImageStore

MAX_ENTRIES = 64
SPLIT_HASH_AT = 4 * 1024 * 1024
MAX_BYTES = 96 * 1024 * 1024  # bounds RSS: every list of a 100k library takes ~35 MB


@dataclass(frozen=True)
class CachedBody:
    """One serialized list: the JSON bytes and their strong validator."""

    body: bytes
    etag: str


def serialize(payload) -> bytes:
    """JSON bytes exactly as Flask's ``jsonify`` writes them here (compact, UTF-8, no key sorting)."""
    return (json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def etag_of(body: bytes) -> str:
    """The strong validator of a body (lists and model records): a digest of its bytes, so it
    changes whenever they do, survives restarts, and equal bodies share it.

    A big body (18 MB at 50,000 models) is hashed in two halves at once: hashlib lets go of the
    GIL, so the second core takes half of the ~23 ms one digest costs there.
    """
    if len(body) < SPLIT_HASH_AT:
        return hashlib.sha256(body).hexdigest()[:32]
    view = memoryview(body)
    half = len(body) // 2
    first = hashlib.sha256()
    helper = threading.Thread(target=first.update, args=(view[:half],), name="hikaze-etag")
    helper.start()
    second = hashlib.sha256(view[half:]).digest()
    helper.join()
    return hashlib.sha256(first.digest() + second).hexdigest()[:32]


def body_of(payload) -> CachedBody:
    """``payload`` (or its JSON bytes already serialized as :func:`serialize` would) with its ETag."""
    body = payload if isinstance(payload, bytes) else serialize(payload)
    return CachedBody(body, etag_of(body))


RECENT = ("recent",)


def folder_state(folder: Path) -> tuple | None:
    """Identity and mtime of ``folder``; :data:`RECENT` while it may still change unseen (its
    mtime moved within the last seconds); None if it cannot be read."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        return ("missing",)
    except OSError:
        return None
    if time.time_ns() - st.st_mtime_ns <= COUNTS_SETTLE_NS:
        return RECENT
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


class ListCache:
    """Bodies of the list endpoints by (name, query key, version); thread-safe, bounded.

    ``max_entries`` and ``max_bytes`` bound the cache.
    """

    def __init__(self, watcher: DataVersionWatcher | PgVersionWatcher, images: ImageStore, *,
                 max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self._watcher = watcher
        self._images = images
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, CachedBody] = OrderedDict()
        self._bytes = 0
        self._building: dict[tuple, threading.Lock] = {}
        self.builds = 0  # how many bodies were built (for tests and the bench)

    def version(self, *, uses_images: bool, extra: Hashable = ()) -> tuple | None:
        """The current version of the inputs, or None when it cannot be trusted right now."""
        db_version = self._watcher.version()
        if db_version is None:
            return None
        # A store without a folder keeps its sets in the database, whose version covers them.
        folder = self._images.images_dir if uses_images else None
        images = folder_state(folder) if folder is not None else ()
        if images is None:
            return None
        if images is RECENT:
            # Just changed: one listing (~0.1 s at 60k previews) is far cheaper than a rebuild.
            counts = self._images.counts()
            images = ("counts", len(counts), hash(frozenset(counts.items())))
        return (db_version, images, extra)

    def get(self, name: str, key: Hashable, build: Callable[[], object], *,
            uses_images: bool = False, extra: Hashable = ()) -> CachedBody:
        """The body of list ``name`` for query ``key``: cached for the current version, or built now.

        ``build`` returns the payload, or its JSON bytes already serialized as :func:`serialize` would.

        The version is read before building, so a body is never older than the version it is
        stored under. Concurrent requests for one missing body build it once.
        """
        version = self.version(uses_images=uses_images, extra=extra)
        if version is None:
            return self._build(build)
        entry_key = (name, key, version)
        with self._lock:
            hit = self._entries.get(entry_key)
            if hit is not None:
                self._entries.move_to_end(entry_key)
                return hit
            building = self._building.setdefault(entry_key, threading.Lock())
        try:
            with building:
                with self._lock:
                    hit = self._entries.get(entry_key)
                if hit is None:
                    hit = self._build(build)
                    self._store(entry_key, hit)
        finally:  # a build that raised (a 404) must not leave its lock behind
            with self._lock:
                self._building.pop(entry_key, None)
        return hit

    def _build(self, build: Callable[[], object]) -> CachedBody:
        entry = body_of(build())
        self.builds += 1
        return entry

    def _store(self, entry_key: tuple, entry: CachedBody) -> None:
        if len(entry.body) > self._max_bytes // 4:
            return
        name, key, _ = entry_key
        with self._lock:
            # An older version of the same list can never be served again: drop it now.
            for old in [k for k in self._entries if k[0] == name and k[1] == key]:
                self._bytes -= len(self._entries.pop(old).body)
            self._entries[entry_key] = entry
            self._bytes += len(entry.body)
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped.body)

    def clear(self) -> None:
        """Forget every body (the bench uses this to time uncached lists)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def close(self) -> None:
        """Release the probe connection."""
        self._watcher.close()
