"""What both picture stores share: argument checks, the bounded encoder and pending originals.

Pending originals (pictures of models not yet in the library) are files under the pending folder
in either store: pending rows belong to one machine.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path

from .files import TMP_PREFIX, is_regular_file, write_file_atomic
from .image_processing import (
    TIER_SCALE,
    TIERS,
    ImageError,
    is_plain_name,
    process_image,
    render_tier,
    safe_file_name,
)

SHA256 = re.compile(r"[0-9a-f]{64}\Z")
WEBP_CACHE_BYTES = 32 * 1024 * 1024


def check_set(sha256: str, seq: int, tier: str = "high") -> None:
    """Raise :class:`ImageError` unless ``(sha256, seq, tier)`` can name a tier of a set."""
    if not SHA256.match(sha256 or ""):
        raise ImageError("sha256 must be 64 lower-case hexadecimal characters")
    if tier not in TIER_SCALE:
        raise ImageError(f"quality must be one of {', '.join(TIERS)}")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ImageError("seq must be a non-negative integer")


class PictureStoreBase:
    """Encoding on a bounded worker pool and the pending originals; subclasses keep the sets."""

    def __init__(self, pending_dir: str | Path):
        self.pending_dir = Path(pending_dir)
        self._pending_lock = threading.Lock()
        # Pillow releases the GIL while decoding/resizing/encoding: bound the CPU taken from
        # the server (perf-anchors section 7: one thumbnail worker while the UI is serving).
        self._workers = threading.BoundedSemaphore(max(1, (os.cpu_count() or 2) - 1))
        self._webp_cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._webp_cache_bytes = 0
        self._webp_cache_lock = threading.Lock()

    def add_processed(self, sha256: str, tiers: dict[str, bytes], *,
                      first_only: bool = False) -> int | None:
        """Store already-encoded tiers as the next set of ``sha256``; returns its seq."""
        raise NotImplementedError

    def add_image(self, sha256: str, data: bytes) -> int:
        """Process ``data`` into a new set of ``sha256``; returns its seq."""
        return self.add_processed(sha256, self.process(sha256, data))

    def process(self, sha256: str, data: bytes) -> dict[str, bytes]:
        """The encoded tiers of ``data`` for ``sha256`` (validated first), on a bounded worker."""
        check_set(sha256, 0)  # before any work
        with self._workers:
            return process_image(data)

    # -- pending originals

    def save_pending_image(self, name: str, data: bytes) -> str:
        """Store an original under the pending folder; returns the file name used.

        The name is reduced to a safe basename. The same name with identical bytes is reused;
        different bytes get ``<stem>-<n><ext>``.
        """
        safe = safe_file_name(name)
        stem, ext = os.path.splitext(safe)
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        with self._pending_lock:
            candidate, n = safe, 1
            while True:
                path = self.pending_dir / candidate
                if not os.path.lexists(path):
                    break
                if path.is_file() and not path.is_symlink() and _same_bytes(path, data):
                    return candidate
                candidate = f"{stem}-{n}{ext}"
                n += 1
            write_file_atomic(path, data)
            return candidate

    def pending_image_path(self, name: str) -> Path | None:
        """The pending file called ``basename(name)``, if it is a regular file inside the folder."""
        if not isinstance(name, str):
            return None
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        if not is_plain_name(base):
            return None
        return self._inside_pending(self.pending_dir / base)

    def find_pending_image(self, name: str) -> Path | None:
        """``name`` exactly, else the first ``name.*`` (by name) in the pending folder; no glob."""
        if not is_plain_name(name):
            return None
        exact = self._inside_pending(self.pending_dir / name)
        if exact is not None:
            return exact
        prefix = name + "."
        try:
            with os.scandir(self.pending_dir) as entries:
                names = sorted(e.name for e in entries if e.name.startswith(prefix))
        except FileNotFoundError:
            return None
        for candidate in names:
            path = self._inside_pending(self.pending_dir / candidate)
            if path is not None:
                return path
        return None

    def delete_pending_image(self, name: str) -> bool:
        """Delete a pending original (a symlink itself, never its target); True if removed."""
        path = self.pending_image_path(name)
        if path is None:
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def pending_webp(self, data: bytes, tier: str, key: tuple) -> bytes:
        """WebP tier of a pending original, converted once per ``key`` (file identity), cached."""
        cache_key = (*key, tier)
        with self._webp_cache_lock:
            cached = self._webp_cache.get(cache_key)
            if cached is not None:
                self._webp_cache.move_to_end(cache_key)
                return cached
        with self._workers:
            webp = render_tier(data, tier)
        with self._webp_cache_lock:
            if cache_key not in self._webp_cache and len(webp) <= WEBP_CACHE_BYTES // 4:
                self._webp_cache[cache_key] = webp
                self._webp_cache_bytes += len(webp)
                while self._webp_cache_bytes > WEBP_CACHE_BYTES:
                    _, old = self._webp_cache.popitem(last=False)
                    self._webp_cache_bytes -= len(old)
        return webp

    def _inside_pending(self, path: Path) -> Path | None:
        root = os.path.realpath(self.pending_dir)
        real = os.path.realpath(path)
        if os.path.commonpath((root, real)) != root or real == root:
            return None
        if not is_regular_file(path) or path.name.startswith(TMP_PREFIX):
            return None  # a symlink, even to a file inside, is not served (its target may change)
        return path



def picture_digest(tiers: dict[str, bytes]) -> str:
    """The identity of a set: SHA-256 of its ``high`` tier bytes."""
    return hashlib.sha256(tiers["high"]).hexdigest()


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False
