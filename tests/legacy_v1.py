"""Build Hikaze Model Manager v1 databases for tests (reference-behaviour.md section 7.7).

A plain helper module: ``import legacy_v1`` works from tests/ (pytest's rootdir import mode).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

V1_DDL = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE directories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    alias TEXT,
    parent_id INTEGER REFERENCES directories(id)
);
CREATE TABLE models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    name TEXT,
    type TEXT NOT NULL,
    size_bytes INTEGER,
    hash_hex TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    meta_json TEXT,
    extra_json TEXT
);
CREATE INDEX idx_models_hash ON models(hash_hex);
CREATE INDEX idx_models_type ON models(type);
CREATE INDEX idx_models_path ON models(path);
CREATE TABLE tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    color TEXT,
    created_at INTEGER
);
CREATE TABLE model_tags (
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    tag_id INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (model_id, tag_id)
);
"""
SYSTEM_TAGS = ["checkpoint", "lora", "embedding", "vae", "upscale", "ultralytics", "other"]
FOLDERS = ["checkpoints", "loras", "vae", "embeddings", "upscale_models", "controlnet", "clip",
           "unet", "ultralytics"]
EXTENSIONS = [".safetensors", ".ckpt", ".pth", ".pt", ".bin"]
USER_TAGS = ["nsfw", "anime", "style", "character", "anime style"]
_UNSET = object()


def image_bytes(size=(64, 48), mode="RGB", fmt="PNG", color=None) -> bytes:
    """A real image made with Pillow."""
    if mode == "P":
        im = Image.new("RGB", size, color or (200, 30, 30)).convert("P", palette=Image.ADAPTIVE)
    else:
        im = Image.new(mode, size, color or {"RGBA": (10, 200, 30, 120)}.get(mode, (30, 60, 200)))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class V1Model:
    """What a test needs to know about one generated row."""

    id: int
    path: str
    name: str
    type: str
    hash_hex: str
    size_bytes: int
    created_at: int
    extra: object
    tags: list[str]
    image_file: str | None = None
    image_data: bytes | None = None


@dataclass
class V1Library:
    """A v1 ``data`` folder: ``hikaze_mm.sqlite3`` plus ``images/``, written like v1 writes it."""

    data_dir: Path
    base_ms: int = 1699990000000
    models: list[V1Model] = field(default_factory=list)

    def __post_init__(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.images_dir.mkdir(exist_ok=True)
        self.conn = sqlite3.connect(self.db_path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(V1_DDL)
        self.conn.execute("INSERT INTO schema_version(version) VALUES (2)")
        for name in SYSTEM_TAGS:
            self.tag(name, created_at=self.base_ms)
        self._clock = self.base_ms + 1000

    @property
    def db_path(self) -> Path:
        return self.data_dir / "hikaze_mm.sqlite3"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    def _tick(self) -> int:
        self._clock += 7
        return self._clock

    def tag(self, name: str, created_at: int | None = None, color: str | None = None) -> int:
        """Upsert a tag as v1 does (names lower-case and trimmed); returns its id."""
        self.conn.execute(
            "INSERT OR IGNORE INTO tags(name, color, created_at) VALUES (?, ?, ?)",
            (name, color, created_at or self._tick()),
        )
        return self.conn.execute("SELECT id FROM tags WHERE name = ?", (name,)).fetchone()[0]

    def add_model(self, path: str, *, type: str | None = None, hash_hex: str = "",
                  extra=_UNSET, extra_raw: str | None = None, tags=(), image: bytes | None = None,
                  image_missing: bool = False, size_bytes: int = 123456,
                  name: str | None = None) -> V1Model:
        """Insert a model row, its type tag plus ``tags``, and optionally a real image file."""
        if type is None:
            parts = path.replace("\\", "/").split("/")
            type = parts[-2].lower() if len(parts) > 1 else "other"
        name = name if name is not None else path.replace("\\", "/").rsplit("/", 1)[-1]
        created_at = self._tick()
        cur = self.conn.execute(
            "INSERT INTO models(path, name, type, size_bytes, hash_hex, created_at, meta_json,"
            " extra_json) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
            (path, name, type, size_bytes, hash_hex, created_at),
        )
        model_id = cur.lastrowid
        extra_obj = {} if extra is _UNSET else extra
        image_file = None
        if image is not None or image_missing:
            safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) + ".png"
            image_file = f"model_{model_id}_{self._tick()}_{safe}"
            if image is not None:
                (self.images_dir / image_file).write_bytes(image)
            extra_obj = dict(extra_obj) if isinstance(extra_obj, dict) else {}
            extra_obj["images"] = [f"/media/{image_file}"]
        if extra_raw is not None:
            text = extra_raw
        elif extra is _UNSET and image_file is None:
            text = None
        else:
            text = json.dumps(extra_obj, ensure_ascii=False)
        self.conn.execute("UPDATE models SET extra_json = ? WHERE id = ?", (text, model_id))
        all_tags = [type, *tags]
        for tag_name in dict.fromkeys(all_tags):
            self.conn.execute(
                "INSERT OR IGNORE INTO model_tags(model_id, tag_id) VALUES (?, ?)",
                (model_id, self.tag(tag_name)),
            )
        model = V1Model(model_id, path, name, type, hash_hex, size_bytes, created_at,
                        extra_obj if extra_raw is None else extra_raw, list(dict.fromkeys(all_tags)),
                        image_file, image)
        self.models.append(model)
        return model

    def close(self) -> None:
        """Close like v1 does: the last connection checkpoints and removes -wal/-shm."""
        self.conn.close()

    def copy_live(self, dest_dir: Path, *, with_shm: bool = True) -> Path:
        """Copy the files while v1 still has the DB open: a WAL file with unsaved pages."""
        dest_dir.mkdir(parents=True, exist_ok=True)
        suffixes = ["", "-wal"] + (["-shm"] if with_shm else [])
        for suffix in suffixes:
            shutil.copyfile(f"{self.db_path}{suffix}", dest_dir / f"hikaze_mm.sqlite3{suffix}")
        if self.images_dir.is_dir():
            shutil.copytree(self.images_dir, dest_dir / "images", dirs_exist_ok=True)
        return dest_dir / "hikaze_mm.sqlite3"


def make_realistic_library(data_dir: Path, n: int = 24, seed: int = 7) -> V1Library:
    """A random but realistic v1 library following the 7.7 recipe (connection left open)."""
    rng = random.Random(seed)
    lib = V1Library(data_dir, base_ms=1699990000000 + seed * 1_000_003)
    for tag_name in USER_TAGS:
        lib.tag(tag_name)
    roots = ["/opt/ComfyUI/models", "/home/u/extra"]
    for i in range(n):
        root = rng.choice(roots)
        folder = rng.choice(FOLDERS)
        sub = rng.choice(["", "sdxl/", "sd15/"])
        path = f"{root}/{folder}/{sub}model_{i}{rng.choice(EXTENSIONS)}"
        model_type = folder if root.startswith("/opt") else {"loras": "lora"}.get(folder, folder)
        content = f"model {seed} {i}".encode()
        hash_hex = sha256_of(content) if rng.random() < 0.5 else ""
        extra = _UNSET
        image = None
        if rng.random() < 0.5:
            extra = {}
            if rng.random() < 0.6:
                extra["description"] = rng.choice(["desc", "中文描述", "a\nmultiline one"]) + f" {i}"
            if rng.random() < 0.4:
                extra["community_links"] = f"https://civitai.com/models/{i}"
            if rng.random() < 0.5:
                extra["prompts"] = {"positive": f"pos {i}", "negative": f"neg {i}"}
            if rng.random() < 0.6:
                image = image_bytes((32 + i, 24 + i), rng.choice(["RGB", "RGBA", "P"]))
        tags = rng.sample(USER_TAGS, rng.randint(0, 2))
        lib.add_model(path, type=model_type, hash_hex=hash_hex, extra=extra, tags=tags,
                      image=image, size_bytes=rng.randint(10**6, 7 * 10**9))
    return lib


def file_state(*paths: Path) -> dict:
    """Bytes hash and mtime of each path that exists (to prove nothing was touched)."""
    state = {}
    for path in paths:
        if os.path.lexists(path):
            st = os.stat(path)
            state[str(path)] = (st.st_size, st.st_mtime_ns, sha256_of(Path(path).read_bytes()))
    return state
