"""Batch edits over 5,000 models, one request each, vs bare SQL doing the same rows in-process.

* add tags = ``POST /api/models/tags`` (2 tags) vs ``executemany`` of the 10,000 links
* set type = ``POST /api/models/set_type`` vs one ``UPDATE ... WHERE sha256 IN (...)``
* remove   = ``POST /api/models/remove`` vs ``DELETE`` of the links and rows
"""

from __future__ import annotations

import shutil

from bench.common import Context, Row, timed
from hikaze_manager import create_app
from hikaze_manager.db import connection, transaction

MODELS = 5_000


def _populate(app) -> list[str]:
    shas = [f"{i:064x}" for i in range(MODELS)]
    with connection(app.config["DATABASE"]) as conn, transaction(conn):
        conn.executemany("INSERT INTO models(sha256, path, name, type) VALUES (?, ?, ?, 'loras')",
                         [(s, f"/m/{s}.safetensors", s[:8]) for s in shas])
    return shas


def _baseline(app, shas: list[str]) -> dict[str, float]:
    with connection(app.config["DATABASE"]) as conn:
        with transaction(conn):
            conn.execute("INSERT INTO tags(name, name_key) VALUES ('x1', 'x1'), ('x2', 'x2')")
            ids = [r[0] for r in conn.execute("SELECT id FROM tags WHERE name IN ('x1', 'x2')")]
        marks = ",".join("?" * len(shas))

        def tags():
            with transaction(conn):
                conn.executemany("INSERT INTO model_tags VALUES (?, ?)", [(s, t) for s in shas for t in ids])

        def set_type():
            with transaction(conn):
                conn.execute(f"UPDATE models SET type = 'vae' WHERE sha256 IN ({marks})", shas)

        def remove():
            with transaction(conn):
                conn.execute(f"DELETE FROM model_tags WHERE model_hash IN ({marks})", shas)
                conn.execute(f"DELETE FROM models WHERE sha256 IN ({marks})", shas)

        return {"add tags": timed(tags), "set type": timed(set_type), "remove": timed(remove)}


def _ours(app, shas: list[str]) -> dict[str, float]:
    client = app.test_client()

    def post(path, body):
        response = client.post(path, json=body)
        assert response.status_code == 200, (path, response.get_json())

    return {
        "add tags": timed(lambda: post("/api/models/tags", {"sha256": shas, "add": ["x1", "x2"]})),
        "set type": timed(lambda: post("/api/models/set_type", {"sha256": shas, "type": "vae"})),
        "remove": timed(lambda: post("/api/models/remove", {"sha256": shas})),
    }


def run(ctx: Context) -> list[Row]:
    values: dict[str, list[float]] = {}
    base: dict[str, list[float]] = {}
    for r in range(ctx.rounds):
        folders = [ctx.work / f"batch-{r}-base", ctx.work / f"batch-{r}-ours"]
        base_app, our_app = (create_app({"TESTING": True, "DATA_DIR": str(f)}) for f in folders)
        for key, seconds in _baseline(base_app, _populate(base_app)).items():
            base.setdefault(key, []).append(seconds)
        for key, seconds in _ours(our_app, _populate(our_app)).items():
            values.setdefault(key, []).append(seconds)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    return [Row(f"batch {key}, {MODELS} models, one request vs bare SQL", values[key], "ms", "<=", 4.0,
                baseline=base[key]) for key in values]
