"""The shared store: the same 20k library (10k LoRAs, 3 tags each) in SQLite and in a PostgreSQL
server the bench starts itself (tests/pg_support.py), each served by the real waitress server;
the uncached ``/api/models?type=loras`` from PostgreSQL against the same list from SQLite."""

from __future__ import annotations

import json
import time

from bench.common import Context, Row, Server, fill_library, library, rotate, timed, touch_database
from hikaze_manager.db.stores import PostgresStore
from tests.pg_support import PostgresServer

LIBRARY = 20_000
URL = "/api/models?type=loras"


def _touch(store: PostgresStore) -> None:
    """A write that changes nothing a list shows (the next list is built afresh)."""
    with store.connection() as conn:
        conn.execute("INSERT INTO db_meta(key, value) VALUES ('bench_touch', ?) ON CONFLICT (key) "
                     "DO UPDATE SET value = excluded.value", (str(time.time_ns()),))


def run(ctx: Context) -> list[Row]:
    data = library(ctx, LIBRARY)
    pg_data = ctx.work / "library-pg"
    pg_data.mkdir(exist_ok=True)
    sqlite_times, pg_times = [], []
    with PostgresServer() as server:
        url = server.new_database("bench")
        store = PostgresStore(url, "bench")
        store.prepare()
        with store.connection() as conn:
            fill_library(conn, LIBRARY, LIBRARY // 2)
            conn.execute("ANALYZE")
        with Server(data) as lite, Server(pg_data, database_url=url) as shared:
            for one in (lite, shared):
                status, body, _ = one.get(URL)
                assert status == 200 and len(json.loads(body)["models"]) == LIBRARY // 2

            def from_sqlite():
                assert lite.get(URL)[0] == 200

            def from_postgres():
                assert shared.get(URL)[0] == 200

            for r in range(ctx.rounds):
                for step in rotate(["sqlite", "postgres"], r):
                    if step == "sqlite":
                        sqlite_times.append(timed(from_sqlite, after=lambda: touch_database(data)))
                    else:
                        pg_times.append(timed(from_postgres, after=lambda: _touch(store)))
        store.close()
    return [Row("list 10k LoRAs uncached from PostgreSQL vs the same from SQLite", pg_times, "ms",
                "<=", 2.0, baseline=sqlite_times)]
