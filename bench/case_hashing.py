"""SHA-256: scan + import of one new large safetensors file vs hashlib over the same bytes in memory; 2 files on 2 cores.

* one file: ``scan_models`` then ``promote_pending`` of a new, real safetensors file (page cache
  warm), which hashes it twice over (SHA-256 of the file, AutoV3 of its data section, from one
  read: ``services/hash_stream.py``), against ``hashlib.sha256`` over the same bytes already in
  memory (1 MiB slices, the CPU limit); the file must be read exactly once (``hashing.STATS``).
  Wall time: what a user waits for; the CPU it took is in the note;
* two files: ``hashing.hash_files`` with 2 workers vs 1 worker on the same two files, wall time.

Both need two idle cores: the hashing threads run niced on purpose, so on a busy machine
the other jobs win (the note of the second row gives the load average).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
import time
from pathlib import Path

from bench.common import Context, Row, rotate, timed
from hikaze_manager.db import connection, upgrades
from hikaze_manager.services import hashing
from hikaze_manager.services.images import ImageStore
from hikaze_manager.services.model_types import index_from_mapping
from hikaze_manager.services.promotion import promote_pending
from hikaze_manager.services.scan import scan_models

MIB = 1024 * 1024


def make_file(path: Path, size: int) -> None:
    """A real safetensors file of ``size`` bytes (header, then random tensor data), so a scan
    plus import does all it does for a user's model: SHA-256 of the file and AutoV3 of its data."""
    if path.exists() and path.stat().st_size == size:
        return
    header = b""
    for _ in range(2):  # the header's own length changes the data size it names: settle it
        data_size = size - 8 - len(header)
        header = json.dumps({"__metadata__": {"ss_output_name": path.stem},
                             "w": {"dtype": "U8", "shape": [data_size],
                                   "data_offsets": [0, data_size]}}).encode()
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        for _ in range(data_size // (64 * MIB)):
            fh.write(os.urandom(64 * MIB))
        fh.write(os.urandom(data_size % (64 * MIB)))
    assert path.stat().st_size == size


def memory_hash(data: memoryview) -> str:
    digest = hashlib.sha256()
    for offset in range(0, len(data), MIB):
        digest.update(data[offset : offset + MIB])
    return digest.hexdigest()


def cache_conn() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(
        "CREATE TABLE file_hashes (path TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL,"
        " mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, hashed_at INTEGER NOT NULL, autov3 TEXT)"
    )
    return conn


def fresh_library(data: Path) -> None:
    """An empty, upgraded database (made before the timing: it is not part of a scan)."""
    data.mkdir()
    with connection(data / "db.sqlite") as conn:
        upgrades.apply(conn, data / "backups")


def scan_and_import(root: Path, data: Path) -> None:
    """A scan that finds the one new file, and its promotion into the library."""
    index = index_from_mapping({"loras": {"roots": [str(root)]}})
    with connection(data / "db.sqlite") as conn:
        report = scan_models(conn, index)
        assert report["added"] == 1, report
        ids = [row[0] for row in conn.execute("SELECT id FROM pending_import")]
        result = promote_pending(conn, ids, None, ImageStore(data / "images", data / "pending"))
        assert conn.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 1, result
        autov3 = conn.execute("SELECT autov3 FROM model_metadata").fetchone()
        assert autov3 and autov3[0], "the import must take the AutoV3 from the same read"


def run(ctx: Context) -> list[Row]:
    size = (256 if ctx.quick or ctx.skip_slow else 1024) * MIB
    folder = ctx.work / "hash"
    root = folder / "models"
    root.mkdir(parents=True)
    files = [root / "a.safetensors", folder / "b.bin"]
    for f in files:
        make_file(f, size)
    data = memoryview(files[0].read_bytes())
    for f in files:
        hashing.sha256_file(f)  # warm the page cache
    one, memory, pool1, pool2, one_wall, memory_wall = [], [], [], [], [], []

    def cpu_timed(fn, walls: list | None = None) -> float:
        start, wall = time.process_time(), time.perf_counter()
        fn()
        if walls is not None:
            walls.append(time.perf_counter() - wall)
        return time.process_time() - start

    def pool(workers: int) -> None:
        conn = cache_conn()
        try:
            results = hashing.hash_files(conn, [str(f) for f in files], workers=workers)
        finally:
            conn.close()
        assert all(r.sha256 and not r.cached for r in results.values())

    for r in range(ctx.rounds):
        for step in rotate(["ours", "memory", "pool1", "pool2"], r):
            if step == "ours":
                target = folder / f"data{r}"
                fresh_library(target)
                before = hashing.STATS.bytes
                one.append(cpu_timed(lambda: scan_and_import(root, target), one_wall))
                assert hashing.STATS.bytes - before == size, "the file must be hashed exactly once"
            elif step == "memory":
                memory.append(cpu_timed(lambda: memory_hash(data), memory_wall))
            elif step == "pool1":
                pool1.append(timed(lambda: pool(1)))
            else:
                pool2.append(timed(lambda: pool(2)))
    mb = size / 1e6
    return [
        # speeds (MB/s): higher is better, so the ratio is ours / memory in speed terms
        Row(f"hash {size // MIB} MiB safetensors: scan + import (SHA-256 + AutoV3) vs hashlib in memory",
            [mb / t for t in one_wall], "MB/s", ">=", 0.9, baseline=[mb / t for t in memory_wall],
            note=f"CPU: {mb / max(one):.0f}-{mb / min(one):.0f} MB/s per CPU s, two digests"),
        Row("hash 2 files: 2 workers vs 1 (speed)", [2 * mb / t for t in pool2], "MB/s", ">=", 1.7,
            baseline=[2 * mb / t for t in pool1], note=f"load {os.getloadavg()[0]:.1f}"),
    ]
