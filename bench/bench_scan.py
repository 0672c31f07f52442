"""Scan benchmark: our walk and a full no-change rescan vs `find -printf` in the same run (perf-anchors 4).

Tree: 20,000 files in 200 folders (12,000 .safetensors/.ckpt/.pt, the rest .txt/.png/.json),
generated once under $HIKAZE_BENCH_DIR (default: the temp folder). Per round, interleaved:
  * find    = `find ROOT -type f ( -name *.safetensors -o ... ) -printf '%s %T@ %p\\n'` (peer,
              including process start)
  * floor   = the bare recursive os.scandir + entry.stat() loop (what Python can do at best)
  * walk    = services.scan.walk_models (recursive os.scandir + one stat per model file)
  * rescan  = services.scan.scan_models on an unchanged tree whose 12,000 files are all pending
              already (walk + DB diff; nothing inserted, nothing hashed)
Run: python bench/bench_scan.py [rounds]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hikaze_manager.db import connection, upgrades  # noqa: E402
from hikaze_manager.services import hashing, scan  # noqa: E402
from hikaze_manager.services.model_types import index_from_mapping  # noqa: E402

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


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    base = Path(os.environ.get("HIKAZE_BENCH_DIR", tempfile.gettempdir())) / "hikaze-bench-scan"
    root = base / "models"
    make_tree(root)
    index = index_from_mapping({"checkpoints": {"roots": [str(root)], "extensions": list(MODEL_EXTS)}})
    db_path = base / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    with connection(db_path) as conn:
        upgrades.apply(conn, base / "backups")
        first_time, report = timed(lambda: scan.scan_models(conn, index))
    assert report["added"] == FOLDERS * 60, report

    find_cmd = ["find", str(root), "-type", "f", "(", "-name", "*.safetensors", "-o", "-name",
                "*.ckpt", "-o", "-name", "*.pt", ")", "-printf", "%s %T@ %p\n"]

    def run_find():
        return subprocess.run(find_cmd, check=True, capture_output=True).stdout.count(b"\n")

    def run_floor():  # the least Python can do: perf-anchors' "os.scandir recursive + entry.stat()"
        out, stack = [], [str(root)]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir():
                        stack.append(entry.path)
                        continue
                    name = entry.name
                    dot = name.rfind(".")
                    if dot > 0 and name[dot:].lower() in MODEL_EXTS:
                        st = entry.stat()
                        out.append((entry.path, st.st_size, st.st_mtime_ns))
        return len(out)

    def run_walk():
        return len(list(scan.walk_models(index, scan.WalkStats())))

    hashed_before = hashing.STATS.files
    times: dict[str, list[float]] = {"find": [], "floor": [], "walk": [], "rescan": []}
    with connection(db_path) as conn:
        variants = {"find": run_find, "floor": run_floor, "walk": run_walk,
                    "rescan": lambda: scan.scan_models(conn, index)}
        for r in range(rounds + 1):
            names = list(variants)
            names = names[r % len(names):] + names[: r % len(names)]
            for name in names:
                seconds, result = timed(variants[name])
                if name == "rescan":
                    assert result["added"] == 0 and result["skipped"] == FOLDERS * 60, result
                else:
                    assert result == FOLDERS * 60, (name, result)
                if r:  # round 0 warms up
                    times[name].append(seconds)
    assert hashing.STATS.files == hashed_before, "a no-change rescan must not hash"

    def ratio(a: str, b: str):
        values = [times[a][i] / times[b][i] for i in range(rounds)]
        return statistics.median(values), min(values), max(values)

    print(f"{FOLDERS * PER_FOLDER} files, {FOLDERS * 60} models, {rounds} rounds, "
          f"load {os.getloadavg()[0]:.2f}; first scan (12k inserts) {first_time * 1000:.0f} ms")
    for name, values in times.items():
        print(f"  {name:7s} {statistics.median(values) * 1000:7.1f} ms "
              f"({min(values) * 1000:.1f}-{max(values) * 1000:.1f})")
    print("time ratios (median of per-round ratios, min-max); target in brackets:")
    for a, b, target in (("walk", "find", "<= 1.2"), ("floor", "find", "info: Python's floor"),
                         ("walk", "floor", "info"), ("rescan", "walk", "<= 3"),
                         ("rescan", "find", "info")):
        med, lo, hi = ratio(a, b)
        print(f"  {a} / {b} = {med:.2f} ({lo:.2f}-{hi:.2f})  [{target}]")


if __name__ == "__main__":
    main()
