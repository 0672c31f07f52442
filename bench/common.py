"""What every bench case shares: result rows, timing, data builders and a server in a subprocess."""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hikaze_manager.db import connection, transaction, upgrades  # noqa: E402

TYPES = ("checkpoints", "loras", "vae", "embeddings", "controlnet")
TAGS = 300


@dataclass
class Context:
    """Options of one bench run and the scratch folder every case builds its data in."""

    work: Path
    rounds: int
    quick: bool
    skip_slow: bool
    cache: dict = field(default_factory=dict)  # data shared between cases (built once)


@dataclass
class Row:
    """One line of the table: ``value`` samples, optional same-run ``baseline`` samples, a target.

    With a baseline the checked number is the median of per-round ratios value/baseline;
    without one it is the median value itself. ``op`` is "<=" or ">=".
    """

    case: str
    values: list[float]
    unit: str
    op: str
    limit: float
    baseline: list[float] | None = None
    note: str = ""

    @property
    def checked(self) -> float:
        if self.baseline:
            return statistics.median(v / b for v, b in zip(self.values, self.baseline))
        return statistics.median(self.values)

    @property
    def passed(self) -> bool:
        return self.checked <= self.limit if self.op == "<=" else self.checked >= self.limit


def timed(fn: Callable[[], object], after: Callable[[], object] | None = None) -> float:
    """Wall seconds of one call of ``fn``, run ``after`` the untimed ``after()`` call if given
    (the write that empties a cache is not part of the request it is there for)."""
    if after is not None:
        after()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rotate(items: list, r: int) -> list:
    """``items`` rotated by round number, so no variant always runs first."""
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


# --- data ----------------------------------------------------------------------------------------


def sha_of(i: int) -> str:
    return f"{i:064x}"


def build_library(db_path: Path, n: int, loras: int, pending: int = 200, seed: int = 1) -> None:
    """A library of ``n`` models (``loras`` of them LoRAs), ~3 tags each, meta, and a pending queue."""
    with connection(db_path) as conn:
        upgrades.apply(conn, db_path.parent / "backups")
        fill_library(conn, n, loras, pending, seed)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def fill_library(conn, n: int, loras: int, pending: int = 200, seed: int = 1) -> None:
    """The rows of :func:`build_library` written through ``conn`` (either store), in one transaction."""
    rng = random.Random(seed)
    others = [t for t in TYPES if t != "loras"]
    with transaction(conn):
        conn.executemany("INSERT INTO tags(name, name_key) VALUES (?, ?)",
                         [(f"Tag {i:03d}", f"tag {i:03d}") for i in range(TAGS)])
        meta = json.dumps({"description": "A model " * 8, "community_links": "https://x.invalid/m",
                           "prompts": {"positive": "masterpiece, best quality", "negative": "bad"}})
        rows, links = [], []
        for i in range(n):
            kind = "loras" if i < loras else others[i % len(others)]
            rows.append((sha_of(i), f"/models/{kind}/sub{i % 50}/model_{i:06d}.safetensors",
                         f"Model {rng.randrange(10**6):06d} {i}", kind,
                         rng.randint(10**6, 7 * 10**9), 1700000000000 + i, meta))
            links.extend((sha_of(i), t) for t in rng.sample(range(1, TAGS + 1), 3))
        conn.executemany("INSERT INTO models(sha256, path, name, type, size_bytes, created_at, meta_json)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO model_tags VALUES (?, ?)", links)
        conn.executemany(
            "INSERT INTO pending_import(path, sha256, name, type, size_bytes, created_at, meta_json)"
            " VALUES (?, '', ?, 'loras', 1, ?, '{}')",
            [(f"/models/loras/new/p{i}.safetensors", f"Pending {i}", i) for i in range(pending)])


def settle(data: Path) -> None:
    """Create the image folders dated a minute back, like those of a library in use for a while
    (the list cache does not trust a folder changed within the last seconds)."""
    (data / "images" / "pending").mkdir(parents=True, exist_ok=True)
    past = time.time() - 60
    for folder in (data / "images" / "pending", data / "images"):
        os.utime(folder, (past, past))


def library(ctx: Context, n: int) -> Path:
    """A data folder holding a library of ``n`` models (half LoRAs), built once per run."""
    key = ("library", n)
    if key not in ctx.cache:
        data = ctx.work / f"library-{n}"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        build_library(data / "hikaze_model_manager.db", n, n // 2)
        settle(data)
        ctx.cache[key] = data
    return ctx.cache[key]


# --- a server in its own process (its CPU and memory are then its own) --------------------------


class Server:
    """``python -m bench.serve``: our app on the data folder, or a minimal Flask route; loopback."""

    def __init__(self, data_dir: Path, *, minimal_body: Path | None = None,
                 database_url: str | None = None):
        args = [sys.executable, "-m", "bench.serve", str(data_dir)]
        if minimal_body is not None:
            args += ["--minimal", str(minimal_body)]
        if database_url is not None:
            args += ["--database-url", database_url]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.port = int(self.proc.stdout.readline())
        self._conn: http.client.HTTPConnection | None = None

    def connection(self) -> http.client.HTTPConnection:
        """A new keep-alive connection to the server."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def get(self, path: str, headers: dict | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes, dict]:
        """One GET on ``conn`` (default: this object's own keep-alive connection)."""
        if conn is None:
            if self._conn is None:
                self._conn = self.connection()
            conn = self._conn
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, body, {k.lower(): v for k, v in response.getheaders()}

    def cpu(self) -> float:
        """CPU seconds (user + system) the server process has used so far (Linux ``/proc``)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (name) "
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> tuple[float, float]:
        """Current and peak resident memory of the server, in MB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        kb = lambda name: int(fields[name].split()[0]) / 1024  # noqa: E731
        return kb("VmRSS"), kb("VmHWM")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def touch_database(data_dir: Path) -> None:
    """A write from another process that changes nothing a list shows (invalidates list caches)."""
    with connection(data_dir / "hikaze_model_manager.db") as conn:
        conn.execute("INSERT OR REPLACE INTO db_meta(key, value) VALUES ('bench_touch', ?)",
                     (str(time.time_ns()),))


def server_cpu_per_request(server: Server, path: str, n: int, headers: dict | None = None) -> float:
    """Server CPU seconds per request over ``n`` sequential keep-alive requests."""
    server.get(path, headers)
    before = server.cpu()
    for _ in range(n):
        status, _, _ = server.get(path, headers)
        assert status in (200, 304), (path, status)
    return (server.cpu() - before) / n
