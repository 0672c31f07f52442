"""The 100k library (50k LoRAs): uncached LoRA list, memory after listing every type, start-up.

* uncached list: a write from another process empties the cache before each request; checked
  against 300 ms and against the in-process baseline of case_lists on the same database;
* RSS of the server process after listing every type (and ``others``) once;
* start-up to first answer: spawn the server process and time until ``get_types`` answers, on
  the 100k library and on an empty one (nothing at start-up may grow with the library).
"""

from __future__ import annotations

import json
import time

from bench.case_lists import baseline
from bench.common import TYPES, Context, Row, Server, library, rotate, settle, timed, touch_database
from hikaze_manager.db import connection

SLOW = True
LIBRARY = 100_000


def start_up(data) -> float:
    start = time.perf_counter()
    with Server(data) as server:
        status, _, _ = server.get("/api/models/get_types")
        assert status == 200
        return time.perf_counter() - start


def run(ctx: Context) -> list[Row]:
    data = library(ctx, LIBRARY)
    empty = ctx.work / "empty-library"
    empty.mkdir(exist_ok=True)
    settle(empty)
    url = "/api/models?type=loras"
    uncached, base, rss = [], [], []
    peak = 0.0
    with Server(data) as server, connection(data / "hikaze_model_manager.db") as conn:
        status, body, _ = server.get(url)
        assert status == 200 and len(json.loads(body)["models"]) == LIBRARY // 2

        def fetch():
            assert server.get(url)[0] == 200

        for r in range(ctx.rounds):
            for step in rotate(["ours", "base"], r):
                if step == "ours":
                    uncached.append(timed(fetch, after=lambda: touch_database(data)))
                else:
                    base.append(timed(lambda: json.dumps({"models": baseline(conn, "loras")},
                                                         ensure_ascii=False)))
        for model_type in (*TYPES, "others"):
            assert server.get(f"/api/models?type={model_type}")[0] == 200
        current, peak = server.rss_mb()
        rss.append(current)
    big, small = [], []
    for r in range(ctx.rounds):
        for which in rotate(["big", "small"], r):
            (big if which == "big" else small).append(start_up(data if which == "big" else empty))
    return [
        Row("100k lib: list 50k LoRAs uncached", uncached, "ms", "<=", 0.300),
        Row("100k lib: list 50k LoRAs uncached vs in-process query + json.dumps", uncached, "ms",
            "<=", 1.5, baseline=base),
        Row("100k lib: server RSS after listing every type", rss, "MB", "<=", 200,
            note=f"peak {peak:.0f} MB"),
        Row("100k lib: start-up to first answer", big, "ms", "<=", 1.0),
        Row("start-up to first answer, 100k vs empty library", big, "ms", "<=", 1.3, baseline=small),
    ]
