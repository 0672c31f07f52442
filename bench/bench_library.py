"""Listing benchmark: GET /api/models on a 20k-model library vs the plain two-query baseline.

Prints ratios against a baseline measured in the same run (perf-anchors section 5):
  * service   = services.library.list_models (SQL + shaping) vs bare 2 queries + dict join
  * endpoint  = the whole Flask request (marshmallow dump + JSON) vs baseline + json.dumps
Run: python bench/bench_library.py [models] [rounds]
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hikaze_manager import create_app  # noqa: E402
from hikaze_manager.db import connection, transaction  # noqa: E402
from hikaze_manager.services import library  # noqa: E402


def populate(db_path: str, n: int) -> None:
    rng = random.Random(1)
    with connection(db_path) as conn, transaction(conn):
        conn.executemany("INSERT INTO tags(name, name_key) VALUES (?, ?)",
                         [(f"tag{i}", f"tag{i}") for i in range(200)])
        rows, links = [], []
        for i in range(n):
            sha = f"{i:064x}"
            kind = "loras" if i % 5 else "checkpoints"
            rows.append((sha, f"/models/{kind}/m{i}.safetensors", f"Model {i}", kind,
                         rng.randint(1, 10**9), 1700000000000 + i, "{}"))
            links.extend((sha, t) for t in rng.sample(range(1, 201), 3))
        conn.executemany("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO model_tags VALUES (?, ?)", links)


def baseline(conn, model_type: str) -> list[dict]:
    rows = conn.execute("SELECT sha256, path, name, type, size_bytes, created_at FROM models "
                        "WHERE type = ? ORDER BY name", (model_type,)).fetchall()
    tags: dict = {}
    for sha, tag_id, name in conn.execute(
            "SELECT mt.model_hash, t.id, t.name FROM model_tags mt JOIN tags t ON t.id = mt.tag_id "
            "JOIN models m ON m.sha256 = mt.model_hash WHERE m.type = ?", (model_type,)):
        tags.setdefault(sha, []).append({"id": tag_id, "name": name})
    return [{"sha256": r[0], "path": r[1], "name": r[2], "type": r[3], "size_bytes": r[4],
             "created_at": r[5], "images_count": 0, "tags": tags.get(r[0], [])} for r in rows]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 25_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"TESTING": True, "DATA_DIR": tmp,
                          "MODEL_TYPES": {"checkpoints": [], "loras": []}})
        populate(app.config["DATABASE"], n)
        client = app.test_client()
        counts = {}
        ratios_service, ratios_endpoint, base_times, endpoint_times = [], [], [], []
        with connection(app.config["DATABASE"]) as conn:
            for _ in range(rounds):
                t_base = timed(lambda: baseline(conn, "loras"))
                t_service = timed(lambda: library.list_models(conn, "loras", ["checkpoints", "loras"], counts))
                t_base_json = timed(lambda: json.dumps({"models": baseline(conn, "loras")}))
                t_endpoint = timed(lambda: client.get("/api/models?type=loras").get_data())
                ratios_service.append(t_service / t_base)
                ratios_endpoint.append(t_endpoint / t_base_json)
                base_times.append(t_base)
                endpoint_times.append(t_endpoint)
        listed = len(client.get("/api/models?type=loras").get_json()["models"])
        print(f"library of {n} models, listing {listed} loras with 3 tags each, {rounds} rounds")
        print(f"baseline 2 queries + dict join: median {statistics.median(base_times) * 1000:.1f} ms")
        print(f"endpoint (Flask test client):   median {statistics.median(endpoint_times) * 1000:.1f} ms")
        print(f"service / baseline:             {statistics.median(ratios_service):.2f}x (target <= 1.3x)")
        print(f"endpoint / baseline+json:       {statistics.median(ratios_endpoint):.2f}x")


if __name__ == "__main__":
    main()
