"""Lists on the 20k library (10k LoRAs, 3 tags each) through the real waitress server.

* uncached ``/api/models?type=loras`` (the cache emptied by a write from another process before
  each request) vs fetching the same rows in-process (2 queries + dict join, perf-anchors 5c)
  plus ``json.dumps``;
* a repeat with ``If-None-Match`` (304) and one from a new client without it (cached body);
* 304 on ``pending_models``, ``tags`` and ``get_types``.
"""

from __future__ import annotations

import json

from bench.common import Context, Row, Server, library, rotate, timed, touch_database
from hikaze_manager.db import connection

LIBRARY = 20_000
LISTS = ("/api/migration/pending_models", "/api/tags", "/api/models/get_types")


def baseline(conn, model_type: str) -> list[dict]:
    """The same rows with one models query, one tag-pair query and a dict join."""
    rows = conn.execute("SELECT sha256, path, name, type, size_bytes, created_at FROM models "
                        "WHERE type = ? ORDER BY name", (model_type,)).fetchall()
    tags: dict = {}
    for sha, tag_id, name in conn.execute(
            "SELECT mt.model_hash, t.id, t.name FROM model_tags mt JOIN tags t ON t.id = mt.tag_id "
            "JOIN models m ON m.sha256 = mt.model_hash WHERE m.type = ?", (model_type,)):
        tags.setdefault(sha, []).append({"id": tag_id, "name": name})
    return [{"sha256": r[0], "name": r[2], "images_count": 0, "type": r[3], "path": r[1],
             "size_bytes": r[4], "created_at": r[5], "tags": tags.get(r[0], [])} for r in rows]


def run(ctx: Context) -> list[Row]:
    data = library(ctx, LIBRARY)
    url = "/api/models?type=loras"
    uncached, base, not_modified, other_client, small = [], [], [], [], []
    with Server(data) as server, connection(data / "hikaze_model_manager.db") as conn:
        status, body, headers = server.get(url)
        assert status == 200 and len(json.loads(body)["models"]) == LIBRARY // 2
        etag = headers["etag"]

        def fetch():
            status, _, _ = server.get(url)
            assert status == 200

        def invalidate():
            touch_database(data)

        def fetch_304():
            assert server.get(url, {"If-None-Match": etag})[0] == 304

        def fetch_other_client():
            conn2 = server.connection()
            try:
                assert server.get(url, conn=conn2)[0] == 200
            finally:
                conn2.close()

        invalidate()
        fetch()
        status, body, headers = server.get(url)
        etag = headers["etag"]
        small_etags = {path: server.get(path)[2]["etag"] for path in LISTS}
        for r in range(ctx.rounds):
            for step in rotate(["uncached", "base", "304", "other", "small"], r):
                if step == "uncached":
                    uncached.append(timed(fetch, after=invalidate))
                    etag = server.get(url)[2]["etag"]
                elif step == "base":
                    base.append(timed(lambda: json.dumps({"models": baseline(conn, "loras")},
                                                         ensure_ascii=False)))
                elif step == "304":
                    not_modified.append(min(timed(fetch_304) for _ in range(5)))
                elif step == "other":
                    other_client.append(min(timed(fetch_other_client) for _ in range(3)))
                else:
                    times = []
                    for path, tag in small_etags.items():
                        def one(path=path, tag=tag):
                            assert server.get(path, {"If-None-Match": tag})[0] == 304
                        times.append(min(timed(one) for _ in range(5)))
                    small.append(max(times))
    return [
        Row("list 10k LoRAs uncached (20k lib) vs in-process query + json.dumps", uncached, "ms",
            "<=", 1.5, baseline=base),
        Row("list 10k LoRAs, repeat with If-None-Match (304)", not_modified, "ms", "<=", 0.005),
        Row("list 10k LoRAs, cached body to a new client", other_client, "ms", "<=", 0.010),
        Row("pending_models / tags / get_types 304 (slowest)", small, "ms", "<=", 0.005),
    ]
