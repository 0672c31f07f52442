"""Rows of a SQLite library merged into a shared library: what is added, filled, kept.

A row the target lacks is added as it is. A row the target has (same key) keeps every value the
target holds and gets only its empty fields filled from the source; a field a person owns on the
target (``model_metadata.sources[field] == "user"``, even when they cleared it) is never filled.
Whatever differs and is kept is reported. Nothing is written for a row that would not change, so
a second copy writes nothing at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .metadata.store import USER, _META_PATHS

_MODEL_OWNED = {"name": "name", "base_model": "base_model"}  # models column -> owned field
_EMPTY_TEXTS = ("", "[]", "{}", "null")
DIFFERENCES_KEPT = 1000  # listed in the report; the rest are counted


def is_empty(value) -> bool:
    """NULL, blank text, or a JSON text with nothing in it: a field the source may fill."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() in _EMPTY_TEXTS
    return isinstance(value, (list, dict)) and not value


@dataclass
class Difference:
    """A field the target kept although the source holds another value."""

    table: str
    key: str
    field: str
    kept: object
    source: object


@dataclass
class TableResult:
    """The copy of one table: counts, the rows the target must now hold, the verdict."""

    name: str
    columns: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    source_rows: int = 0
    added: int = 0
    filled: int = 0
    unchanged: int = 0
    differed: int = 0
    skipped: int = 0  # source rows that belong to nothing (orphan links): not library data
    expected: list[tuple] = field(default_factory=list, repr=False)
    source_canonical: list[tuple] = field(default_factory=list, repr=False)
    target_rows: int | None = None
    source_checksum: str = ""
    target_checksum: str = ""
    verified: bool | None = None


class Differences:
    """The report's list of kept differences, bounded."""

    def __init__(self) -> None:
        self.items: list[Difference] = []
        self.omitted = 0

    def add(self, table: str, key, name: str, kept, source) -> None:
        """Record one kept field."""
        if len(self.items) >= DIFFERENCES_KEPT:
            self.omitted += 1
            return
        key_text = "/".join(str(k) for k in key) if isinstance(key, tuple) else str(key)
        self.items.append(Difference(table, key_text, name, _short(kept), _short(source)))


def _short(value, limit: int = 200):
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    return value


def loads_object(text) -> dict | None:
    """A JSON object text as a dict; {} for empty; None when it is something else."""
    if is_empty(text):
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def dumps(value) -> str:
    """JSON the way the services store it."""
    return json.dumps(value, ensure_ascii=False)


def fill_empty(have: dict, row: dict, columns: Iterable[str], *,
               blocked: Callable[[str], bool] = lambda c: False) -> tuple[dict, list[str], list[str]]:
    """``have`` with its empty columns filled from ``row``: (desired, filled, kept-differing)."""
    desired, filled, kept = dict(have), [], []
    for column in columns:
        mine, theirs = have.get(column), row.get(column)
        if is_empty(mine) and not is_empty(theirs) and not blocked(column):
            desired[column] = theirs
            filled.append(column)
        elif mine != theirs and not (is_empty(mine) and is_empty(theirs)):
            kept.append(column)
    return desired, filled, kept


def _deep_fill(have: dict, src: dict, path: tuple, blocked: set, filled: list, kept: list) -> dict:
    out = dict(have)
    for key, value in src.items():
        where = (*path, key)
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = _deep_fill(current, value, where, blocked, filled, kept)
        elif is_empty(current) and not is_empty(value) and where not in blocked:
            if isinstance(value, dict):  # a whole object the target lacks: minus the blocked parts
                value = _deep_fill({}, value, where, blocked, filled, kept)
                if not value:
                    continue
            out[key] = value
            filled.append(where)
        elif current != value and not (is_empty(current) and is_empty(value)):
            kept.append(where)
    return out


def merge_meta(have_text, src_text, target_sources: dict) -> tuple[object, set[str], list[str]]:
    """The target's meta_json with empty keys filled from the source's (deep); owned fields the
    user cleared stay clear. Returns (text to store, owned fields filled, kept key paths)."""
    mine, theirs = loads_object(have_text), loads_object(src_text)
    if mine is None or theirs is None:  # not an object on one side: keep the target's text
        same = have_text == src_text or (is_empty(have_text) and is_empty(src_text))
        if is_empty(have_text) and theirs is None and not is_empty(src_text):
            return src_text, set(), []
        return have_text, set(), [] if same else ["meta_json"]
    blocked = {path for name, path in _META_PATHS.items() if target_sources.get(name) == USER}
    filled: list[tuple] = []
    kept: list[tuple] = []
    merged = _deep_fill(mine, theirs, (), blocked, filled, kept)
    owned = {name for name, path in _META_PATHS.items()
             if any(path[:len(f)] == f for f in filled)
             and not is_empty(_get(theirs, path))}
    text = dumps(merged) if filled else have_text
    return text, owned, ["meta_json." + ".".join(p) for p in kept]


def _get(meta: dict, path: tuple):
    for key in path:
        meta = meta.get(key) if isinstance(meta, dict) else None
    return meta


def merge_model(have: dict, row: dict, columns: Iterable[str],
                target_sources: dict) -> tuple[dict, set[str], list[str], bool]:
    """One model the target already has: (desired row, owned fields filled, kept fields, changed)."""
    plain = [c for c in columns if c not in ("sha256", "meta_json", "base_family")]

    def user_cleared(column: str) -> bool:
        owned = _MODEL_OWNED.get(column)
        return owned is not None and target_sources.get(owned) == USER

    desired, filled, kept = fill_empty(have, row, plain, blocked=user_cleared)
    owned = {_MODEL_OWNED[c] for c in filled if c in _MODEL_OWNED}
    if "base_family" in have:
        if "base_model" in filled:  # derived from base_model: the pair comes from one side
            desired["base_family"] = row.get("base_family")
        else:
            desired, more, also = fill_empty(desired, row, ["base_family"])
            filled += more
            kept += also
    if "meta_json" in have:
        text, meta_owned, meta_kept = merge_meta(have["meta_json"], row.get("meta_json"),
                                                 target_sources)
        desired["meta_json"] = text
        owned |= meta_owned
        kept += meta_kept
    return desired, owned, kept, desired != have


def merge_sources(have_text, src_text, fields: set[str]) -> object:
    """The target's ``model_metadata.sources`` plus the source's origin of each field it filled
    (only those: an origin next to a value the target kept would let an import replace it)."""
    mine, theirs = loads_object(have_text), loads_object(src_text)
    if mine is None or not theirs:
        return have_text
    added = {f: theirs[f] for f in sorted(fields) if f in theirs and f not in mine}
    return dumps({**mine, **added}) if added else have_text
