"""16 concurrent clients on the 20k library, each alternating a list and a detail request.

Two phases on one server:

* **saturated**: every client sends its next request as soon as the last one is answered, for
  10 s (5 s with ``--quick``); the throughput must be at least 3x the 12 req/s this mix reached
  before (issue 9). Closed-loop latency there is just clients / throughput, so it is not checked.
* **paced at 3x 12 req/s**: the same clients send 36 req/s in total; the detail latency
  percentiles are checked while the lists run. Lists are ``/api/models?type=loras`` (10k models)
  and ``?type=checkpoints`` without ``If-None-Match``, so every list is a full 2-3 MB body.
"""

from __future__ import annotations

import random
import threading
import time

from bench.common import Context, Row, Server, library, sha_of

LIBRARY = 20_000
CLIENTS = 16
PACED_RATE = 3 * 12  # req/s


def one_run(server: Server, seconds: float, rate: float | None) -> tuple[list[float], int]:
    """Run the clients; ``rate`` total req/s, or None to send back to back."""
    begin = time.perf_counter()
    stop = begin + seconds
    latencies: list[float] = []
    counts = [0] * CLIENTS
    errors: list[str] = []

    def client(index: int) -> None:
        rng = random.Random(index)
        conn = server.connection()
        interval = CLIENTS / rate if rate else 0.0
        due = begin + interval * index / CLIENTS
        try:
            while True:
                if rate:
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    due += interval
                if time.perf_counter() >= stop:
                    return
                lister = counts[index] % 2 == 0
                if lister:
                    path = f"/api/models?type={'loras' if counts[index] % 4 else 'checkpoints'}"
                else:
                    path = f"/api/models/{sha_of(rng.randrange(LIBRARY))}"
                start = time.perf_counter()
                status, _, _ = server.get(path, conn=conn)
                elapsed = time.perf_counter() - start
                if status != 200:
                    errors.append(f"{path}: {status}")
                    return
                counts[index] += 1
                if not lister:
                    latencies.append(elapsed)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    return latencies, sum(counts)


def run(ctx: Context) -> list[Row]:
    data = library(ctx, LIBRARY)
    seconds = 5.0 if ctx.quick else 10.0
    rounds = max(1, ctx.rounds - 2)
    p50s, p99s, rates, paced_rates = [], [], [], []
    with Server(data) as server:
        server.get("/api/models?type=loras")
        server.get("/api/models?type=checkpoints")
        for _ in range(rounds):
            _, total = one_run(server, seconds, None)
            rates.append(total / seconds)
            latencies, total = one_run(server, seconds, PACED_RATE)
            paced_rates.append(total / seconds)
            latencies.sort()
            p50s.append(latencies[len(latencies) // 2])
            p99s.append(latencies[int(len(latencies) * 0.99)])
    label = f"{CLIENTS} clients list+detail, {seconds:.0f} s"
    return [
        Row(f"{label}: throughput back to back (3x 12 req/s)", rates, "req/s", ">=", PACED_RATE),
        Row(f"{label} at {PACED_RATE} req/s: detail p50", p50s, "ms", "<=", 0.010),
        Row(f"{label} at {PACED_RATE} req/s: detail p99", p99s, "ms", "<=", 0.050),
        Row(f"{label} at {PACED_RATE} req/s: rate kept", paced_rates, "req/s", ">=", PACED_RATE * 0.95),
    ]
