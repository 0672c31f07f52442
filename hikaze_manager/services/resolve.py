"""Where a loader node's model file is: the stored path, the model folders, or the same content
(by SHA-256) somewhere the library knows of; and whether that file really is a model file.

No ComfyUI and no Flask here: comfy_node passes in the folder list and a library connection.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from ..db import errors as db_errors
from .hashing import FileIdentity, cached_sha256, sha256_file
from .load_cache import file_key

logger = logging.getLogger(__name__)

# ComfyUI's folder_paths.supported_pt_extensions: what comfy.utils.load_torch_file can open.
MODEL_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})
SAFETENSORS_EXTENSIONS = frozenset({".safetensors", ".sft"})
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL = 0x80
SHA256_HEX = frozenset("0123456789abcdef")
SAFETENSORS_HEADER_MAX = 100 * 1024 * 1024  # the safetensors library's own limit


class ModelFileError(ValueError):
    """The chosen file cannot be loaded; the message names the node entry and the file."""

    __module__ = "hikaze"  # ComfyUI shows module + name as the error type


class ModelNotFoundError(FileNotFoundError):
    """No file with the model's path or content is known; the message names model and hash."""

    __module__ = "hikaze"


@dataclass(frozen=True)
class Resolved:
    """A model file to load and how it was found (``path``, ``folder`` or ``hash``)."""

    path: str
    found_by: str


def is_sha256(value: str) -> bool:
    """True for 64 lower-case hex digits."""
    return len(value) == 64 and set(value) <= SHA256_HEX


def find_in_folders(relative: str, roots: Iterable[str]) -> str | None:
    """The first existing ``root/relative`` (sub-folders allowed, never outside the root)."""
    relative = relative.replace("\\", "/").lstrip("/")
    if not relative:
        return None
    for root in roots:
        root = os.path.abspath(root)
        candidate = os.path.normpath(os.path.join(root, relative))
        try:
            inside = os.path.commonpath([root, candidate]) == root
        except ValueError:  # Windows: "D:x" joined to a C: root lands on another drive
            inside = False
        if not inside:
            continue  # "../" may not leave the model folder
        if os.path.isfile(candidate):
            return candidate
    return None


def hash_candidates(conn: sqlite3.Connection, sha256: str) -> list[str]:
    """Paths the library has seen with this content: the library entry first, then the scan's."""
    queries = (
        "SELECT path FROM models WHERE sha256 = ?",
        "SELECT path FROM file_hashes WHERE sha256 = ? ORDER BY hashed_at DESC",
        "SELECT path FROM pending_import WHERE sha256 = ? ORDER BY created_at DESC",
    )
    paths: list[str] = []
    for query in queries:
        try:
            rows = conn.execute(query, (sha256,)).fetchall()
        except db_errors.OperationalError as exc:
            if "no such table" not in str(exc):
                raise  # locked or unreadable: the caller says so instead of "not known"
            continue  # an older library without that table (SQLite: a PostgreSQL one has all)
        paths.extend(row[0] for row in rows if row[0] and row[0] not in paths)
    return paths


# Digests this process computed to verify a candidate, by the file's state (load_cache.file_key:
# size, mtime, inode, ctime): the node opens the library read-only, so they are not stored there,
# and each run would otherwise hash again.
_verified: dict[tuple, str] = {}
VERIFIED_MAX = 256


def _has_content(conn: sqlite3.Connection, path: str, sha256: str) -> bool:
    """True if ``path`` holds ``sha256`` now: by its unchanged ``file_hashes`` row, else re-hashed."""
    try:
        st = os.stat(path)
        state = file_key(path)
    except OSError:
        return False
    if cached_sha256(conn, path, FileIdentity.of(st)) == sha256:
        return True
    known = _verified.get(state)
    if known is not None:
        return known == sha256
    logger.info("[Hikaze] checking the content of %s", path)
    try:
        digest, _ = sha256_file(path)  # raises FileChangedError if it changed while being read
    except OSError:
        return False
    if len(_verified) >= VERIFIED_MAX:
        _verified.clear()
    _verified[state] = digest
    return digest == sha256


def find_by_hash(conn: sqlite3.Connection, sha256: str, skip: str = "") -> str | None:
    """An existing file the library knows with this content (checked, not just remembered)."""
    for path in hash_candidates(conn, sha256):
        if path == skip or not os.path.isfile(path):
            continue
        if _has_content(conn, path, sha256):
            return path
        logger.info("[Hikaze] %s no longer holds %s; not used", path, sha256)
    return None


def locate(path: str, sha256: str, roots: Iterable[str], library: sqlite3.Connection | None):
    """Resolve a payload path: as given (absolute), in the model folders (relative), then by hash.

    Returns a :class:`Resolved` or None when no file with that path or content is known.
    """
    path = os.path.expanduser(path.strip())
    if os.path.isabs(path):
        if os.path.isfile(path):
            return Resolved(os.path.abspath(path), "path")
    else:
        found = find_in_folders(path, roots)
        if found:
            return Resolved(found, "folder")
    if library is not None and is_sha256(sha256):
        found = find_by_hash(library, sha256, skip=path)
        if found:
            return Resolved(found, "hash")
    return None


def model_file_problem(path: str) -> str | None:
    """Why ``path`` is not a loadable model file (wrong type, no valid header), or None."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in MODEL_EXTENSIONS:
        return f"'{extension or 'no extension'}' is not a model file type"
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            head = file.read(9)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if extension in SAFETENSORS_EXTENSIONS:
        if len(head) < 9:
            return "it is too short for a safetensors file"
        (header_size,) = struct.unpack("<Q", head[:8])
        if header_size > min(size - 8, SAFETENSORS_HEADER_MAX) or head[8:9] != b"{":
            return "it has no safetensors header"
        return _safetensors_problem(path, header_size, size)
    if head.startswith(ZIP_MAGIC) or (head[:1] and head[0] == PICKLE_PROTOCOL):
        return None
    return "it is neither a PyTorch archive nor a pickle"


def _safetensors_problem(path: str, header_size: int, size: int) -> str | None:
    """Why a safetensors file with a plausible header is still unusable (bad JSON, cut short)."""
    try:
        with open(path, "rb") as file:
            file.seek(8)
            header = json.loads(file.read(header_size))
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    except ValueError:
        return "its safetensors header is not valid JSON"
    if not isinstance(header, dict):
        return "its safetensors header is not valid JSON"
    end = 0
    for name, tensor in header.items():
        offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
        if name == "__metadata__" or not isinstance(offsets, list) or len(offsets) != 2:
            continue
        if all(isinstance(o, int) for o in offsets):
            end = max(end, *offsets)
    expected = 8 + header_size + end
    if size < expected:
        return f"it is truncated ({size} of {expected} bytes; an unfinished download or copy?)"
    return None
