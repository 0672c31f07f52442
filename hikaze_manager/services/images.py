"""Preview images: WebP tier sets ``<sha256>_<seq>_<high|medium|low>.webp`` and pending originals.

A set exists when its ``high`` file exists. Sets of a model are numbered ``0..n-1`` without gaps;
``count`` is the length of that run. Sets are written to temp files and renamed into place with
``high`` last, under a per-sha lock, so a set on disk is always complete and sequence numbers are
never handed out twice.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from ..errors import NotFound
from .files import (
    TMP_PREFIX,
    file_digest,
    fsync_dir,
    open_regular_file,
    is_regular_file,
    remove_quietly,
    write_file_atomic,
    write_temp_file,
)
from .image_base import SHA256 as _SHA, PictureStoreBase, check_set, picture_digest  # noqa: F401
from .image_processing import TIERS, ImageError

logger = logging.getLogger(__name__)

_TIER_NAME = re.compile(r"([0-9a-f]{64})_([0-9]{1,9})_(?:medium|low)\.webp\Z")
RENUMBER_PREFIX = ".hikaze-renumber-"  # not TMP_PREFIX: start-up must read it, not sweep it
COUNTS_SETTLE_NS = 3_000_000_000

# --- the store ------------------------------------------------------------------------------


class _AlreadyHasPicture(Exception):
    pass


class ImageStore(PictureStoreBase):
    """The image sets of every model as files under images/, and the pending originals."""

    def __init__(self, images_dir: str | Path, pending_dir: str | Path):
        super().__init__(pending_dir)
        self.images_dir = Path(images_dir)
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        self._counts_lock = threading.Lock()
        self._counts_key: tuple | None = None
        self._counts: Counter = Counter()

    # -- paths and counts

    def set_path(self, sha256: str, seq: int, tier: str = "high") -> Path:
        """Where tier ``tier`` of set ``seq`` lives (whether or not it exists)."""
        check_set(sha256, seq, tier)
        return self.images_dir / f"{sha256}_{seq}_{tier}.webp"

    def _lock(self, sha256: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[sha256]

    def counts(self) -> Counter:
        """Number of image sets per sha256 (the run 0..n-1), from one directory listing.

        Listing a folder of 60k files costs ~0.1 s, so the result is reused while the folder's
        mtime is unchanged; a folder touched within the last few seconds is always re-listed,
        because a coarse mtime may not move for two changes in quick succession.
        """
        try:
            st = os.stat(self.images_dir)
        except FileNotFoundError:
            return Counter()
        key = (st.st_dev, st.st_ino, st.st_mtime_ns)
        with self._counts_lock:
            if self._counts_key == key:
                return Counter(self._counts)
        seqs: dict[str, set[int]] = defaultdict(set)
        try:
            with os.scandir(self.images_dir) as entries:
                for entry in entries:
                    name = entry.name
                    # <64 hex>_<seq>_high.webp, checked without a regex: this is the hot loop.
                    if name.endswith("_high.webp") and name[64:65] == "_" and \
                            entry.is_file(follow_symlinks=False):  # d_type: no extra stat
                        sha, seq = name[:64], name[65:-10]
                        if seq.isdigit() and seq.isascii() and _SHA.match(sha):
                            seqs[sha].add(int(seq))
        except FileNotFoundError:
            pass
        counter: Counter = Counter()
        for sha, present in seqs.items():
            n = 0
            while n in present:
                n += 1
            if n:
                counter[sha] = n
        if time.time_ns() - st.st_mtime_ns > COUNTS_SETTLE_NS:
            with self._counts_lock:
                self._counts_key, self._counts = key, Counter(counter)
        return counter

    def count(self, sha256: str) -> int:
        """Number of image sets of one model: stat ``high`` of 0, 1, ... until one is missing."""
        sha256 = (sha256 or "").lower()
        if not _SHA.match(sha256):
            return 0
        n = 0
        prefix = os.path.join(self.images_dir, sha256)  # str paths: this runs on every detail request
        while is_regular_file(f"{prefix}_{n}_high.webp"):  # a symlink is never a set
            n += 1
        return n

    # -- writing and deleting sets

    def add_processed(self, sha256: str, tiers: dict[str, bytes], *, first_only: bool = False) -> int | None:
        """Write already-encoded tiers as the next set, atomically; returns its seq.

        ``first_only``: only as the model's first set (None, nothing written, if it has one).
        """
        self.images_dir.mkdir(parents=True, exist_ok=True)
        temps: dict[str, str] = {}
        placed: list[Path] = []
        try:
            for tier in TIERS:  # the slow part (write + fsync) happens outside the lock
                temps[tier] = self._write_temp(tiers[tier])
            with self._lock(sha256):
                seq = self.count(sha256)
                if seq and first_only:  # checked under the lock: two callers cannot both be first
                    raise _AlreadyHasPicture
                for tier in ("low", "medium", "high"):  # high last: it makes the set exist
                    final = self.set_path(sha256, seq, tier)
                    os.replace(temps[tier], final)
                    del temps[tier]
                    placed.append(final)
                fsync_dir(self.images_dir)
            return seq
        except _AlreadyHasPicture:
            for tmp in temps.values():
                remove_quietly(Path(tmp))
            return None
        except BaseException:
            for path in reversed(placed):
                remove_quietly(path)
            for tmp in temps.values():
                remove_quietly(Path(tmp))
            raise

    def _write_temp(self, data: bytes) -> str:
        return str(write_temp_file(self.images_dir, data, suffix=".webp"))

    def delete_image(self, sha256: str, seq: int) -> None:
        """Delete set ``seq`` and move every later set down by one, never leaving a gap.

        Each later set is copied one place down (hard links, each tier replaced atomically,
        ``high`` last), then the now duplicated last set is dropped, ``high`` first. At every
        moment sets ``0..n-1`` (and then ``0..n-2``) exist, so counts never see a hole. Readers
        open tiers under the same lock (:meth:`open_tier`), so they never get tiers of two sets.
        A kill half-way could leave a set whose tiers come from two pictures, so the wanted
        result is journaled first and :meth:`recover` finishes it at start-up.
        """
        target = self.set_path(sha256, seq)
        with self._lock(sha256):
            if not is_regular_file(target):
                raise NotFound(f"Image sequence {seq} not found for {sha256}")
            self._delete_locked(sha256, seq)

    def _delete_locked(self, sha256: str, seq: int) -> None:
        last = self.count(sha256) - 1
        journal = None
        if seq < last:
            want = [[file_digest(self.set_path(sha256, k, t)) for t in TIERS]
                    for k in range(seq + 1, last + 1)]
            journal = self._journal_path(sha256)
            write_file_atomic(journal, json.dumps(
                {"sha256": sha256, "seq": seq, "last": last, "want": want}).encode())
            fsync_dir(self.images_dir)
        self._renumber(sha256, seq, max(last, seq), None)
        if journal is not None:
            remove_quietly(journal)
            fsync_dir(self.images_dir)

    def _renumber(self, sha256: str, seq: int, last: int, want: list | None) -> None:
        """Sets ``seq+1..last`` become ``seq..last-1``; with ``want`` (digests), redo only what differs."""
        for k in range(seq, last):
            for tier in ("low", "medium", "high"):
                dest = self.set_path(sha256, k, tier)
                if want is None:
                    source = self.set_path(sha256, k + 1, tier)
                    source = source if is_regular_file(source) else None
                else:
                    wanted = want[k - seq][TIERS.index(tier)]
                    if wanted is not None and file_digest(dest) == wanted:
                        continue  # done before the kill
                    source = None if wanted is None else next(
                        (path for path in (self.set_path(sha256, j, tier)
                                           for j in range(k + 1, last + 1))
                         if file_digest(path) == wanted), None)
                    if wanted is not None and source is None:
                        logger.error("[Hikaze] cannot finish renumbering %s: tier %s of set %d"
                                     " is gone", sha256, tier, k + 1)
                        continue
                if source is not None:
                    self._link_or_copy(source, dest)
                else:  # an old half-written set: don't leave the deleted set's tier behind
                    remove_quietly(dest)
        for tier in ("high", "medium", "low"):
            remove_quietly(self.set_path(sha256, last, tier))
        fsync_dir(self.images_dir)

    def _journal_path(self, sha256: str) -> Path:
        return self.images_dir / f"{RENUMBER_PREFIX}{sha256}.json"

    # -- pictures by content and start-up recovery

    def find_picture(self, sha256: str, picture: str) -> list[int]:
        """Seqs of the sets of ``sha256`` whose ``high`` tier has the digest ``picture``."""
        return [seq for seq in range(self.count(sha256))
                if file_digest(self.set_path(sha256, seq, "high")) == picture]

    def remove_picture(self, sha256: str, picture: str) -> int:
        """Delete every set of ``sha256`` showing ``picture`` (newest first); return how many."""
        with self._lock(sha256):  # one lock: a concurrent delete cannot shift the seqs found
            seqs = self.find_picture(sha256, picture)
            for seq in reversed(seqs):
                self._delete_locked(sha256, seq)
        return len(seqs)

    def owners(self) -> set[str]:
        """The sha256 of every model with a picture file, from one listing of the folder."""
        try:
            names = os.listdir(self.images_dir)
        except FileNotFoundError:
            return set()
        return {name[:64] for name in names if name[64:65] == "_" and name.endswith(".webp")}

    def remove_sets(self, shas, *, conn=None) -> int:
        """Delete every set of these models, last set first, ``high`` first; safe to repeat.

        One listing of the folder finds them all (5,000 models cost one scan, not 5,000 globs).
        Returns how many sets were removed. ``conn`` is not needed: the sets are files.
        """
        wanted = set(shas)
        seqs: dict[str, set[int]] = {}
        try:
            names = os.listdir(self.images_dir)
        except FileNotFoundError:
            names = []
        for name in names:
            if name[:64] in wanted and name[64:65] == "_" and name.endswith(".webp"):
                seq = name[65:].split("_", 1)[0]
                if seq.isascii() and seq.isdigit():
                    seqs.setdefault(name[:64], set()).add(int(seq))
        removed = 0
        for sha, found in seqs.items():
            with self._lock(sha):  # no upload interleaves
                for seq in sorted(found, reverse=True):
                    for tier in TIERS:  # high first: the set stops existing at once
                        path = self.set_path(sha, seq, tier)
                        if os.path.lexists(path):
                            remove_quietly(path)
                            removed += tier == "high"
        return removed

    def recover(self) -> set[str]:
        """At start-up, from one listing of the folder: remove temp files, finish renumberings a
        kill interrupted, and drop tiers left beyond the last complete set. Returns the sha256 of
        every model with a picture file there (for the orphan sweep, so it needs no listing)."""
        plans, strays, highs = [], [], set()
        try:
            with os.scandir(self.images_dir) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(TMP_PREFIX):
                        if entry.is_file(follow_symlinks=False):
                            remove_quietly(Path(entry.path))
                    elif name.startswith(RENUMBER_PREFIX) and name.endswith(".json"):
                        plans.append(name)
                    elif name.endswith("_high.webp"):
                        if entry.is_file(follow_symlinks=False):
                            highs.add(name[:-len("high.webp")])
                    elif _TIER_NAME.match(name) and entry.is_file(follow_symlinks=False):
                        strays.append(name)  # a stray only if its set has no high tier
        except FileNotFoundError:
            return set()
        for name in sorted(plans):
            self._finish_renumbering(self.images_dir / name)
        if plans:  # renumbering moved sets: look again (rare; only after a killed delete)
            highs = {n[:-len("high.webp")] for n in os.listdir(self.images_dir)
                     if n.endswith("_high.webp") and is_regular_file(self.images_dir / n)}
        owners = {prefix[:64] for prefix in highs if _SHA.match(prefix[:64])}
        for name in strays:
            if name[: name.rindex("_") + 1] not in highs:
                remove_quietly(self.images_dir / name)  # a tier of a set never completed
        fsync_dir(self.images_dir)
        return owners

    def _finish_renumbering(self, path: Path) -> None:
        try:
            plan = json.loads(path.read_bytes())
            sha256, seq, last, want = plan["sha256"], plan["seq"], plan["last"], plan["want"]
            self.set_path(sha256, seq)  # validates what the file says
            with self._lock(sha256):
                self._renumber(sha256, int(seq), int(last), want)
            logger.warning("[Hikaze] finished an interrupted image delete of %s", sha256)
        except (ValueError, KeyError, TypeError, ImageError) as exc:
            logger.error("[Hikaze] unreadable image journal %s: %s", path.name, exc)
        remove_quietly(path)

    def open_tier(self, sha256: str, seq: int, tiers: tuple[str, ...]):
        """Open the first existing tier of a set for reading, or None; consistent with deletes."""
        with self._lock(sha256):
            for tier in tiers:
                fh = open_regular_file(self.set_path(sha256, seq, tier))  # never a symlink
                if fh is not None:
                    return fh
        return None

    def _link_or_copy(self, source: Path, dest: Path) -> None:
        """Make ``dest`` a copy of ``source`` atomically (hard link when the file system allows)."""
        tmp = self.images_dir / f"{TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{dest.name}"
        remove_quietly(tmp)
        try:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        except BaseException:
            remove_quietly(tmp)
            raise
