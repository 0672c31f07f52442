"""Copy a SQLite library (database and pictures) into a PostgreSQL library, then verify it.

The source is never written: a consistent snapshot is taken with SQLite's backup API (which sees
a live WAL) into a temporary folder and upgraded there to the current schema. The target gets its
schema and every row in ONE transaction (the library's write lock), so a kill leaves it as it was
or fully copied. Rows are merged, never overwritten (see :mod:`.store_copy_rows`); a second run
writes nothing. Verification reads the target back on a new connection: per table the rows that
came from the source, counted and checksummed the same way on both sides; pictures by digest,
their bytes hashed by the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from .. import db
from ..db import DB_FILE_NAME, upgrades
from ..db import errors as db_errors
from ..db.pg import redact
from ..db.pg_copy import (
    BoundPostgresStore,
    restore_sequences,
    sequence_states,
    tier_data_digests,
)
from ..db.stores import PostgresStore, valid_machine_name
from . import store_copy_pictures as pictures
from . import store_copy_tables as tables
from .files import file_stamp as _stamp, is_regular_file, write_file_atomic
from .store_copy_rows import Difference, Differences, TableResult


_COPY_ATTEMPTS = 5


class CopyError(Exception):
    """The copy could not run (source unreadable, target unreachable, bad input); nothing written."""


class _DryRunDone(Exception):
    """Raised inside a dry run's transaction once it is verified: rolls everything back."""


@dataclass
class CopyReport:
    """What a copy found, did and verified."""

    source: str
    target: str  # the URL without its password
    machine: str
    dry_run: bool
    source_version: int = 0
    tables: list[TableResult] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    differences_omitted: int = 0
    pending_files: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def added(self) -> int:
        """Rows and pictures the target did not have before."""
        return sum(t.added + t.filled for t in self.tables) + self.pending_files.get("copied", 0)

    @property
    def verified(self) -> bool:
        """Every table verified and nothing left uncopied."""
        return not self.problems and all(t.verified for t in self.tables)


def checksum(rows: list[tuple]) -> str:
    """SHA-256 over the sorted canonical rows (JSON, one per line): the same on both stores."""
    lines = sorted(json.dumps(list(row), ensure_ascii=False, separators=(",", ":")) for row in rows)
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogatepass")).hexdigest()


@contextmanager
def source_snapshot(database: Path) -> Iterator[tuple[sqlite3.Connection, int]]:
    """A private, current-schema copy of the library ``database``, made without writing it, and
    the schema version the source had."""
    if not is_regular_file(database):
        raise CopyError(f"no library database at {database}")
    folder = Path(tempfile.mkdtemp(prefix="hikaze-copy-"))
    copy = folder / DB_FILE_NAME
    try:
        _backup(database, copy)
        conn = db.connect(copy)
        try:
            before = upgrades.user_version(conn)
            result = upgrades.apply(conn, folder / "backups")
            if result.read_only_reason:
                raise CopyError(result.read_only_reason)
            yield conn, before
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise CopyError(f"cannot read the library database {database}: {exc}") from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _backup(database: Path, copy: Path) -> None:
    """One consistent snapshot of ``database`` without creating or changing a file beside it.

    With a ``-shm`` index there (a server has the library open, or was killed), a read-only
    connection reads the live WAL through it and SQLite's backup API copies one committed state.
    Without one, no WAL connection is open: a read-only open would create ``-wal``/``-shm`` files,
    so the file and its journals are copied instead, again until nothing changed meanwhile.
    """
    if Path(f"{database}-shm").exists():
        try:
            with db.connection(database, read_only=True) as source:
                target = sqlite3.connect(copy)
                try:
                    source.backup(target)
                finally:
                    target.close()
            return
        except sqlite3.OperationalError:  # e.g. a -shm we may not write: copy the files
            for suffix in ("", "-wal", "-journal"):
                Path(f"{copy}{suffix}").unlink(missing_ok=True)
    watched = [database, Path(f"{database}-wal"), Path(f"{database}-journal")]
    for _ in range(_COPY_ATTEMPTS):
        before = [_stamp(path) for path in watched]
        try:
            for path, stamp in zip(watched, before):
                if stamp is not None:
                    shutil.copyfile(path, Path(str(copy) + str(path)[len(str(database)):]))
        except FileNotFoundError:
            continue  # a journal went away between the stat and the copy
        if [_stamp(path) for path in watched] == before:
            return
        for suffix in ("", "-wal", "-journal"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)
    raise CopyError(f"{database} kept changing while it was copied; stop the server using it "
                    "and try again")


def copy_library(data_dir: str | Path, database_url: str, machine: str, *, dry_run: bool = False,
                 target_data_dir: str | Path | None = None, database: str | Path | None = None
                 ) -> CopyReport:
    """Copy the library in ``data_dir`` into ``database_url`` as machine ``machine``; verify it."""
    from ..state import DataPaths

    name = valid_machine_name(machine)
    if name is None:
        raise CopyError("the machine name must be 1 to 100 printable characters")
    paths = DataPaths.under(data_dir, database)
    report = CopyReport(str(paths.data_dir), redact(database_url), name, dry_run)
    with source_snapshot(paths.database) as (src, report.source_version):
        report.problems += tables.unknown_tables(src)
        nul = tables.texts_with_nul(src)
        if nul:
            more = f" (and {len(nul) - 1} more)" if len(nul) > 1 else ""
            raise CopyError(f"{nul[0]}{more} holds a NUL character (U+0000), which PostgreSQL "
                            "text cannot store; remove it from the source library and copy "
                            "again. Nothing was written.")
        try:
            _copy(src, paths.images_dir, database_url, name, report)
        except db_errors.Error as exc:
            raise CopyError(f"the PostgreSQL library {redact(database_url)}: "
                            f"{_without_password(str(exc), database_url)}") from exc
    target = DataPaths.under(target_data_dir) if target_data_dir else paths
    report.pending_files = copy_pending_files(paths.pending_dir, target.pending_dir, dry_run)
    return report


def _copy(src, images_dir: Path, url: str, machine: str, report: CopyReport) -> None:
    diffs = Differences()
    store = PostgresStore(url, machine)
    with store.connection() as conn:
        copier = tables.TableCopier(src, conn, machine, diffs)
        try:
            with db.transaction(conn):
                # Ids handed out (nextval, setval) survive a rollback: a dry run or a failed
                # copy puts the sequences back, still under the write lock, after undoing the rest.
                sequences = sequence_states(conn)
                try:
                    with db.transaction(conn):  # a savepoint: undone, the transaction goes on
                        results = _copy_rows(src, conn, images_dir, url, machine, copier)
                        if report.dry_run:  # what the copy would give, then nothing of it
                            verify(conn, results)
                            raise _DryRunDone
                except BaseException:
                    with suppress(*db_errors.Error):  # a lost connection: its error is the news
                        restore_sequences(conn, sequences)
                    raise
        except _DryRunDone:
            pass
        else:
            with store.connection(read_only=True) as fresh, db.consistent_read(fresh):
                verify(fresh, results)
    report.tables = results
    report.problems += copier.problems
    report.differences, report.differences_omitted = diffs.items, diffs.omitted


def _copy_rows(src, conn, images_dir: Path, url: str, machine: str,
               copier: tables.TableCopier) -> list[TableResult]:
    reason = BoundPostgresStore(url, machine, conn).prepare()
    if reason:
        raise CopyError(reason)
    results = copier.copy_all()
    results.append(pictures.copy_pictures(src, conn, images_dir, copier.model_shas, copier.diffs))
    return results


def verify(conn, results: list[TableResult]) -> None:
    """Read back the rows each table expects; set counts, checksums and the verdict."""
    for result in results:
        if result.name == "pictures":
            shas = sorted({row[0] for row in result.expected})
            found = pictures.matching_sets(
                result.expected, pictures.stored_sets(tier_data_digests(conn, shas)))
        else:
            found = tables.target_rows(conn, result)
        result.target_rows = len(found)
        result.source_checksum = checksum(result.source_canonical)
        result.target_checksum = checksum(found)
        result.verified = (len(found) == len(result.expected)
                           and result.target_checksum == checksum(result.expected))


def copy_pending_files(source: Path, target: Path, dry_run: bool) -> dict[str, int]:
    """Pending originals stay local files: copied only into another data folder, never over a
    different file of the same name."""
    counts = {"copied": 0, "already": 0, "conflicts": 0}
    try:
        if os.path.realpath(source) == os.path.realpath(target) or not source.is_dir():
            return counts
        names = sorted(entry.name for entry in os.scandir(source)
                       if entry.is_file(follow_symlinks=False) and not entry.name.startswith("."))
    except OSError:
        return counts
    for name in names:
        data = (source / name).read_bytes()
        dest = target / name
        if os.path.lexists(dest):
            same = is_regular_file(dest) and dest.read_bytes() == data
            counts["already" if same else "conflicts"] += 1
            continue
        if not dry_run:
            write_file_atomic(dest, data)
        counts["copied"] += 1
    return counts


def _without_password(message: str, url: str) -> str:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return message
    for secret in {password, unquote(password)} if password else ():
        message = message.replace(secret, "***")
    return message
