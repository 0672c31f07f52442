"""Reading a Hikaze Model Manager v1 database without ever touching it.

The v1 file is never opened in place. Its bytes (plus ``-wal`` and ``-journal`` when present) are
copied into a private temp folder and SQLite opens the copy. That is the one way that guarantees
the original's bytes, mtime and sibling files stay as they were whatever the situation: a WAL
database with or without ``-shm``, a folder we may not write to, odd characters in the path.
SQLite's ``mode=ro`` would still create ``-shm``/``-wal`` next to a WAL database when the folder
is writable and fails without them when it is not; ``immutable=1`` would ignore the ``-wal`` and
so miss edits v1 had not checkpointed yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..db import sqlite_uri
from ..errors import BadRequest, Conflict, NotFound
from .files import file_stamp as _stamp

V1_DB_NAME = "hikaze_mm.sqlite3"
SQLITE_HEADER = b"SQLite format 3\x00"
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
SYSTEM_TAG_COUNT = 7
# Columns this reader needs; v1 itself insists on the exact list, we only on what we read.
REQUIRED_COLUMNS = {
    "models": {"id", "path", "name", "type", "size_bytes", "hash_hex", "created_at", "extra_json"},
    "tags": {"id", "name"},
    "model_tags": {"model_id", "tag_id"},
}
_COPY_ATTEMPTS = 3


@dataclass
class LegacyRow:
    """One v1 ``models`` row, cleaned up: what a migration needs and what was wrong with it."""

    legacy_id: int
    path: str
    name: str
    type: str
    size_bytes: int
    created_at: int
    sha256: str  # lower-case 64-hex, or "" (the row then goes to pending)
    description: str = ""
    community_links: str = ""
    positive: str = ""
    negative: str = ""
    image: str | None = None  # basename of extra_json.images[0]
    tags: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class LegacyLibrary:
    """Everything read from one v1 database."""

    path: Path
    source: str
    rows: list[LegacyRow]


def check_legacy_db_path(text: str) -> Path:
    """The v1 database path from a request: an existing, readable, regular SQLite file."""
    if not text or not text.strip():
        raise BadRequest("legacy_db_path is required")
    if "\x00" in text:
        raise BadRequest("legacy_db_path: a path cannot contain a NUL character")
    path = Path(text.strip()).expanduser().absolute()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"Legacy database not found: {path}") from None
    except OSError as exc:
        raise BadRequest(f"Legacy database cannot be read: {path} ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadRequest(
            f"legacy_db_path is a folder, not a database file: {path} "
            f"(v1 keeps its database at <v1 folder>/data/{V1_DB_NAME})"
        )
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest(f"legacy_db_path is not a regular file: {path}")
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise BadRequest(f"Legacy database cannot be read: {path} ({exc.strerror})") from None
    if header != SQLITE_HEADER:
        raise BadRequest(f"Not an SQLite database: {path}")
    return path


def resolve_images_dir(text: str | None, db_path: Path) -> Path | None:
    """The v1 images folder: the one given (must exist), else ``<db folder>/images`` if present."""
    if text is None or not text.strip():
        default = db_path.parent / "images"
        return default if default.is_dir() else None
    if "\x00" in text:
        raise BadRequest("legacy_images_dir: a path cannot contain a NUL character")
    folder = Path(text.strip()).expanduser().absolute()
    if not folder.exists():
        raise NotFound(f"Legacy images folder not found: {folder}")
    if not folder.is_dir():
        raise BadRequest(f"legacy_images_dir is not a folder: {folder}")
    return folder


def _copy_snapshot(src: Path, dest: Path) -> None:
    """Copy the database and its journal files; retry if v1 writes to them meanwhile."""
    siblings = ("-wal", "-journal")
    for _ in range(_COPY_ATTEMPTS):
        watched = [src, *(Path(f"{src}{suffix}") for suffix in siblings)]
        before = [_stamp(p) for p in watched]
        try:
            shutil.copyfile(src, dest)
            for suffix, stamp in zip(siblings, before[1:]):
                target = Path(f"{dest}{suffix}")
                if stamp is not None:
                    shutil.copyfile(Path(f"{src}{suffix}"), target)
                elif target.exists():
                    target.unlink()
        except FileNotFoundError:
            continue  # a journal vanished between stat and copy: v1 just closed it
        if [_stamp(p) for p in watched] == before:
            return
    raise Conflict(
        "The legacy database changed while it was being read; close the old Hikaze Model "
        "Manager (or ComfyUI running it) and try again"
    )


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _check_v1_schema(conn: sqlite3.Connection, path: Path) -> None:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "pending_import" in tables and "hash_hex" not in _columns(conn, "models"):
        raise BadRequest(
            f"{path} is a Hikaze Model Manager 2 library, not a v1 database; "
            "point HIKAZE_DATA_DIR at its folder instead of migrating it"
        )
    for table, needed in REQUIRED_COLUMNS.items():
        if table not in tables:
            raise BadRequest(
                f"{path} is not a Hikaze Model Manager v1 database (it has no '{table}' table)"
            )
        missing = needed - _columns(conn, table)
        if missing:
            raise BadRequest(
                f"{path} is not a Hikaze Model Manager v1 database "
                f"(table '{table}' lacks column(s) {', '.join(sorted(missing))})"
            )


def _as_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@contextmanager
def open_legacy_db(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a private copy of the v1 database, schema checked; 400 if it is not v1."""
    with tempfile.TemporaryDirectory(prefix="hikaze-legacy-") as tmp:
        copy = Path(tmp) / "legacy.sqlite3"
        try:
            _copy_snapshot(path, copy)
        except PermissionError as exc:
            raise BadRequest(f"Legacy database cannot be read: {path} ({exc.strerror})") from None
        conn = sqlite3.connect(sqlite_uri(copy, "rw"), uri=True, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            # v1 stored the bytes it was given: a cell that is not UTF-8 reads with U+FFFD for
            # what is no text, rather than refusing the whole file
            conn.text_factory = _as_text
            try:
                _check_v1_schema(conn, path)
            except sqlite3.DatabaseError as exc:
                raise BadRequest(f"{path} cannot be read as an SQLite database: {exc}") from None
            yield conn
        finally:
            conn.close()


def library_source(conn: sqlite3.Connection, path: Path) -> str:
    """A name for this v1 library that survives moving or copying the file.

    v1 inserts its seven system tags with one millisecond timestamp when it creates a database and
    never rewrites them, so their (id, name, created_at) fingerprint one v1 install while it keeps
    being used. Without such rows (hand-made files) the resolved path is the fallback.
    """
    rows: list = []
    if "created_at" in _columns(conn, "tags"):
        rows = conn.execute(
            "SELECT id, name, created_at FROM tags ORDER BY id LIMIT ?", (SYSTEM_TAG_COUNT,)
        ).fetchall()
    if not rows:
        return "path:" + os.path.realpath(path)
    text = json.dumps([list(row) for row in rows], ensure_ascii=False, default=str)
    return "v1:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):  # SQLite text may hold NUL; PostgreSQL's cannot: dropped
        return value.replace("\x00", "")
    if isinstance(value, list):
        return "\n".join(_text(item) for item in value if item is not None)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _int(value) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def file_basename(path: str) -> str:
    """The last component of a POSIX or Windows path (or a ``/media/<name>`` URL)."""
    return re.split(r"[\\/]", path)[-1]


def _parse_extra(row: LegacyRow, raw) -> None:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return
    try:
        extra = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        row.problems.append("extra_json is not valid JSON; description, prompts and image ignored")
        return
    if extra is None:
        return
    if not isinstance(extra, dict):
        row.problems.append(
            "extra_json is not a JSON object; description, prompts and image ignored"
        )
        return
    row.description = _text(extra.get("description"))
    row.community_links = _text(extra.get("community_links"))
    prompts = extra.get("prompts")
    if isinstance(prompts, dict):
        row.positive = _text(prompts.get("positive"))
        row.negative = _text(prompts.get("negative"))
    elif isinstance(prompts, str):
        row.positive = _text(prompts)
        row.problems.append("prompts is a string, not an object; kept as the positive prompt")
    elif prompts is not None:
        row.problems.append("prompts is not an object; ignored")
    images = extra.get("images")
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list):
        images = []
    first = next((i for i in images if isinstance(i, str) and i.strip()), None)
    if first is not None:
        name = file_basename(first.strip())
        if name in ("", ".", ".."):
            row.problems.append(f"image reference {first!r} has no file name; ignored")
        else:
            row.image = name


def _clean_row(record: sqlite3.Row, tags: list[str]) -> LegacyRow:
    path = _text(record["path"]).strip()
    raw_hash = record["hash_hex"]
    digest = raw_hash.strip().lower() if isinstance(raw_hash, str) else ""
    row = LegacyRow(
        legacy_id=record["id"],
        path=path,
        name=_text(record["name"]).strip() or file_basename(path),
        type=_text(record["type"]).strip(),
        size_bytes=max(0, _int(record["size_bytes"])),
        created_at=max(0, _int(record["created_at"])),
        sha256=digest if HEX64.match(digest) else "",
        tags=tags,
    )
    if digest and not row.sha256:
        row.problems.append(
            f"hash_hex {raw_hash!r} is not a 64-character hex SHA-256; the model goes to pending"
        )
    _parse_extra(row, record["extra_json"])
    return row


def _read_rows(conn: sqlite3.Connection) -> list[LegacyRow]:
    tag_names = {
        row[0]: _text(row[1]) for row in conn.execute("SELECT id, name FROM tags ORDER BY id")
    }
    links: dict[int, list[str]] = {}
    for model_id, tag_id in conn.execute(
        "SELECT model_id, tag_id FROM model_tags ORDER BY model_id, tag_id"
    ):
        name = tag_names.get(tag_id)
        if name is not None:  # a dangling link (v1 without foreign keys) is skipped
            links.setdefault(model_id, []).append(name)
    records = conn.execute(
        "SELECT id, path, name, type, size_bytes, hash_hex, created_at, extra_json "
        "FROM models ORDER BY id"
    )
    return [_clean_row(record, links.get(record["id"], [])) for record in records]


def read_legacy_library(path: Path) -> LegacyLibrary:
    """Validate and read a whole v1 database (a few MB at most) into memory."""
    with open_legacy_db(path) as conn:
        try:
            source, rows = library_source(conn, path), _read_rows(conn)
            return LegacyLibrary(path=path, source=source, rows=rows)
        except sqlite3.DatabaseError as exc:
            raise BadRequest(f"{path} cannot be read as an SQLite database: {exc}") from None


def probe_candidate(path: Path) -> dict | None:
    """What the panel shows about one possible v1 database; None if it vanished meanwhile."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    images = path.parent / "images"
    info = {
        "path": str(path),
        "images_dir": str(images) if images.is_dir() else None,
        "size_bytes": st.st_size,
        "mtime": int(st.st_mtime_ns // 1_000_000),
        "looks_like_v1": False,
        "model_count": None,
        "source": None,
        "problem": None,
    }
    try:
        check_legacy_db_path(str(path))
        with open_legacy_db(path) as conn:
            info["model_count"] = conn.execute("SELECT COUNT(*) FROM models").fetchone()[0]
            info["source"] = library_source(conn, path)
            info["looks_like_v1"] = True
    except (BadRequest, NotFound, Conflict) as exc:
        info["problem"] = exc.message
    except (OSError, sqlite3.DatabaseError) as exc:
        info["problem"] = f"cannot be read: {exc}"
    return info


def find_candidates(
    search_dirs: Iterable[str | Path], extra_paths: Iterable[str | Path]
) -> list[Path]:
    """v1 databases at ``<child of a search dir>/data/hikaze_mm.sqlite3`` plus configured paths."""
    found: dict[str, Path] = {}

    def _add(candidate: Path) -> None:
        try:
            if candidate.is_file():
                found.setdefault(os.path.realpath(candidate), candidate)
        except OSError:
            pass

    for base in search_dirs:
        try:
            children = sorted(os.scandir(Path(base).expanduser()), key=lambda e: e.name)
        except OSError:
            continue
        for child in children:
            try:
                is_dir = child.is_dir()
            except OSError:
                continue
            if is_dir:
                _add(Path(child.path) / "data" / V1_DB_NAME)
    for extra in extra_paths:
        candidate = Path(extra).expanduser().absolute()
        if candidate.is_dir():  # a v1 extension folder or its data folder
            _add(candidate / "data" / V1_DB_NAME)
            _add(candidate / V1_DB_NAME)
        else:
            _add(candidate)
    return sorted(found.values(), key=str)
