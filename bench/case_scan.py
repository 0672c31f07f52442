"""Scan of a models tree of 20,000 files: our walk and a no-change rescan vs ``find -printf`` (perf-anchors 4).

Tree: 20,000 files in 200 folders (12,000 .safetensors/.ckpt/.pt, the rest .txt/.png/.json).
Per round, rotated: ``find`` (the peer, including process start), ``walk`` =
``services.scan.walk_models``, ``rescan`` = ``scan_models`` on the unchanged tree whose 12,000
files are all pending already (walk + DB diff; nothing inserted, nothing hashed).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.common import Context, Row, rotate
from hikaze_manager.db import connection, upgrades
from hikaze_manager.services import hashing, scan
from hikaze_manager.services.model_types import index_from_mapping

FOLDERS, PER_FOLDER = 200, 100
MODEL_EXTS = (".safetensors", ".ckpt", ".pt")
OTHER_EXTS = (".txt", ".png", ".json")


def make_tree(root: Path) -> None:
    marker = root / ".complete"
    if marker.exists():
        return
    for f in range(FOLDERS):
        folder = root / f"group{f // 20:02d}" / f"folder{f:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(PER_FOLDER):
            ext = MODEL_EXTS[i % 3] if i < 60 else OTHER_EXTS[i % 3]
            (folder / f"file{i:03d}{ext}").write_bytes(b"x" * (i + 1))
    marker.write_text("ok")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run(ctx: Context) -> list[Row]:
    base = ctx.work / "scan"
    root = base / "models"
    make_tree(root)
    index = index_from_mapping({"checkpoints": {"roots": [str(root)], "extensions": list(MODEL_EXTS)}})
    db_path = base / "bench.db"
    with connection(db_path) as conn:
        upgrades.apply(conn, base / "backups")
        report = scan.scan_models(conn, index)
    assert report["added"] == FOLDERS * 60, report
    find_cmd = ["find", str(root), "-type", "f", "(", "-name", "*.safetensors", "-o", "-name",
                "*.ckpt", "-o", "-name", "*.pt", ")", "-printf", "%s %T@ %p\n"]
    hashed_before = hashing.STATS.files
    times: dict[str, list[float]] = {"find": [], "walk": [], "rescan": []}
    with connection(db_path) as conn:
        variants = {
            "find": lambda: subprocess.run(find_cmd, check=True, capture_output=True).stdout.count(b"\n"),
            "walk": lambda: len(list(scan.walk_models(index, scan.WalkStats()))),
            "rescan": lambda: scan.scan_models(conn, index),
        }
        for r in range(ctx.rounds + 1):
            for name in rotate(list(variants), r):
                seconds, result = timed(variants[name])
                if name == "rescan":
                    assert result["added"] == 0 and result["skipped"] == FOLDERS * 60, result
                else:
                    assert result == FOLDERS * 60, (name, result)
                if r:  # round 0 warms up
                    times[name].append(seconds)
    assert hashing.STATS.files == hashed_before, "a no-change rescan must not hash"
    return [
        Row("scan: walk 20k files vs find -printf", times["walk"], "ms", "<=", 1.2,
            baseline=times["find"]),
        Row("scan: no-change rescan vs walk", times["rescan"], "ms", "<=", 3.0,
            baseline=times["walk"]),
    ]
