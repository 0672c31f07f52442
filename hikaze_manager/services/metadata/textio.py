"""Bounded, forgiving reads of other tools' text files: size caps, BOMs, UTF-16, NaN, deep nesting,
NUL characters."""

from __future__ import annotations

import json
import os
import stat

MAX_SIDECAR_BYTES = 4 * 1024 * 1024
MAX_NESTED_JSON_CHARS = 8 * 1024 * 1024
MAX_JSON_DEPTH = 64


class SidecarError(ValueError):
    """A file next to a model that cannot be used; the message names the problem."""


NUL = "\x00"
JSON_NUL = "\\u0000"  # how JSON text spells a NUL inside a string


def strip_nul(value):
    """``value`` (decoded JSON) with NUL removed from every string and key, changed in place.

    PostgreSQL text cannot hold U+0000 (the shared store refuses the whole write), and a NUL in
    another tool's file carries no meaning: it is dropped, the rest of the text is kept.
    Iterative, so any nesting the parser accepted is walked without recursion.
    """
    if isinstance(value, str):
        return value.replace(NUL, "")
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            pairs = [(k.replace(NUL, "") if isinstance(k, str) else k, v) for k, v in item.items()]
            item.clear()
            for key, child in pairs:
                item[key] = child.replace(NUL, "") if isinstance(child, str) else child
                if isinstance(child, (dict, list)):
                    stack.append(child)
        elif isinstance(item, list):
            for i, child in enumerate(item):
                if isinstance(child, str):
                    item[i] = child.replace(NUL, "")
                elif isinstance(child, (dict, list)):
                    stack.append(child)
    return value


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), else UTF-16 by its BOM, without NUL characters; anything else
    is a :class:`SidecarError`."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise SidecarError("broken UTF-16 text") from None
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SidecarError("not UTF-8 or UTF-16 text (unknown encoding)") from None
    return text.replace(NUL, "") if NUL in text else text


def read_text(path: str | os.PathLike, cap: int = MAX_SIDECAR_BYTES) -> str:
    """The decoded text of a small file; refuses files over ``cap`` bytes without reading them."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block or never end
            raise SidecarError("not a regular file")
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > cap:
                raise SidecarError(f"too large ({size} bytes, limit {cap})")
            data = fh.read(cap + 1)
    except OSError as exc:
        raise SidecarError(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > cap:
        raise SidecarError(f"too large (over {cap} bytes)")
    return decode_text(data)


def depth_within(value, limit: int) -> bool:
    """True if no list or object in ``value`` is nested deeper than ``limit`` levels."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def loads_lenient(text: str, *, max_depth: int | None = MAX_JSON_DEPTH):
    """JSON where ``NaN``/``Infinity`` read as null and ``\\u0000`` is dropped; too deep or invalid
    is a :class:`SidecarError`.

    ``max_depth=None`` keeps only the parser's own recursion guard (values inside a header that
    was depth-checked already).
    """
    try:
        value = json.loads(text, parse_constant=lambda _name: None)
    except RecursionError:
        raise SidecarError("JSON nested too deeply") from None
    except ValueError as exc:
        raise SidecarError(f"invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if max_depth is not None and not depth_within(value, max_depth):
        raise SidecarError(f"JSON nested deeper than {max_depth} levels")
    return strip_nul(value) if JSON_NUL in text else value


def nested_json(value):
    """A value that may hold JSON text (kohya) or be parsed already (viewer dumps); None if unusable."""
    if isinstance(value, (dict, list)):  # parsed already: inside a depth-checked header
        return value
    if not isinstance(value, str) or len(value) > MAX_NESTED_JSON_CHARS:
        return None
    text = value.strip()
    if not text or text[0] not in "[{":
        return None
    try:
        return loads_lenient(text, max_depth=None)
    except SidecarError:
        return None


def clean_text(value) -> str:
    """A trimmed string; placeholders (``None``, ``Unknown``, ``null``) and non-strings read as empty."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        return ""
    text = value.strip()
    return "" if text.lower() in {"none", "unknown", "null", "undefined"} else text


def word_list(values, *, split: str | None = None) -> list[str]:
    """Trimmed, non-empty, de-duplicated (first spelling kept) strings from a list or a split text."""
    if isinstance(values, str):
        values = values.split(split) if split else [values]
    if not isinstance(values, list):
        return []
    seen: set[str] = set()
    result: list[str] = []
    for value in values:
        parts = value.split(split) if split and isinstance(value, str) else [value]
        for part in parts:
            word = clean_text(part)
            if word and len(word) <= 2000 and word.casefold() not in seen:
                seen.add(word.casefold())
                result.append(word)
    return result
