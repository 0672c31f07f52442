"""Per-request server CPU of small requests vs a minimal Flask route with a same-size JSON body.

Both servers run in their own processes on the same waitress configuration
(``hikaze_manager.server.start_server``); the CPU time of each process is read before and after
``n`` sequential keep-alive requests, so the client's work is not counted.
"""

from __future__ import annotations

from bench.common import Context, Row, Server, library, rotate, server_cpu_per_request, sha_of

LIBRARY = 20_000


def run(ctx: Context) -> list[Row]:
    data = library(ctx, LIBRARY)
    paths = {"detail GET /api/models/{sha256}": f"/api/models/{sha_of(LIBRARY // 3)}",
             "GET /api/tags (300 tags)": "/api/tags",
             "GET /api/models/get_types": "/api/models/get_types"}
    n = 200 if ctx.quick else 400
    rows = []
    with Server(data) as ours:
        for label, path in paths.items():
            status, body, _ = ours.get(path)
            assert status == 200, (path, status)
            body_file = ctx.work / "minimal-body.json"
            body_file.write_bytes(body)
            values, base = [], []
            with Server(data, minimal_body=body_file) as minimal:
                for r in range(ctx.rounds):
                    for which in rotate(["ours", "minimal"], r):
                        if which == "ours":
                            values.append(server_cpu_per_request(ours, path, n))
                        else:
                            base.append(server_cpu_per_request(minimal, path, n))
            rows.append(Row(f"{label}: server CPU per request vs minimal Flask route", values, "ms",
                            "<=", 1.5, baseline=base))
    return rows
