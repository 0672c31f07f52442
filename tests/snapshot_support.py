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
    return dump, snapshot_files(data_dir)[1]


def app_snapshot(app) -> tuple[list, dict]:
    """:func:`snapshot` of an app's library in whichever store it is (PostgreSQL: every row of the
    shared schema and of this machine's, sorted), plus the files of its data folder."""
    from hikaze_manager.state import get_state

    store = get_state(app).store
    if store.kind == "sqlite":
        return snapshot(app.config["DATA_DIR"], store.database)
    dump = []
    with store.connection() as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('hikaze', ?) AND table_type = 'BASE TABLE' "
            "ORDER BY table_schema, table_name", (store.schema,)).fetchall()
        for schema, table in tables:
            rows = conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
            dump.append((schema, table, sorted(repr(tuple(row)) for row in rows)))
    _, files = snapshot_files(app.config["DATA_DIR"])
    return dump, files


def snapshot_files(data_dir: str | Path) -> tuple[None, dict]:
    """The files part of :func:`snapshot` alone."""
    files = {}
    for path in sorted(Path(data_dir).rglob("*")):
        if path.is_file() and not path.name.endswith(DB_SUFFIXES):
            files[str(path.relative_to(data_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return None, files
