"""The library's tables copied one by one into the shared library, in foreign-key order.

Ids: a tag is the target's tag of the same name key when there is one (ids are then mapped),
else it keeps its source id when that id is free; a pending row is the target's row of the same
path, else keeps its id when free. Only a taken id gets a new one from the sequence, and every
sequence is moved past the ids handed out (and past SQLite's AUTOINCREMENT high-water marks, so
an id is never reused).
"""

from __future__ import annotations

from collections.abc import Callable

from ..db import ids_handed_out
from ..db.pg_copy import advance_sequence, next_id, table_columns
from .metadata.store import USER
from .store_copy_rows import (
    Differences,
    TableResult,
    fill_empty,
    loads_object,
    merge_model,
    merge_sources,
)
from .tags import tag_key

COPIED_TABLES = ("models", "tags", "model_tags", "model_metadata", "db_meta", "file_hashes",
                 "pending_import", "pending_model_tags", "legacy_imports")
# image_writes: picture writes in progress (their sets are left out, see store_copy_pictures);
# sqlite_sequence: SQLite's AUTOINCREMENT marks (they move the PostgreSQL sequences);
# model_tag_lists: derived from model_tags by triggers (a SQLite target fills its own).
NOT_COPIED = ("image_writes", "sqlite_sequence", "model_tag_lists")
INSERT_BATCH = 500


def unknown_tables(src) -> list[str]:
    """Problems for source tables this copy does not know (added by a later version)."""
    names = [row[0] for row in src.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return [f"table {name} is not copied: this version does not know it"
            for name in names if name not in COPIED_TABLES + NOT_COPIED]


def texts_with_nul(src) -> list[str]:
    """Source rows holding U+0000 in a text, which PostgreSQL text cannot store, each as
    ``<table> row <key>, column <name>``; found before anything is written."""
    found = []
    for table in COPIED_TABLES:
        info = sorted((row[5], row[1]) for row in src.execute(f'PRAGMA table_info("{table}")'))
        key = [name for position, name in info if position] or ["rowid"]
        cur = src.execute(f'SELECT {_quoted(key)}, * FROM "{table}"')
        columns = [d[0] for d in cur.description][len(key):]
        for row in cur:
            for column, value in zip(columns, row[len(key):]):
                if isinstance(value, str) and "\0" in value:
                    where = ", ".join(f"{k} {_shown(v)}" for k, v in zip(key, row))
                    found.append(f"{table} row {where}, column {column}")
    return found


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) and not value.isprintable() else str(value)


def _plain(value):
    if isinstance(value, (bytes, memoryview)):
        return "x:" + bytes(value).hex()
    return value


def canonical(row: dict, columns) -> tuple:
    """One row as the checksum sees it, the same whichever store it came from."""
    return tuple(_plain(row.get(column)) for column in columns)


def _value(row: dict, name: str):
    """A column, or a ``meta_json.a.b`` path inside one, for the differences list."""
    if not name.startswith("meta_json."):
        return row.get(name)
    value = loads_object(row.get("meta_json")) or {}
    for key in name.split(".")[1:]:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _quoted(columns) -> str:
    return ", ".join(f'"{column}"' for column in columns)


def target_rows(conn, result: TableResult) -> list[tuple]:
    """The target's rows with the keys ``result`` expects, canonical."""
    positions = [result.columns.index(k) for k in result.key]
    wanted = {tuple(row[i] for i in positions) for row in result.expected}
    found = []
    for row in conn.execute(f"SELECT {_quoted(result.columns)} FROM {result.name}"):
        values = canonical(dict(zip(result.columns, row)), result.columns)
        if tuple(values[i] for i in positions) in wanted:
            found.append(values)
    return found


def insert_rows(conn, table: str, columns, rows: list) -> None:
    """Insert rows many per statement: every statement bumps the library version (a trigger),
    so one statement per row would cost one more write per row."""
    one = f"({', '.join('?' * len(columns))})"
    for start in range(0, len(rows), INSERT_BATCH):
        batch = rows[start:start + INSERT_BATCH]
        conn.execute(f"INSERT INTO {table}({_quoted(columns)}) VALUES {', '.join([one] * len(batch))}",
                     [value for row in batch for value in row])


class TableCopier:
    """Copies every table of one source snapshot over one target connection (in its transaction)."""

    def __init__(self, src, conn, machine: str, diffs: Differences):
        self.src, self.conn, self.machine, self.diffs = src, conn, machine, diffs
        self.problems: list[str] = []
        self.tag_ids: dict[int, int] = {}
        self.pending_ids: dict[int, int] = {}
        self.model_shas: set[str] = set()
        self.new_models: set[str] = set()
        self.filled_owned: dict[str, set[str]] = {}
        self.target_sources: dict[str, dict] = {}
        self.untagged: set[str] = set()  # target models that had no tag before the copy
        self.max_tag_id = 0

    def copy_all(self) -> list[TableResult]:
        """Every table, parents first; the results expect what the target must now hold."""
        return [self._tags(), self._models(), self._model_tags(), self._metadata(),
                self._db_meta(), self._keyed("file_hashes", self._source("file_hashes"), ("path",)),
                self._pending(), self._pending_tags(), self._legacy()]

    # -- reading and writing

    def _source(self, table: str) -> tuple[tuple[str, ...], list[dict]]:
        cur = self.src.execute(f'SELECT * FROM "{table}"')
        columns = tuple(d[0] for d in cur.description)
        return columns, [dict(zip(columns, row)) for row in cur]

    def _target(self, table: str, columns) -> list[dict]:
        return [dict(zip(columns, row))
                for row in self.conn.execute(f"SELECT {_quoted(columns)} FROM {table}")]

    def _columns(self, table: str, columns) -> tuple[str, ...]:
        present = set(table_columns(self.conn, table))
        missing = [c for c in columns if c not in present]
        if missing:
            self.problems.append(f"{table}: the shared library has no column {', '.join(missing)}")
        return tuple(c for c in columns if c in present)

    def _write(self, table: str, columns, key, inserts: list[dict], updates: list[dict]) -> None:
        if table == "models":  # straight into the records and this machine's paths, many a
            # statement: the models view's trigger writes one row at a time (~1 ms a model)
            records = [c for c in columns if c != "path"]
            insert_rows(self.conn, "model_records", records, [[r[c] for c in records] for r in inserts])
            insert_rows(self.conn, "model_paths", ("sha256", "machine", "path"),
                        [(r["sha256"], self.machine, r["path"]) for r in inserts if r["path"]])
        else:
            insert_rows(self.conn, table, columns, [[row[c] for c in columns] for row in inserts])
        if updates:
            rest = [c for c in columns if c not in key]
            self.conn.executemany(
                f"UPDATE {table} SET {', '.join(f'{chr(34)}{c}{chr(34)} = ?' for c in rest)}"
                f" WHERE {' AND '.join(f'{chr(34)}{k}{chr(34)} = ?' for k in key)}",
                [[row[c] for c in rest] + [row[k] for k in key] for row in updates])

    def _keyed(self, name: str, source, key: tuple[str, ...], *,
               merge: Callable[[dict, dict], tuple[dict, list[str]]] | None = None,
               blank_keys: set = frozenset(), skipped: int = 0) -> TableResult:
        """Rows with a key: added when the target lacks the key, else merged (fill empty only)."""
        columns = self._columns(name, source[0])
        rows = source[1]
        result = TableResult(name, columns=columns, key=key, source_rows=len(rows) + skipped,
                             skipped=skipped)
        target = {tuple(r[k] for k in key): r for r in self._target(name, columns)}
        rest = [c for c in columns if c not in key]
        inserts: list[dict] = []
        updates: list[dict] = []
        for row in rows:
            row = {c: row.get(c) for c in columns}
            k = tuple(row[c] for c in key)
            have = target.get(k)
            fresh = have is None
            if fresh and k in blank_keys:  # the parent is the target's: merge with an empty row
                have = {**{c: None for c in columns}, **{c: row[c] for c in key}}
            if have is None:
                desired = row
                inserts.append(row)
                result.added += 1
            else:
                if merge is None:
                    desired, _, kept = fill_empty(have, row, rest)
                else:
                    desired, kept = merge(have, row)
                for column in kept:
                    self.diffs.add(name, k, column, _value(have, column), _value(row, column))
                result.differed += bool(kept)
                if fresh:
                    inserts.append(desired)
                    result.added += 1
                elif desired != have:
                    updates.append(desired)
                    result.filled += 1
                else:
                    result.unchanged += 1
            result.expected.append(canonical(desired, columns))
            result.source_canonical.append(canonical(row, columns))
        self._write(name, columns, key, inserts, updates)
        return result

    def _links(self, name: str, columns: tuple[str, str], rows: list[dict],
               mapped: list[tuple | None]) -> TableResult:
        """A link table: the mapped pairs the target lacks are added; orphans are skipped."""
        result = TableResult(name, columns=columns, key=columns, source_rows=len(rows))
        result.source_canonical = [canonical(r, columns) for r, m in zip(rows, mapped) if m]
        result.skipped = sum(1 for m in mapped if m is None)
        have = {tuple(r) for r in self.conn.execute(f"SELECT {_quoted(columns)} FROM {name}")}
        want = list(dict.fromkeys(m for m in mapped if m is not None))
        new = [pair for pair in want if pair not in have]
        result.added, result.unchanged = len(new), len(want) - len(new)
        result.expected = want
        insert_rows(self.conn, name, columns, new)
        return result

    # -- the tables

    def _tags(self) -> TableResult:
        columns = ("id", "name", "name_key")
        rows = sorted(self._source("tags")[1], key=lambda r: r["id"])
        result = TableResult("tags", columns=columns, key=("id",), source_rows=len(rows))
        target = self._target("tags", columns)
        by_key = {t["name_key"] or tag_key(t["name"]): t for t in target}
        used = {t["id"] for t in target}
        keep, fresh = [], []
        for row in rows:
            row = {"id": row["id"], "name": row["name"],
                   "name_key": row.get("name_key") or tag_key(row["name"])}
            result.source_canonical.append(canonical(row, columns))
            have = by_key.get(row["name_key"])
            if have is not None:
                self.tag_ids[row["id"]] = have["id"]
                result.unchanged += 1
                result.expected.append(canonical(have, columns))
                if have["name"] != row["name"]:
                    result.differed += 1
                    self.diffs.add("tags", row["name_key"], "name", have["name"], row["name"])
                continue
            (fresh if row["id"] in used else keep).append(row)
            used.add(row["id"])
        # An empty target takes the source's ids as they are, and its AUTOINCREMENT mark with them.
        floor = max([0, *used, *(([] if target else [ids_handed_out(self.src, "tags")]))])
        advance_sequence(self.conn, "tags", floor)
        new = keep + [{**row, "id": next_id(self.conn, "tags"), "source_id": row["id"]} for row in fresh]
        for row in new:
            self.tag_ids[row.pop("source_id", row["id"])] = row["id"]
            result.expected.append(canonical(row, columns))
        result.added = len(new)
        self._write("tags", columns, ("id",), new, [])
        self.max_tag_id = max([floor, *(row["id"] for row in new)])
        return result

    def _models(self) -> TableResult:
        source = self._source("models")
        self.model_shas = {row["sha256"] for row in source[1]}
        existing = {row[0] for row in self.conn.execute("SELECT sha256 FROM models")}
        self.new_models = self.model_shas - existing
        tagged = {row[0] for row in self.conn.execute("SELECT DISTINCT model_hash FROM model_tags")}
        self.untagged = existing - tagged
        for sha, sources in self.conn.execute("SELECT sha256, sources FROM model_metadata"):
            self.target_sources[sha] = loads_object(sources) or {}

        def merge(have: dict, row: dict) -> tuple[dict, list[str]]:
            sha = row["sha256"]
            desired, owned, kept, _ = merge_model(have, row, have.keys(),
                                                  self.target_sources.get(sha, {}))
            self.filled_owned[sha] = owned
            return desired, kept

        return self._keyed("models", source, ("sha256",), merge=merge)

    def _model_tags(self) -> TableResult:
        rows = self._source("model_tags")[1]
        mapped = [(r["model_hash"], self.tag_ids[r["tag_id"]])
                  if r["model_hash"] in self.model_shas and r["tag_id"] in self.tag_ids else None
                  for r in rows]
        self.untagged &= {pair[0] for pair in mapped if pair}  # ... and gets tags from the source
        return self._links("model_tags", ("model_hash", "tag_id"), rows, mapped)

    def _metadata(self) -> TableResult:
        columns, rows = self._source("model_metadata")
        kept_rows = [r for r in rows if r["sha256"] in self.model_shas]

        def merge(have: dict, row: dict) -> tuple[dict, list[str]]:
            sha = row["sha256"]
            sources = self.target_sources.get(sha, {})
            plain = [c for c in have if c not in ("sha256", "sources", "trigger_words")]
            desired, _, kept = fill_empty(have, row, plain)
            owned = set(self.filled_owned.get(sha, ()))
            if "trigger_words" in have:
                desired, filled, also = fill_empty(
                    desired, row, ["trigger_words"],
                    blocked=lambda c: sources.get("trigger_words") == USER)
                kept += also
                owned |= {"trigger_words"} if filled else set()
            if sha in self.untagged:
                owned.add("tags")
            if "sources" in have:
                desired["sources"] = merge_sources(have["sources"], row.get("sources"), owned)
            return desired, kept

        blank = {(sha,) for sha in self.model_shas - self.new_models}
        return self._keyed("model_metadata", (columns, kept_rows), ("sha256",), merge=merge,
                           blank_keys=blank, skipped=len(rows) - len(kept_rows))

    def _db_meta(self) -> TableResult:
        def merge(have: dict, row: dict) -> tuple[dict, list[str]]:
            if row["key"] == "tags_id_max":  # a high-water mark: the larger one
                value = str(max(_int(have["value"]), _int(row["value"]), self.max_tag_id))
                return {**have, "value": value}, []
            desired, _, kept = fill_empty(have, row, ["value"])
            return desired, kept

        return self._keyed("db_meta", self._source("db_meta"), ("key",), merge=merge)

    def _pending(self) -> TableResult:
        columns, rows = self._source("pending_import")
        rows.sort(key=lambda r: r["id"])
        target = self._target("pending_import", ("id", "path"))
        by_path = {t["path"]: t["id"] for t in target}
        used = {t["id"] for t in target}
        mapped, fresh = [], []
        for row in rows:
            if row["path"] in by_path:
                self.pending_ids[row["id"]] = by_path[row["path"]]
                mapped.append({**row, "id": by_path[row["path"]]})
            elif row["id"] in used:
                fresh.append(row)
            else:
                used.add(row["id"])
                self.pending_ids[row["id"]] = row["id"]
                mapped.append(row)
        legacy = self.src.execute("SELECT COALESCE(MAX(pending_id), 0) FROM legacy_imports").fetchone()[0]
        advance_sequence(self.conn, "pending_import",
                         max([0, *used, ids_handed_out(self.src, "pending_import"), int(legacy or 0)]))
        for row in fresh:
            self.pending_ids[row["id"]] = next_id(self.conn, "pending_import")
            mapped.append({**row, "id": self.pending_ids[row["id"]]})
        result = self._keyed("pending_import", (columns, mapped), ("id",))
        result.source_canonical = [canonical(r, result.columns) for r in rows]
        return result

    def _pending_tags(self) -> TableResult:
        rows = self._source("pending_model_tags")[1]
        mapped = [(self.pending_ids[r["model_id"]], self.tag_ids[r["tag_id"]])
                  if r["model_id"] in self.pending_ids and r["tag_id"] in self.tag_ids else None
                  for r in rows]
        return self._links("pending_model_tags", ("model_id", "tag_id"), rows, mapped)

    def _legacy(self) -> TableResult:
        columns, rows = self._source("legacy_imports")
        mapped = [{**r, "pending_id": self.pending_ids.get(r["pending_id"], r["pending_id"])}
                  for r in rows]
        result = self._keyed("legacy_imports", (columns, mapped), ("source", "legacy_id", "legacy_path"))
        result.source_canonical = [canonical(r, result.columns) for r in rows]
        return result


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
