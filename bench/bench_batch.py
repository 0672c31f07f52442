"""Batch-edit benchmark: one request over 5,000 models vs a bare executemany baseline.

Prints each endpoint's time and its ratio to the plain SQL doing the same rows in the same run:
  * tags   = POST /api/models/tags (add 2 tags) vs executemany of the 10,000 links
  * type   = POST /api/models/set_type vs one UPDATE ... WHERE sha256 IN (...)
  * remove = POST /api/models/remove vs DELETE of the links and rows
Run: python bench/bench_batch.py [models]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hikaze_manager import create_app  # noqa: E402
from hikaze_manager.db import connection, transaction  # noqa: E402


def populate(db_path: str, n: int) -> list[str]:
    shas = [f"{i:064x}" for i in range(n)]
    with connection(db_path) as conn, transaction(conn):
        conn.executemany("INSERT INTO models(sha256, path, name, type) VALUES (?, ?, ?, 'loras')",
                         [(s, f"/m/{s}.safetensors", s[:8]) for s in shas])
    return shas


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def baseline(db_path: str, shas: list[str]) -> dict[str, float]:
    with connection(db_path) as conn:
        with transaction(conn):
            conn.execute("INSERT INTO tags(name, name_key) VALUES ('x1', 'x1'), ('x2', 'x2')")
            ids = [r[0] for r in conn.execute("SELECT id FROM tags WHERE name IN ('x1', 'x2')")]
        marks = ",".join("?" * len(shas))

        def tags():
            with transaction(conn):
                conn.executemany("INSERT INTO model_tags VALUES (?, ?)",
                                 [(s, t) for s in shas for t in ids])

        def set_type():
            with transaction(conn):
                conn.execute(f"UPDATE models SET type = 'vae' WHERE sha256 IN ({marks})", shas)

        def remove():
            with transaction(conn):
                conn.execute(f"DELETE FROM model_tags WHERE model_hash IN ({marks})", shas)
                conn.execute(f"DELETE FROM models WHERE sha256 IN ({marks})", shas)

        return {"tags": timed(tags), "type": timed(set_type), "remove": timed(remove)}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as base_dir, tempfile.TemporaryDirectory() as app_dir:
        base_app = create_app({"TESTING": True, "DATA_DIR": base_dir})
        base = baseline(base_app.config["DATABASE"], populate(base_app.config["DATABASE"], n))
        app = create_app({"TESTING": True, "DATA_DIR": app_dir})
        shas = populate(app.config["DATABASE"], n)
        client = app.test_client()
        ours = {
            "tags": timed(lambda: client.post("/api/models/tags", json={"sha256": shas, "add": ["x1", "x2"]})),
            "type": timed(lambda: client.post("/api/models/set_type", json={"sha256": shas, "type": "vae"})),
            "remove": timed(lambda: client.post("/api/models/remove", json={"sha256": shas})),
        }
    for key in ("tags", "type", "remove"):
        print(f"{key:7s} {n} models: {ours[key] * 1000:7.0f} ms  baseline {base[key] * 1000:6.0f} ms"
              f"  ratio {ours[key] / base[key]:5.1f}x")


if __name__ == "__main__":
    main()
