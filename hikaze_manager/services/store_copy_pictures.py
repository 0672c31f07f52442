"""Picture sets of a SQLite library (files under images/) copied into ``image_tiers`` rows.

A set is known by its picture (the SHA-256 of its ``high`` tier, as the image journal names it).
A set the target already shows for that model is not added again; the others are appended after
the target's last set, in the source's order, so a model the target had no pictures for gets the
same positions as in the source. The same picture twice in one model counts twice. Sets the
source's image journal names (written for a change that never committed) are not library data.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from pathlib import Path

from .files import open_regular_file
from .image_processing import TIERS
from .images import ImageStore
from .store_copy_rows import Differences, TableResult
from .store_copy_tables import insert_rows

_CHUNK = 500


def _read_set(store: ImageStore, sha256: str, seq: int) -> tuple[dict[str, bytes], int] | None:
    tiers: dict[str, bytes] = {}
    created = 0
    for tier in TIERS:
        fh = open_regular_file(store.set_path(sha256, seq, tier))
        if fh is None:
            continue
        with fh:
            tiers[tier] = fh.read()
            if tier == "high":
                created = os.fstat(fh.fileno()).st_mtime_ns // 1_000_000
    return (tiers, created) if "high" in tiers else None


def set_identity(sha256: str, digests: dict[str, str | None]) -> tuple:
    """The canonical row of one set: model, then the digest of each tier (None if it has none)."""
    return (sha256, *(digests.get(tier) for tier in TIERS))


def target_sets(conn, shas: list[str]) -> dict[str, dict[int, dict[str, str]]]:
    """``{sha256: {position: {tier: digest}}}`` of the target's sets of these models."""
    found: dict[str, dict[int, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    for start in range(0, len(shas), _CHUNK):
        chunk = shas[start:start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        for sha, position, tier, digest in conn.execute(
                f"SELECT sha256, position, tier, digest FROM image_tiers WHERE sha256 IN ({marks})",
                chunk):
            found[sha][position][tier] = digest
    return found


def copy_pictures(src, conn, images_dir: Path, model_shas: set[str],
                  diffs: Differences) -> TableResult:
    """Copy every committed set of the source's models; the result lists the sets expected."""
    result = TableResult("pictures", columns=("sha256", *TIERS), key=("sha256", "high"))
    store = ImageStore(images_dir, images_dir / "pending")  # read only: no recover(), no writes
    counts = store.counts()
    announced = {(row[0], row[1]) for row in src.execute("SELECT sha256, picture FROM image_writes")}
    shas = sorted(sha for sha in model_shas if counts.get(sha))
    existing = target_sets(conn, shas)
    for sha in shas:
        sets = existing.get(sha, {})
        free: dict[str, list[int]] = defaultdict(list)  # picture -> target positions not matched yet
        for position in sorted(sets):
            if "high" in sets[position]:
                free[sets[position]["high"]].append(position)
        next_position = max(sets) + 1 if sets else 0
        for seq in range(counts[sha]):
            read = _read_set(store, sha, seq)
            if read is None:  # deleted while we read: not there any more
                continue
            tiers, created = read
            digests = {tier: hashlib.sha256(data).hexdigest() for tier, data in tiers.items()}
            if (sha, digests["high"]) in announced:
                result.skipped += 1
                continue
            result.source_rows += 1
            mine = set_identity(sha, digests)
            result.source_canonical.append(mine)
            if free[digests["high"]]:
                position = free[digests["high"]].pop(0)
                theirs = set_identity(sha, sets[position])
                result.expected.append(theirs)
                if theirs != mine:
                    result.differed += 1
                    diffs.add("pictures", (sha, position), "tiers", theirs[1:], mine[1:])
                result.unchanged += 1
                continue
            result.expected.append(mine)
            result.added += 1
            insert_rows(conn, "image_tiers", ("sha256", "position", "tier", "data", "digest", "created_at"),
                        [(sha, next_position, tier, data, digests[tier], created)
                         for tier, data in tiers.items()])
            next_position += 1
    return result


def stored_sets(rows: list[tuple]) -> list[tuple]:
    """Canonical sets from ``(sha256, position, tier, digest, data digest)`` rows; a tier whose
    bytes do not hash to its digest shows as ``corrupt:<hash>``, so it never verifies."""
    sets: dict[tuple, dict[str, str]] = defaultdict(dict)
    for sha, position, tier, digest, data_digest in rows:
        sets[(sha, position)][tier] = digest if digest == data_digest else f"corrupt:{data_digest}"
    return [set_identity(sha, tiers) for (sha, _), tiers in sorted(sets.items())]


def matching_sets(expected: list[tuple], stored: list[tuple]) -> list[tuple]:
    """The stored sets that answer the expected ones (by model and picture, as often as expected)."""
    wanted = Counter((row[0], row[1]) for row in expected)
    found = []
    for row in stored:
        if wanted[(row[0], row[1])] > 0:
            wanted[(row[0], row[1])] -= 1
            found.append(row)
    return found
