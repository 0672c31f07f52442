"""Background jobs: the manager, the /api/jobs endpoints, cancel, and a server that stays responsive."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request

import pytest

from hikaze_manager.errors import ServiceUnavailable
from hikaze_manager.server import start_server
from hikaze_manager.services.jobs import CANCELLED, FAILED, SUCCEEDED, JobCancelled, JobManager
from hikaze_manager.state import get_state

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL


def _wait_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def test_job_reports_progress_and_result():
    manager = JobManager()

    def work(job):
        job.set_totals(files=3, bytes_=300)
        for i in range(3):
            job.advance(files=1, bytes_=100, message=f"step {i}")
        return 201, {"ok": True}

    job = manager.submit("demo", work)
    manager.wait(job.id, timeout=10)
    snap = job.snapshot()
    assert snap["state"] == SUCCEEDED
    assert snap["progress"] == {"files_done": 3, "files_total": 3, "bytes_done": 300,
                                "bytes_total": 300, "message": "step 2"}
    assert (snap["status_code"], snap["result"], snap["error"]) == (201, {"ok": True}, None)
    assert snap["started_at"] and snap["finished_at"] >= snap["started_at"]
    assert manager.list() == [job]


def test_failing_jobs_keep_the_error_and_code():
    manager = JobManager()

    def broken(_job):
        raise ValueError("boom")

    def refused(_job):
        raise ServiceUnavailable("no types")

    a, b = manager.submit("a", broken), manager.submit("b", refused)
    manager.wait(a.id, 10)
    manager.wait(b.id, 10)
    assert (a.state, a.status_code, a.error) == (FAILED, 500, "boom")
    assert (b.state, b.status_code, b.error) == (FAILED, 503, "no types")


def test_cancel_stops_at_the_next_check():
    manager = JobManager()
    started = threading.Event()
    checks = []

    def work(job):
        started.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            checks.append(1)
            job.check_cancelled()
            time.sleep(0.002)
        return 200, "not cancelled"

    job = manager.submit("long", work)
    assert started.wait(10)
    assert not job.cancel_requested
    manager.cancel(job.id)
    manager.wait(job.id, 10)
    assert job.state == CANCELLED
    assert job.snapshot()["cancel_requested"] is True
    assert job.result is None and job.error == "cancelled"


def test_jobs_api(client, app):
    manager = get_state(app).jobs
    job = manager.submit("demo", lambda j: (200, {"n": 1}))
    manager.wait(job.id, 10)
    listed = client.get("/api/jobs").get_json()["jobs"]
    assert [j["id"] for j in listed] == [job.id]
    one = client.get(f"/api/jobs/{job.id}")
    assert one.status_code == 200 and one.get_json()["result"] == {"n": 1}
    for method, url in (("get", "/api/jobs/nope"), ("post", "/api/jobs/nope/cancel"),
                        ("delete", "/api/jobs/nope")):
        response = getattr(client, method)(url)
        assert response.status_code == 404
        assert response.get_json() == {"error": "Job not found"}
    # Cancelling a finished job changes nothing; deleting it forgets it.
    assert client.post(f"/api/jobs/{job.id}/cancel").status_code == 200
    assert client.delete(f"/api/jobs/{job.id}").status_code == 200
    assert client.get(f"/api/jobs/{job.id}").status_code == 404


def test_cancel_and_delete_a_running_job(client, app):
    manager = get_state(app).jobs
    release = threading.Event()

    def work(job):
        while not release.wait(0.01):
            job.check_cancelled()
        return 200, {}

    first, second = manager.submit("a", work), manager.submit("b", work)
    response = client.post(f"/api/jobs/{first.id}/cancel")
    assert response.status_code == 202
    response = client.delete(f"/api/jobs/{second.id}")
    assert response.status_code == 202 and response.get_json()["cancel_requested"] is True
    manager.wait(first.id, 10)
    manager.wait(second.id, 10)
    assert first.state == second.state == CANCELLED
    assert client.get(f"/api/jobs/{second.id}").get_json()["state"] == CANCELLED


@pytest.fixture
def big_sparse_pending(db_conn, models_root):
    """A pending row for a 3 GiB sparse file: hashing it takes long enough to watch."""
    path = models_root / "checkpoints" / "huge.safetensors"
    with open(path, "wb") as fh:
        fh.truncate(3 * 1024 ** 3)
        fh.seek(-5, os.SEEK_END)
        fh.write(b"tail!")
    pid = db_conn.execute(
        "INSERT INTO pending_import(path, sha256, name, type, size_bytes, created_at, meta_json) "
        "VALUES (?, '', 'huge', 'checkpoints', ?, 1, '{}')", (str(path), 3 * 1024 ** 3)).lastrowid
    return pid, path


def _http(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_server_answers_while_a_job_hashes_and_the_job_can_be_cancelled(app, db_conn, big_sparse_pending):
    pid, path = big_sparse_pending
    handle = start_server(app, "127.0.0.1", 0)
    base = handle.url.rstrip("/")
    try:
        status, body = _http(base, "POST", "/api/migration/import_models", {"id": [pid], "async": True})
        assert status == 202
        job_id = body["job_id"]

        def progress():
            return _http(base, "GET", f"/api/jobs/{job_id}")[1]

        _wait_until(lambda: progress()["progress"]["bytes_done"] > 0)
        status, tags = _http(base, "GET", "/api/tags")
        assert status == 200 and tags == {"tags": []}
        assert _http(base, "GET", "/api/migration/pending_models")[0] == 200
        during = progress()
        assert during["state"] == "running"  # the other requests did not wait for the hash
        assert during["progress"]["bytes_total"] == 3 * 1024 ** 3
        assert 0 < during["progress"]["bytes_done"] < 3 * 1024 ** 3
        assert _http(base, "POST", f"/api/jobs/{job_id}/cancel", {})[0] == 202
        _wait_until(lambda: progress()["state"] != "running")
        final = progress()
        assert final["state"] == "cancelled" and final["result"] is None
    finally:
        handle.stop()
    # Nothing half-done: the pending row stays and no hash was recorded for the file.
    assert db_conn.execute("SELECT id FROM pending_import").fetchall()[0][0] == pid
    assert db_conn.execute("SELECT COUNT(*) FROM file_hashes").fetchone()[0] == 0
    assert db_conn.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 0


def test_cancelled_job_keeps_the_part_it_finished():
    manager = JobManager()

    def work(job):
        raise JobCancelled({"success": [1]}, 207)

    job = manager.submit("partial", work)
    manager.wait(job.id, 10)
    snap = job.snapshot()
    assert (snap["state"], snap["status_code"], snap["result"]) == (CANCELLED, 207, {"success": [1]})
