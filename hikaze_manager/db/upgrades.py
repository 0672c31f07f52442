"""Ordered schema upgrades keyed on ``PRAGMA user_version``; a backup is written before any upgrade.

Version 1 is the Hikaze Model Manager 2 schema as it is (``schema.sql``), so a reference data folder
(``user_version`` 0) is upgraded in place. Each step runs in its own transaction together with the
``user_version`` bump, so a failed step leaves the database at the previous version.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import dialect_of, transaction
from ..services.tags import normalize_tag_name, tag_key

logger = logging.getLogger(__name__)

SCHEMA_SQL = Path(__file__).with_name("schema.sql")


def _baseline(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA_SQL.read_text(encoding="utf-8").split(";\n"):
        if statement.strip():
            conn.execute(statement)


def _tag_keys_and_indexes(conn: sqlite3.Connection) -> None:
    """Make tag names unique case-insensitively (first spelling wins) and add listing indexes."""
    conn.execute("ALTER TABLE tags ADD COLUMN name_key TEXT")
    keepers: dict[str, tuple[int, str]] = {}
    for tag_id, name in conn.execute("SELECT id, name FROM tags ORDER BY id").fetchall():
        clean = normalize_tag_name(name or "") or f"tag {tag_id}"
        key = tag_key(clean)
        if key not in keepers:
            keepers[key] = (tag_id, clean)
            continue
        # A later spelling of an existing tag: move its links to the first one, then drop it.
        keeper = keepers[key][0]
        conn.execute(
            "INSERT OR IGNORE INTO model_tags(model_hash, tag_id) "
            "SELECT model_hash, ? FROM model_tags WHERE tag_id = ?",
            (keeper, tag_id),
        )
        conn.execute(
            "INSERT OR IGNORE INTO pending_model_tags(model_id, tag_id) "
            "SELECT model_id, ? FROM pending_model_tags WHERE tag_id = ?",
            (keeper, tag_id),
        )
        conn.execute("DELETE FROM tags WHERE id = ?", (tag_id,))
        logger.info("merged tag %r into tag %d (same name ignoring case)", name, keeper)
    # Renamed only once every duplicate is gone: 'a  b' may become 'a b' only after 'a b' left.
    for key, (tag_id, clean) in keepers.items():
        conn.execute("UPDATE tags SET name = ?, name_key = ? WHERE id = ?", (clean, key, tag_id))
    conn.execute("CREATE UNIQUE INDEX idx_tags_name_key ON tags(name_key)")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_models_type ON models(type)")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_model_tags_tag ON model_tags(tag_id)")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_pending_tags_tag ON pending_model_tags(tag_id)")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_pending_created ON pending_import(created_at)")


def _hash_cache(conn: sqlite3.Connection) -> None:
    """Remember full-file SHA-256 by (path, size, mtime) so an unchanged file is never re-hashed."""
    conn.execute(
        "CREATE TABLE file_hashes ("
        " path TEXT PRIMARY KEY,"
        " size_bytes INTEGER NOT NULL,"
        " mtime_ns INTEGER NOT NULL,"
        " sha256 TEXT NOT NULL,"
        " hashed_at INTEGER NOT NULL)"
    )


def _legacy_imports(conn: sqlite3.Connection) -> None:
    """Remember every v1 row a legacy migration brought over, so a re-run changes nothing.

    ``source`` identifies the v1 library by its content (see ``services/legacy_reader.py``), so
    moving or copying the v1 file does not make it look new. A v1 id names one path for good
    (v1 never moves a row), so ``legacy_path`` is part of the key: two copies of one v1 install
    that were used apart give their new rows the same ids, for different models.
    """
    conn.execute(
        "CREATE TABLE legacy_imports ("
        " source TEXT NOT NULL,"
        " legacy_id INTEGER NOT NULL,"
        " legacy_path TEXT NOT NULL,"
        " kind TEXT NOT NULL CHECK (kind IN ('model', 'pending')),"
        " sha256 TEXT,"
        " pending_id INTEGER,"
        " image_sha256 TEXT,"
        " imported_at INTEGER NOT NULL,"
        " PRIMARY KEY (source, legacy_id, legacy_path))"
    )
    conn.execute("CREATE INDEX idx_legacy_imports_sha ON legacy_imports(sha256)")


def _content_lookup_indexes(conn: sqlite3.Connection) -> None:
    """Find files by content fast: the loader nodes look a moved model up by its SHA-256."""
    conn.execute("CREATE INDEX IF NOT EXISTS idx_file_hashes_sha ON file_hashes(sha256)")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_pending_sha ON pending_import(sha256)")


def _add_column(conn: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if column not in columns:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def _file_metadata(conn: sqlite3.Connection) -> None:
    """Metadata read from model files and sidecars: base model on ``models`` (listed, filtered),
    the rest (trigger words, training tags, raw header, short hashes, source of each value)
    in ``model_metadata``. Columns are only added, so it runs after any other step."""
    _add_column(conn, "models", "base_model", "TEXT")
    _add_column(conn, "models", "base_family", "TEXT")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_models_base_family ON models(base_family)")
    _add_column(conn, "file_hashes", "autov3", "TEXT")  # found in the same pass as the SHA-256
    conn.execute(
        "CREATE TABLE IF NOT EXISTS model_metadata ("
        " sha256 TEXT PRIMARY KEY REFERENCES models(sha256) ON DELETE CASCADE,"
        " trigger_words TEXT,"
        " training_tags TEXT,"
        " header_metadata TEXT,"
        " autov2 TEXT,"
        " autov3 TEXT,"
        " sources TEXT,"
        " extra TEXT,"
        " report TEXT,"
        " updated_at INTEGER)"
    )


def _pending_ids_never_reused_and_image_journal(conn: sqlite3.Connection) -> None:
    """Give ``pending_import`` AUTOINCREMENT ids, and add the journal of picture writes.

    Without AUTOINCREMENT SQLite hands out max(id)+1, so promoting the newest pending model lets
    the next scan reuse its id. The table is rebuilt from its own stored definition (columns,
    defaults and constraints other steps added are kept), its indexes and triggers are recreated,
    and rows of tables that reference it (``pending_model_tags``) are put back, since dropping
    the old table cascades to them. Ids already handed out to a legacy migration count as used.

    ``image_writes`` records a picture set before it is written for a DB change not yet committed
    (promotion, legacy migration); the commit deletes the record, and start-up removes the set of
    every record left (see ``services/image_journal.py``).
    """
    table_sql = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'pending_import'"
    ).fetchone()[0]
    new_sql, replaced = re.subn(
        r"\bid\s+INTEGER\s+PRIMARY\s+KEY\b(?!\s+AUTOINCREMENT)",
        "id INTEGER PRIMARY KEY AUTOINCREMENT", table_sql, count=1, flags=re.IGNORECASE,
    )
    if replaced:
        extras = [sql for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'pending_import'"
            " AND type IN ('index', 'trigger') AND sql IS NOT NULL")]
        referencing = [
            name for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'pending_import'")
            if any(fk["table"] == "pending_import"
                   for fk in conn.execute(f'PRAGMA foreign_key_list("{name}")'))
        ]
        for name in referencing:
            conn.execute(f'CREATE TEMP TABLE "saved_{name}" AS SELECT * FROM "{name}"')
        new_sql = re.sub(r"^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?\"?pending_import\"?",
                         "CREATE TABLE pending_import_rebuilt", new_sql, count=1,
                         flags=re.IGNORECASE)
        conn.execute(new_sql)
        conn.execute("INSERT INTO pending_import_rebuilt SELECT * FROM pending_import")
        conn.execute("DROP TABLE pending_import")
        # Legacy rename: no re-check of other schema objects that name the (now dropped) table.
        conn.execute("PRAGMA legacy_alter_table = ON")
        try:
            conn.execute("ALTER TABLE pending_import_rebuilt RENAME TO pending_import")
        finally:
            conn.execute("PRAGMA legacy_alter_table = OFF")
        for sql in extras:
            conn.execute(sql)
        for name in referencing:
            conn.execute(f'DELETE FROM "{name}"')  # rows a trigger may have re-added
            conn.execute(f'INSERT INTO "{name}" SELECT * FROM temp."saved_{name}"')
            conn.execute(f'DROP TABLE temp."saved_{name}"')
    used = [conn.execute("SELECT COALESCE(MAX(id), 0) FROM pending_import").fetchone()[0]]
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'legacy_imports'").fetchone():
        used.append(conn.execute(
            "SELECT COALESCE(MAX(pending_id), 0) FROM legacy_imports").fetchone()[0])
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'pending_import'")
    conn.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('pending_import', ?)", (max(used),))
    conn.execute(
        "CREATE TABLE image_writes ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " sha256 TEXT NOT NULL,"
        " picture TEXT NOT NULL,"
        " created_at INTEGER NOT NULL)"
    )


# The ordered tag list of one model as JSON, as the list endpoint writes it (``db/list_sql.py``).
_TAG_LIST_OF = (
    "(SELECT json_group_array(json_object('id', id, 'name', name)) FROM ("
    "SELECT t.id, t.name FROM model_tags mt JOIN tags t ON t.id = mt.tag_id "
    "WHERE mt.model_hash = {model} ORDER BY t.name_key, t.id))"
)


def _refresh_tag_list(model: str) -> str:
    return (
        f"DELETE FROM model_tag_lists WHERE model_hash = {model}; "
        f"INSERT INTO model_tag_lists(model_hash, tags) "
        f"SELECT {model}, {_TAG_LIST_OF.format(model=model)} "
        f"WHERE EXISTS (SELECT 1 FROM model_tags WHERE model_hash = {model}); "
    )


def _refresh_tag_lists_of_tag(tag: str) -> str:
    return (
        "UPDATE model_tag_lists SET tags = "
        f"{_TAG_LIST_OF.format(model='model_tag_lists.model_hash')} "
        f"WHERE model_hash IN (SELECT model_hash FROM model_tags WHERE tag_id = {tag}); "
    )


def _model_tag_lists(conn: sqlite3.Connection) -> None:
    """Keep each model's tag list as JSON, so listing 50,000 models reads one row per model
    instead of running a sorted subquery per model (the largest part of an uncached list).

    Triggers keep it exact on every write from any code path or program: a link added, removed
    (also by a cascade from a deleted model or tag) or changed, and a tag renamed or written.
    A model without tags has no row (or ``[]`` after its last tag went with foreign keys off).
    Plain ``DELETE`` then ``INSERT``, not ``INSERT OR REPLACE``: a trigger's conflict clause
    gives way to the outer statement's (an ``INSERT OR IGNORE`` of a link would turn it into an
    ignore).
    """
    conn.execute(
        "CREATE TABLE model_tag_lists ("
        " model_hash TEXT PRIMARY KEY,"
        " tags TEXT NOT NULL) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TRIGGER model_tag_lists_link_added AFTER INSERT ON model_tags BEGIN "
        + _refresh_tag_list("NEW.model_hash") + "END"
    )
    conn.execute(
        "CREATE TRIGGER model_tag_lists_link_removed AFTER DELETE ON model_tags BEGIN "
        + _refresh_tag_list("OLD.model_hash") + "END"
    )
    conn.execute(
        "CREATE TRIGGER model_tag_lists_link_changed AFTER UPDATE ON model_tags BEGIN "
        + _refresh_tag_list("OLD.model_hash") + _refresh_tag_list("NEW.model_hash") + "END"
    )
    conn.execute(
        "CREATE TRIGGER model_tag_lists_tag_renamed AFTER UPDATE OF id, name, name_key ON tags BEGIN "
        + _refresh_tag_lists_of_tag("OLD.id") + _refresh_tag_lists_of_tag("NEW.id") + "END"
    )
    # Only for a program with foreign keys off: a tag row written after the links that name it
    # (links imported first, or INSERT OR REPLACE as a rename: no UPDATE, and the replaced
    # row's delete fires no trigger), or deleted under them (the links stay, the tag goes).
    conn.execute(
        "CREATE TRIGGER model_tag_lists_tag_added AFTER INSERT ON tags BEGIN "
        + _refresh_tag_lists_of_tag("NEW.id") + "END"
    )
    conn.execute(
        "CREATE TRIGGER model_tag_lists_tag_removed AFTER DELETE ON tags BEGIN "
        + _refresh_tag_lists_of_tag("OLD.id") + "END"
    )
    conn.execute(
        "INSERT INTO model_tag_lists(model_hash, tags) SELECT model_hash, "
        + _TAG_LIST_OF.format(model="linked.model_hash")
        + " FROM (SELECT DISTINCT model_hash FROM model_tags) AS linked"
    )


# Append only: a step's position is its version number.
UPGRADES: list[Callable[[sqlite3.Connection], None]] = [
    _baseline,
    _tag_keys_and_indexes,
    _hash_cache,
    _legacy_imports,
    _content_lookup_indexes,
    _file_metadata,
    _pending_ids_never_reused_and_image_journal,
    _model_tag_lists,
]
CURRENT_VERSION = len(UPGRADES)


@dataclass
class UpgradeResult:
    """What :func:`apply` found and did."""

    version_before: int
    version_after: int
    backup_path: str | None = None
    read_only_reason: str | None = None


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version stored in the database header."""
    return conn.execute("PRAGMA user_version").fetchone()[0]


def _has_user_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' LIMIT 1"
    ).fetchone()
    return row is not None


def backup_database(conn: sqlite3.Connection, backup_dir: str | Path, label: str) -> str | None:
    """Copy the live database with SQLite's backup API; written under a temp name, then renamed.

    None for a PostgreSQL library: its server's backups (``pg_dump``) cover it, and a change made
    here runs in one transaction there anyway.
    """
    if dialect_of(conn) != "sqlite":
        return None
    backup_dir = Path(backup_dir)
    backup_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    final = backup_dir / f"hikaze_model_manager.{label}.{stamp}.db"
    counter = 1
    while final.exists():
        final = backup_dir / f"hikaze_model_manager.{label}.{stamp}-{counter}.db"
        counter += 1
    tmp = final.with_suffix(".db.tmp")
    target = sqlite3.connect(tmp)
    try:
        conn.backup(target)
    finally:
        target.close()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return str(final)


def apply(conn: sqlite3.Connection, backup_dir: str | Path) -> UpgradeResult:
    """Bring the schema to :data:`CURRENT_VERSION`; refuse (read-only) a newer database."""
    before = user_version(conn)
    if before > CURRENT_VERSION:
        reason = (
            f"The library database has schema version {before}, newer than this Hikaze Manager "
            f"understands ({CURRENT_VERSION}); it is opened read-only. Update Hikaze Manager."
        )
        logger.error("[Hikaze] %s", reason)
        return UpgradeResult(before, before, read_only_reason=reason)
    result = UpgradeResult(before, before)
    if before < CURRENT_VERSION and _has_user_tables(conn):
        result.backup_path = backup_database(conn, backup_dir, f"v{before}")
        logger.info("[Hikaze] backed up the database to %s before upgrading", result.backup_path)
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    for version in range(before, CURRENT_VERSION):
        step = UPGRADES[version]
        with transaction(conn):
            step(conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        logger.info("[Hikaze] database upgraded to schema version %d (%s)", version + 1, step.__name__)
    result.version_after = CURRENT_VERSION
    return result
