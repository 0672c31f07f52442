"""SHA-256: scan + import of one new large file vs hashlib over the same bytes in memory; 2 files on 2 cores.

* one file: ``scan_models`` then ``promote_pending`` of a new file (page cache warm), wall time
  of both together, against ``hashlib.sha256`` over the same bytes already in memory (1 MiB
  slices, the CPU limit); the file must be hashed exactly once (``hashing.STATS``);
* two files: ``hashing.hash_files`` with 2 workers vs 1 worker on the same two files.

AutoV3 (the safetensors hash another engineer adds for metadata) belongs in the same pass:
``sha256_file`` already reads every byte once into one buffer; feed a second ``hashlib.sha256``
with the part of each chunk past ``8 + header_length`` (known from the first 8 bytes) inside the
same ``readinto`` loop, so the file is read once and only the SHA CPU doubles.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
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
    if path.exists() and path.stat().st_size == size:
        return
    with open(path, "wb") as fh:
        for _ in range(size // (64 * MIB)):
            fh.write(os.urandom(64 * MIB))
        fh.write(os.urandom(size % (64 * MIB)))


def memory_hash(data: memoryview) -> str:
    digest = hashlib.sha256()
    for offset in range(0, len(data), MIB):
        digest.update(data[offset : offset + MIB])
    return digest.hexdigest()


def cache_conn() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(
        "CREATE TABLE file_hashes (path TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL,"
        " mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, hashed_at INTEGER NOT NULL)"
    )
    return conn


def scan_and_import(root: Path, data: Path) -> None:
    """A fresh data folder, a scan that finds the one file, and its promotion into the library."""
    data.mkdir()
    index = index_from_mapping({"loras": {"roots": [str(root)]}})
    with connection(data / "db.sqlite") as conn:
        upgrades.apply(conn, data / "backups")
        report = scan_models(conn, index)
        assert report["added"] == 1, report
        ids = [row[0] for row in conn.execute("SELECT id FROM pending_import")]
        result = promote_pending(conn, ids, None, ImageStore(data / "images", data / "pending"))
        assert conn.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 1, result


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
    one, memory, pool1, pool2 = [], [], [], []

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
                before = hashing.STATS.bytes
                one.append(timed(lambda: scan_and_import(root, target)))
                assert hashing.STATS.bytes - before == size, "the file must be hashed exactly once"
            elif step == "memory":
                memory.append(timed(lambda: memory_hash(data)))
            elif step == "pool1":
                pool1.append(timed(lambda: pool(1)))
            else:
                pool2.append(timed(lambda: pool(2)))
    mb = size / 1e6
    return [
        # speeds (MB/s): higher is better, so the ratio is ours / memory in speed terms
        Row(f"hash {size // MIB} MiB: scan + import vs hashlib in memory (speed)",
            [mb / t for t in one], "MB/s", ">=", 0.9, baseline=[mb / t for t in memory]),
        Row("hash 2 files: 2 workers vs 1 (speed)", [2 * mb / t for t in pool2], "MB/s", ">=", 1.7,
            baseline=[2 * mb / t for t in pool1]),
    ]
