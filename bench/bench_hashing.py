"""SHA-256 benchmark: our file hashing vs baselines measured in the same run (perf-anchors 1-2).

Per round (rounds interleaved, medians of per-round ratios reported):
  * memory   = hashlib.sha256 over the same bytes already in memory, 1 MiB slices (CPU limit)
  * ours     = services.hashing.sha256_file (readinto a reused 1 MiB buffer)
  * ours+job = the same with the per-chunk progress a job uses (cancel check + advance)
  * openssl  = `openssl dgst -sha256 FILE` (subprocess, the peer)
  * sha256sum = coreutils `sha256sum FILE` (subprocess, a weak peer)
  * openssl seq/par = two `openssl dgst` one after the other vs at once (the peer's scaling)
  * pool     = services.hashing.hash_files on two files with 2 workers vs 1 worker (sequential),
               and with 2 workers at normal priority (nice0) to show what the niceness costs
               when other processes compete for the cores
Then /api/tags latency on a real waitress server, idle and while two pool workers hash (with the
pool's lower priority and without it). Files are hot (read once before timing).
Run: python bench/bench_hashing.py [MiB per file] [rounds]
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hikaze_manager.services import hashing  # noqa: E402
from hikaze_manager.services.jobs import Job  # noqa: E402

MIB = 1024 * 1024


def make_file(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    with open(path, "wb") as fh:
        for _ in range(size // (64 * MIB)):
            fh.write(os.urandom(64 * MIB))
        fh.write(os.urandom(size % (64 * MIB)))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def memory_hash(data: memoryview) -> str:
    digest = hashlib.sha256()
    for offset in range(0, len(data), MIB):
        digest.update(data[offset : offset + MIB])
    return digest.hexdigest()


def cli(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def cache_conn() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute(
        "CREATE TABLE file_hashes (path TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL,"
        " mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, hashed_at INTEGER NOT NULL)"
    )
    return conn


def main() -> None:
    size = int(sys.argv[1]) * MIB if len(sys.argv) > 1 else 1024 * MIB
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    folder = Path(os.environ.get("HIKAZE_BENCH_DIR", tempfile.gettempdir())) / "hikaze-bench-hash"
    folder.mkdir(exist_ok=True)
    files = [folder / "a.bin", folder / "b.bin"]
    for f in files:
        make_file(f, size)
    data = memoryview(files[0].read_bytes())
    expected = memory_hash(data)
    for f in files:
        hashing.sha256_file(f)  # warm the page cache
    job = Job(id="bench", kind="bench")

    def with_job(n: int) -> None:
        job.check_cancelled()
        job.advance(bytes_=n)

    variants = {
        "memory": lambda: memory_hash(data),
        "ours": lambda: hashing.sha256_file(files[0]),
        "ours+job": lambda: hashing.sha256_file(files[0], with_job),
        "openssl": lambda: cli("openssl", "dgst", "-sha256", str(files[0])),
        "sha256sum": lambda: cli("sha256sum", str(files[0])),
    }
    assert hashing.sha256_file(files[0])[0] == expected
    assert expected in cli("openssl", "dgst", "-sha256", str(files[0]))

    def pool(workers: int, niceness: int = hashing.WORKER_NICENESS) -> None:
        saved, hashing.WORKER_NICENESS = hashing.WORKER_NICENESS, niceness
        conn = cache_conn()
        try:
            results = hashing.hash_files(conn, [str(f) for f in files], workers=workers)
        finally:
            conn.close()
            hashing.WORKER_NICENESS = saved
        assert all(r.sha256 and not r.cached for r in results.values())

    def openssl_pair(parallel: bool) -> None:
        commands = [["openssl", "dgst", "-sha256", str(f)] for f in files]
        if not parallel:
            for command in commands:
                subprocess.run(command, check=True, capture_output=True)
            return
        procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in commands]
        for proc in procs:
            proc.wait()

    pools = {"pool x1": lambda: pool(1), "pool x2": lambda: pool(2),
             "pool x2 nice0": lambda: pool(2, 0),
             "openssl seq": lambda: openssl_pair(False), "openssl par": lambda: openssl_pair(True)}
    times: dict[str, list[float]] = {k: [] for k in [*variants, *pools]}
    for r in range(rounds):
        names = list(variants)
        names = names[r % len(names):] + names[: r % len(names)]  # rotate the order per round
        for name in names:
            times[name].append(timed(variants[name]))
        keys = list(pools)
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            times[key].append(timed(pools[key]))

    def mbps(seconds: float, nbytes: int = size) -> float:
        return nbytes / seconds / 1e6

    def ratio(a: str, b: str) -> tuple[float, float, float]:
        values = [times[b][i] / times[a][i] for i in range(rounds)]
        return statistics.median(values), min(values), max(values)

    print(f"file size {size // MIB} MiB, {rounds} rounds, cores {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.2f}")
    for name in variants:
        print(f"  {name:10s} {mbps(statistics.median(times[name])):8.0f} MB/s  "
              f"(min {mbps(max(times[name])):.0f}, max {mbps(min(times[name])):.0f})")
    for key in pools:
        print(f"  {key:10s} {mbps(statistics.median(times[key]), 2 * size):8.0f} MB/s (2 files)")
    print("ratios (median of per-round ratios, min-max); target in brackets:")
    for a, b, target in (("ours", "memory", ">= 0.90"), ("ours", "openssl", ">= 1.0"),
                         ("ours", "sha256sum", "info"), ("ours+job", "ours", ">= 0.98"),
                         ("pool x2", "pool x1", ">= 1.8 on 2 idle cores"),
                         ("pool x2 nice0", "pool x1", "info: without the lower priority"),
                         ("openssl par", "openssl seq", "peer: what the machine allows now")):
        med, lo, hi = ratio(a, b)
        print(f"  {a} speed / {b} speed = {med:.3f} ({lo:.3f}-{hi:.3f})  [{target}]")
    ours_scaling = [times["pool x1"][i] / times["pool x2"][i] for i in range(rounds)]
    peer_scaling = [times["openssl seq"][i] / times["openssl par"][i] for i in range(rounds)]
    relative = [o / p for o, p in zip(ours_scaling, peer_scaling)]
    print(f"  pool scaling / openssl scaling = {statistics.median(relative):.3f} "
          f"({min(relative):.3f}-{max(relative):.3f})  [>= 0.9]")


def serving_latency(files: list[Path], requests: int = 200) -> None:
    """/api/tags latency on a real waitress server: idle, and while the pool hashes both files."""
    import threading
    import urllib.request

    from hikaze_manager import create_app
    from hikaze_manager.server import start_server

    data_dir = tempfile.mkdtemp(prefix="hikaze-bench-")
    app = create_app({"TESTING": True, "DATA_DIR": data_dir, "MODEL_TYPES": {"checkpoints": [data_dir]}})
    handle = start_server(app, "127.0.0.1", 0)
    url = handle.url + "api/tags"

    def latencies() -> tuple[float, float]:
        out = []
        for _ in range(requests):
            start = time.perf_counter()
            with urllib.request.urlopen(url) as response:
                response.read()
            out.append(time.perf_counter() - start)
        out.sort()
        return statistics.median(out) * 1000, out[int(len(out) * 0.95)] * 1000

    try:
        idle = latencies()
        print(f"/api/tags latency, median / p95 ms: idle {idle[0]:.2f} / {idle[1]:.2f}")
        for niceness in (hashing.WORKER_NICENESS, 0):
            stop = threading.Event()

            def hash_forever() -> None:
                saved, hashing.WORKER_NICENESS = hashing.WORKER_NICENESS, niceness
                conn = cache_conn()
                try:
                    while not stop.is_set():
                        conn.execute("DELETE FROM file_hashes")
                        hashing.hash_files(conn, [str(f) for f in files], workers=2)
                finally:
                    conn.close()
                    hashing.WORKER_NICENESS = saved

            worker = threading.Thread(target=hash_forever)
            worker.start()
            time.sleep(0.3)
            busy = latencies()
            stop.set()
            worker.join()
            print(f"  while 2 workers hash (nice {niceness:2d}): {busy[0]:.2f} / {busy[1]:.2f}")
    finally:
        handle.stop()


if __name__ == "__main__":
    main()
    serving_latency([Path(os.environ.get("HIKAZE_BENCH_DIR", tempfile.gettempdir()))
                     / "hikaze-bench-hash" / name for name in ("a.bin", "b.bin")])
