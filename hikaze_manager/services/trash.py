"""Model files moved to a trash folder at the root of their model folder, restorable for a while.

A file is only ever renamed (same file system: a 10 GB file costs nothing), never copied or
unlinked on request; expired entries are purged. Each entry is a folder holding the moved files
and ``entry.json``, written before anything moves, so an interrupted move is still listed and can
be restored. Paths come from the request and are checked against the configured model folders.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import stat as stat_module
import time
from pathlib import Path

from ..errors import BadRequest, Conflict, NotFound
from .files import write_file_atomic
from .model_types import ModelTypeIndex

TRASH_DIR_NAME = ".hikaze-trash"
MANIFEST = "entry.json"
ENTRY_ID_RE = re.compile(r"[0-9]{10,20}-[0-9a-f]{8}\Z")
# Files other tools keep next to a model, named after its stem.
SIDECAR_SUFFIXES = (
    ".civitai.info", ".metadata.json", ".cm-info.json", ".json", ".info", ".md", ".txt",
    ".yaml", ".preview.png", ".preview.jpg", ".preview.jpeg", ".preview.webp", ".preview.gif",
    ".png", ".jpg", ".jpeg", ".webp", ".gif",
)


def model_roots(index: ModelTypeIndex) -> list[str]:
    """Real paths of every configured model folder, deepest first."""
    roots = {os.path.realpath(os.path.expanduser(r)) for t in index.types.values() for r in t.roots}
    return sorted(roots, key=len, reverse=True)


def _root_of(real_path: str, roots: list[str], allow_root: bool = False) -> str | None:
    for root in roots:
        try:
            if os.path.commonpath((root, real_path)) == root and (allow_root or real_path != root):
                return root
        except ValueError:
            continue
    return None


def check_model_file(path: str, index: ModelTypeIndex) -> tuple[str, str]:
    """``(real path, model root)`` of a client-sent path to a regular file inside a model folder."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise BadRequest("path: invalid")
    absolute = os.path.normpath(os.path.abspath(os.path.expanduser(path)))
    try:
        st = os.lstat(absolute)
    except OSError:
        raise NotFound("path: no such file") from None
    if stat_module.S_ISLNK(st.st_mode):
        raise BadRequest("path: is a symbolic link; only the file it points to can be deleted")
    if not stat_module.S_ISREG(st.st_mode):
        raise BadRequest("path: not a regular file")
    real = os.path.realpath(absolute)
    root = _root_of(real, model_roots(index))
    if root is None:
        raise BadRequest("path: must be a file inside one of the model folders")
    if TRASH_DIR_NAME in Path(os.path.relpath(real, root)).parts:
        raise BadRequest("path: is already in the trash")
    return real, root


def sidecars(model_path: str) -> list[str]:
    """Regular files next to the model named ``<stem><sidecar suffix>`` (never symbolic links)."""
    folder, name = os.path.split(model_path)
    stem = os.path.splitext(name)[0]
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        if entry.name == name or not entry.name.startswith(stem + "."):
            continue
        if entry.name[len(stem):].lower() in SIDECAR_SUFFIXES and \
                entry.is_file(follow_symlinks=False):
            found.append(entry.path)
    return sorted(found)


def trash_file(path: str, confirm: str, index: ModelTypeIndex, sha256: str | None = None) -> dict:
    """Move a model file and its sidecars into ``<model root>/.hikaze-trash/<entry>/``."""
    real, root = check_model_file(path, index)
    if confirm != os.path.basename(real) and confirm != os.path.basename(path):
        raise BadRequest("confirm: must be the file's name, " + os.path.basename(real))
    files = [real, *sidecars(real)]
    trash = Path(root) / TRASH_DIR_NAME
    trash.mkdir(exist_ok=True)
    if os.stat(trash).st_dev != os.stat(real).st_dev:
        raise Conflict("the trash folder is on another file system; nothing was moved")
    entry_id = f"{time.time_ns()}-{secrets.token_hex(4)}"
    entry = trash / entry_id
    entry.mkdir()
    manifest = {
        "id": entry_id, "root": root, "path": real, "sha256": sha256,
        "trashed_at": int(time.time() * 1000), "size_bytes": os.stat(real).st_size,
        "files": [{"name": f"{i}-{os.path.basename(f)}", "original": f} for i, f in enumerate(files)],
    }
    write_file_atomic(entry / MANIFEST, json.dumps(manifest, ensure_ascii=False).encode())
    moved = []
    try:
        for item in manifest["files"]:
            os.rename(item["original"], entry / item["name"])
            moved.append(item)
    except OSError as exc:
        for item in reversed(moved):  # put back what moved; the file stays where it was
            os.rename(entry / item["name"], item["original"])
        shutil.rmtree(entry, ignore_errors=True)
        if exc.errno == errno.EXDEV:
            raise Conflict("the trash folder is on another file system; nothing was moved") from None
        raise Conflict(f"could not move {item['original']!r}: {exc.strerror}; nothing was moved") \
            from None
    return _describe(manifest, entry)


def _describe(manifest: dict, entry: Path) -> dict:
    return {
        "id": manifest["id"], "path": manifest["path"], "sha256": manifest.get("sha256"),
        "trashed_at": manifest["trashed_at"], "size_bytes": manifest.get("size_bytes", 0),
        "files": [i["original"] for i in manifest["files"] if (entry / i["name"]).exists()],
    }


def _entries(index: ModelTypeIndex):
    for root in model_roots(index):
        trash = Path(root) / TRASH_DIR_NAME
        try:
            names = os.listdir(trash)
        except OSError:
            continue
        for name in names:
            entry = trash / name
            if not ENTRY_ID_RE.match(name) or entry.is_symlink() or not entry.is_dir():
                continue
            try:
                manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(manifest, dict) and manifest.get("id") == name:
                yield entry, manifest


def list_trash(index: ModelTypeIndex, retention_days: float) -> dict:
    """Entries still restorable, newest first; expired or empty ones are purged on the way."""
    now = time.time() * 1000
    keep, purged = [], 0
    for entry, manifest in _entries(index):
        described = _describe(manifest, entry)
        expired = now - float(manifest.get("trashed_at", 0)) > retention_days * 86_400_000
        if expired or not described["files"]:
            shutil.rmtree(entry, ignore_errors=True)
            purged += 1
            continue
        described["expires_at"] = int(manifest["trashed_at"] + retention_days * 86_400_000)
        keep.append(described)
    keep.sort(key=lambda e: -e["trashed_at"])
    return {"entries": keep, "purged": purged, "retention_days": retention_days}


def restore(entry_id: str, index: ModelTypeIndex) -> dict:
    """Move an entry's files back where they were; 409 if a file of that name is there now."""
    if not ENTRY_ID_RE.match(entry_id or ""):
        raise BadRequest("id: not a trash entry id")
    for entry, manifest in _entries(index):
        if manifest["id"] != entry_id:
            continue
        items = [i for i in manifest["files"] if (entry / i["name"]).exists()]
        roots = model_roots(index)
        for item in items:
            original = item["original"]
            if _root_of(os.path.realpath(os.path.dirname(original)), roots, allow_root=True) is None:
                raise BadRequest(f"{original!r} is no longer inside a model folder")
            if os.path.lexists(original):
                raise Conflict(f"{original!r} exists again; move it away first")
        described = _describe(manifest, entry)
        for item in items:
            os.makedirs(os.path.dirname(item["original"]), exist_ok=True)
            os.rename(entry / item["name"], item["original"])
        shutil.rmtree(entry, ignore_errors=True)
        return described
    raise NotFound("no such trash entry")
