"""Read-only reports: same content at several paths, same name with different content, lost files."""

from __future__ import annotations

import os
import sqlite3
from collections import defaultdict

from . import hashing
from .library import display_name


def _known_files(conn: sqlite3.Connection) -> list[tuple[str, str, str, int]]:
    """``(path, sha256, source, size)`` of every path with a known hash, library paths first."""
    rows: list[tuple[str, str, str, int]] = []
    for sha, path, size in conn.execute("SELECT sha256, path, size_bytes FROM models"):
        if path:
            rows.append((path, sha, "library", size or 0))
    for path, sha, size in conn.execute("SELECT path, sha256, size_bytes FROM file_hashes"):
        rows.append((path, sha, "scan", size or 0))
    for path, sha, size in conn.execute(
        "SELECT path, sha256, size_bytes FROM pending_import WHERE sha256 IS NOT NULL AND sha256 != ''"
    ):
        rows.append((path, sha, "pending", size or 0))
    return rows


def _existing(rows):
    """One entry per normalised path (first source wins), only for files that are still there."""
    seen: dict[str, dict] = {}
    for path, sha, source, size in rows:
        key = hashing.normalize_path(path)
        if key in seen:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if not os.path.isfile(path):
            continue
        seen[key] = {"path": path, "sha256": sha, "source": source, "size_bytes": st.st_size}
    return list(seen.values())


def find_duplicates(conn: sqlite3.Connection) -> dict:
    """Groups of files with one content at several paths, and names shared by different contents."""
    names = {sha: display_name(name, path)
             for sha, name, path in conn.execute("SELECT sha256, name, path FROM models")}
    files = _existing(_known_files(conn))
    by_sha: dict[str, list[dict]] = defaultdict(list)
    by_name: dict[str, list[dict]] = defaultdict(list)
    for entry in files:
        by_sha[entry["sha256"]].append(entry)
        by_name[os.path.basename(entry["path"]).casefold()].append(entry)
    same_content = []
    for sha, entries in by_sha.items():
        if len(entries) < 2:
            continue
        size = max(e["size_bytes"] for e in entries)
        same_content.append({
            "sha256": sha,
            "name": names.get(sha) or os.path.basename(entries[0]["path"]),
            "in_library": sha in names,
            "size_bytes": size,
            "total_bytes": size * len(entries),
            "reclaimable_bytes": size * (len(entries) - 1),
            "paths": sorted(entries, key=lambda e: (e["source"] != "library", e["path"])),
        })
    same_content.sort(key=lambda g: (-g["reclaimable_bytes"], g["name"].casefold()))
    same_name = []
    for entries in by_name.values():
        if len({e["sha256"] for e in entries}) < 2:
            continue
        same_name.append({
            "name": os.path.basename(entries[0]["path"]),
            "total_bytes": sum(e["size_bytes"] for e in entries),
            "files": sorted(entries, key=lambda e: e["path"]),
        })
    same_name.sort(key=lambda g: g["name"].casefold())
    return {
        "same_content": same_content,
        "same_name": same_name,
        "reclaimable_bytes": sum(g["reclaimable_bytes"] for g in same_content),
    }


def find_missing(conn: sqlite3.Connection) -> list[dict]:
    """Library models whose file is gone, with the other known paths of that content still there."""
    others: dict[str, list[str]] = defaultdict(list)
    for path, sha in conn.execute("SELECT path, sha256 FROM file_hashes"):
        others[sha].append(path)
    missing = []
    for sha, name, path, type_, size in conn.execute(
        "SELECT sha256, name, path, type, size_bytes FROM models ORDER BY lower(name), sha256"
    ):
        if path and os.path.isfile(path):
            continue
        key = hashing.normalize_path(path or "")
        elsewhere = [p for p in others.get(sha, ())
                     if hashing.normalize_path(p) != key and os.path.isfile(p)]
        missing.append({
            "sha256": sha, "name": display_name(name, path), "path": path or "",
            "type": type_ or "", "size_bytes": size or 0, "found_elsewhere": sorted(elsewhere),
        })
    return missing


def sort_keys(conn: sqlite3.Connection) -> dict:
    """Sort keys the lists do not carry: file modification times (ms) and pending sizes.

    Times come from the hash cache (``file_hashes.mtime_ns`` by path); a path it does not know is
    stat'ed; a file that is gone has no time.
    """
    cached = {path: mtime for path, mtime in conn.execute("SELECT path, mtime_ns FROM file_hashes")}

    def mtime(path: str | None) -> int | None:
        if not path:
            return None
        value = cached.get(path)
        if value is None:
            try:
                value = os.stat(path).st_mtime_ns
            except OSError:
                return None
        return value // 1_000_000

    models = {sha: {"mtime": mtime(path)}
              for sha, path in conn.execute("SELECT sha256, path FROM models")}
    pending = {
        str(pid): {"mtime": mtime(path), "size_bytes": size or 0, "created_at": created or 0}
        for pid, path, size, created in conn.execute(
            "SELECT id, path, size_bytes, created_at FROM pending_import")
    }
    return {"models": models, "pending": pending}
