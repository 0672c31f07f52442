"""Bounded safetensors header reader (stdlib only) and what kohya/ModelSpec keys tell about a model.

A multi-GB file costs one open and at most two small reads; tensor bytes are never read. Hostile
headers (huge length, deep JSON, huge strings, non-objects) give a :class:`HeaderError` naming the
problem; odd but harmless things (non-string metadata values, a short data section) are warnings.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field

from .textio import JSON_NUL, clean_text, depth_within, nested_json, strip_nul, word_list

MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_HEADER_DEPTH = 8
MAX_KEY_CHARS = 4096
MAX_VALUE_CHARS = 32 * 1024 * 1024
STORED_VALUE_CHARS = 64 * 1024
FIRST_READ = 64 * 1024
TRAINING_TAGS_KEPT = 200
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
_PLACEHOLDER_TITLE = re.compile(r"(LoRA|TextualInversion|Checkpoint)@\d+\Z")
_RESOLUTION = re.compile(r"\(?\s*(\d{2,5})\s*[,x]\s*(\d{2,5})\s*\)?\Z")


class HeaderError(ValueError):
    """The file is not a usable safetensors file; the message says why."""


@dataclass
class Header:
    """A parsed header: the ``__metadata__`` map and facts about the layout."""

    metadata: dict[str, str]
    header_size: int
    tensor_count: int
    warnings: list[str] = field(default_factory=list)

    @property
    def data_offset(self) -> int:
        """Where the tensor data starts (AutoV3 hashes from here)."""
        return 8 + self.header_size


def is_safetensors_name(path: str) -> bool:
    """True for the file names safetensors files carry."""
    return path.lower().endswith(SAFETENSORS_SUFFIXES)


def read_header(path: str | os.PathLike, *, max_header: int = MAX_HEADER_BYTES) -> Header:
    """Read and check the header of ``path``; raises :class:`HeaderError` or ``OSError``."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 8:
            raise HeaderError("not a safetensors file (shorter than 8 bytes)")
        head = fh.read(FIRST_READ)
        (length,) = struct.unpack("<Q", head[:8])
        if length < 2:
            raise HeaderError("not a safetensors file (header length below 2)")
        if 8 + length > size:
            raise HeaderError("not a safetensors file or truncated (header longer than the file)")
        if length > max_header:
            raise HeaderError(f"header length {length} is over the limit of {max_header} bytes")
        raw = head[8 : 8 + length]
        if len(raw) < length:
            raw += fh.read(length - len(raw))
    if len(raw) < length:
        raise HeaderError("truncated header")
    if raw[:1] != b"{":
        raise HeaderError("not a safetensors file (header is not a JSON object)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HeaderError("header is not valid UTF-8") from None
    try:
        parsed = json.loads(text)
    except RecursionError:
        raise HeaderError("header JSON is nested too deeply") from None
    except ValueError as exc:
        raise HeaderError(f"header is not valid JSON ({exc.msg})") from None
    if not isinstance(parsed, dict):
        raise HeaderError("header is not a JSON object")
    if not depth_within(parsed, MAX_HEADER_DEPTH):
        raise HeaderError(f"header JSON is nested deeper than {MAX_HEADER_DEPTH} levels")
    if JSON_NUL in text:  # PostgreSQL text cannot hold NUL: dropped from keys and values
        strip_nul(parsed)
    return _check(parsed, length, size)


def _check(parsed: dict, length: int, size: int) -> Header:
    warnings: list[str] = []
    raw_meta = parsed.pop("__metadata__", None)
    metadata: dict[str, str] = {}
    if raw_meta is not None and not isinstance(raw_meta, dict):
        warnings.append("__metadata__ is not an object; ignored")
    elif raw_meta:
        stringified = False
        for key, value in raw_meta.items():
            if len(key) > MAX_KEY_CHARS:
                raise HeaderError(f"a metadata key is longer than {MAX_KEY_CHARS} characters")
            if not isinstance(value, str):
                value = json.dumps(value, ensure_ascii=False)
                stringified = True
            if len(value) > MAX_VALUE_CHARS:
                warnings.append(f"metadata value {key!r} is over {MAX_VALUE_CHARS} characters; dropped")
                continue
            metadata[key] = value
        if stringified:
            warnings.append("non-string metadata values were turned into JSON text")
    end = 0
    for name, info in parsed.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise HeaderError(f"tensor {name[:80]!r} has no valid data_offsets")
        end = max(end, offsets[1])
    if 8 + length + end > size:
        warnings.append("the data section is shorter than the header says (partial download?)")
    return Header(metadata, length, len(parsed), warnings)


def data_sha256(path: str | os.PathLike, offset: int, chunk: int = 1024 * 1024) -> str:
    """SHA-256 of every byte from ``offset`` to the end (the AutoV3 base)."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset)
        while True:
            n = fh.readinto(view)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


def autov3(path: str | os.PathLike) -> str | None:
    """The AutoV3 short hash (12 hex of the data-section SHA-256), or None if not safetensors."""
    try:
        header = read_header(path)
        return data_sha256(path, header.data_offset)[:12]
    except (HeaderError, OSError):
        return None


def _resolution(metadata: dict) -> str:
    for key in ("modelspec.resolution", "ss_resolution"):
        match = _RESOLUTION.match(clean_text(metadata.get(key)).replace(" x ", "x"))
        if match:
            return f"{match.group(1)}x{match.group(2)}"
    return ""


def training_tags(metadata: dict) -> list[dict]:
    """``ss_tag_frequency`` as ``[{"tag", "count"}]``: counts summed over folders, highest first."""
    frequency = nested_json(metadata.get("ss_tag_frequency"))
    if not isinstance(frequency, dict):
        return []
    counts: dict[str, int] = {}
    spelling: dict[str, str] = {}
    for folder in frequency.values():
        if not isinstance(folder, dict):
            continue
        for tag, count in folder.items():
            word = tag.strip() if isinstance(tag, str) else ""
            if not word or isinstance(count, bool) or not isinstance(count, (int, float)):
                continue
            key = word.casefold()
            spelling.setdefault(key, word)
            counts[key] = counts.get(key, 0) + int(count)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], spelling[item[0]]))
    return [{"tag": spelling[key], "count": count} for key, count in ranked[:TRAINING_TAGS_KEPT]]


def _thumbnail_key(metadata: dict) -> str | None:
    if clean_text(metadata.get("modelspec.thumbnail")).startswith("data:image/"):
        return "modelspec.thumbnail"
    covers = nested_json(metadata.get("ssmd_cover_images"))
    if isinstance(covers, list) and covers and isinstance(covers[0], str):
        return "ssmd_cover_images"
    return None


def extract(metadata: dict[str, str]) -> dict:
    """Import fields from kohya ``ss_*`` and ``modelspec.*`` keys (empty values left out)."""
    title = clean_text(metadata.get("modelspec.title"))
    if _PLACEHOLDER_TITLE.match(title):
        title = ""
    fields = {
        "name": title or clean_text(metadata.get("ss_output_name"))
                or clean_text(metadata.get("ssmd_display_name")),
        "base_model": clean_text(metadata.get("modelspec.architecture"))
                      or clean_text(metadata.get("ss_base_model_version")),
        "trigger_words": word_list(metadata.get("modelspec.trigger_phrase", ""), split=","),
        "description": clean_text(metadata.get("modelspec.description")),
        "author": clean_text(metadata.get("modelspec.author")),
        "tags": word_list(metadata.get("modelspec.tags", ""), split=","),
        "resolution": _resolution(metadata),
        "network_module": clean_text(metadata.get("ss_network_module")),
        "network_dim": clean_text(metadata.get("ss_network_dim")),
        "network_alpha": clean_text(metadata.get("ss_network_alpha")),
        "base_checkpoint": clean_text(metadata.get("ss_sd_model_name")),
        "thumbnail": _thumbnail_key(metadata),
    }
    result = {key: value for key, value in fields.items() if value}
    if any(key.startswith("ss_") for key in metadata):
        result["kohya"] = True
        result["ss_v2"] = clean_text(metadata.get("ss_v2")).lower() == "true"
    return result


def stored_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """The raw map as kept for the panel: huge values (embedded images) replaced by a note."""
    return {
        key: (value if len(value) <= STORED_VALUE_CHARS
              else f"<{len(value)} characters, not stored>")
        for key, value in metadata.items()
    }


def thumbnail_bytes(path: str | os.PathLike, key: str) -> bytes | None:
    """Decode the embedded picture named by ``key`` (a data URL or base64 cover) from the header."""
    import base64
    import binascii

    try:
        metadata = read_header(path).metadata
    except (HeaderError, OSError):
        return None
    value = metadata.get(key)
    if key == "ssmd_cover_images":
        covers = nested_json(value)
        value = covers[0] if isinstance(covers, list) and covers else None
    if not isinstance(value, str):
        return None
    if value.startswith("data:"):
        value = value.split(",", 1)[-1]
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        return None
