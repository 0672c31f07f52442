"""What a request may not change: the database's content and every file under the data folder."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

DB_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


def snapshot(data_dir: str | Path, database: str | Path | None = None) -> tuple[list[str], dict]:
    """``(SQL dump of the database, {relative path: sha256 of the bytes})`` of a data folder."""
    data_dir = Path(data_dir)
    database = Path(database) if database else data_dir / "hikaze_model_manager.db"
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        dump = list(conn.iterdump())
    finally:
        conn.close()
    files = {}
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and not path.name.endswith(DB_SUFFIXES):
            files[str(path.relative_to(data_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dump, files
