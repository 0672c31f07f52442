"""Storage faults: a full disk answers 507 and loses nothing, a file-size limit (RLIMIT_FSIZE)
gets a JSON answer instead of a reset or a dead process, and a data folder that cannot be
written starts read-only (every write 503 with the reason). Real mounts where the machine allows
them: tests run as root, so a read-only bind mount, not chmod, is what really refuses writes."""

from __future__ import annotations

import http.client
import io
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from hikaze_manager import create_app
from hikaze_manager.state import get_state

from snapshot_support import snapshot

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHA = "c" * 64


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True)


def unavailable(reason: str):
    """Skip, or fail where the machine must allow it (CI sets HIKAZE_REQUIRE_MOUNT=1: it runs as
    root on a machine that mounts tmpfs and read-only binds)."""
    if os.environ.get("HIKAZE_REQUIRE_MOUNT") == "1":
        pytest.fail(f"{reason} (HIKAZE_REQUIRE_MOUNT=1)")
    pytest.skip(reason)


@contextmanager
def mounted(*mount_args: str, target: Path):
    """Mount (``mount *mount_args target``) for the block; skip, saying why, if refused."""
    if shutil.which("mount") is None:
        unavailable("no mount command on this machine")
    done = _run("mount", *mount_args, str(target))
    if done.returncode != 0:
        unavailable(f"this machine refuses mount {' '.join(mount_args)}: {done.stderr.strip()}")
    try:
        yield target
    finally:
        _run("umount", "-l", str(target))


def _noise_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def _upload(client, data: bytes):
    return client.post("/api/images/upload", data={"sha256": SHA, "image": (io.BytesIO(data), "a.png")},
                       content_type="multipart/form-data")


def _seed(client, conn_path: str) -> None:
    with sqlite3.connect(conn_path) as conn:
        conn.execute("INSERT INTO models(sha256, path, name, type, size_bytes, created_at) "
                     "VALUES (?, '/m/c.safetensors', 'C', 'checkpoints', 1, 1)", (SHA,))
    assert client.post("/api/tags_add", json={"newtags": ["kept"]}).status_code == 200
    assert _upload(client, _noise_png(64, 48)).status_code == 200


# --- full disk -------------------------------------------------------------------------------


def test_a_full_disk_is_507_reads_keep_working_and_writes_resume_once_space_is_freed(tmp_path):
    data = tmp_path / "small-disk"
    data.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=4m", "tmpfs", target=data):
        app = create_app({"TESTING": True, "DATA_DIR": str(data / "lib")})
        app.config["PROPAGATE_EXCEPTIONS"] = False
        client = app.test_client()
        _seed(client, app.config["DATABASE"])
        filler = data / "filler"
        with open(filler, "wb", buffering=0) as fh:  # fill the disk to the last byte
            for size in (65536, 512, 1):
                try:
                    while True:
                        fh.write(b"\0" * size)
                except OSError:
                    pass
        before = snapshot(data / "lib")

        refused = [
            _upload(client, _noise_png(300, 200)),
            client.post("/api/tags_add", json={"newtags": [f"t{i} " + "x" * 150 for i in range(3000)]}),
            client.patch(f"/api/models/{SHA}", json={"meta_json": {"description": "d" * 90_000}}),
        ]
        for response in refused:
            assert response.status_code == 507, response.get_data(as_text=True)
            assert "disk" in response.get_json()["error"] and "full" in response.get_json()["error"]
        assert client.get(f"/api/models/{SHA}").get_json()["name"] == "C"  # reads still work
        assert client.get("/api/tags").status_code == 200
        with client.get(f"/api/images/{SHA}_0.webp") as picture:
            assert picture.status_code == 200
        assert snapshot(data / "lib") == before  # nothing half-written, nothing lost

        filler.unlink()
        assert _upload(client, _noise_png(300, 200)).status_code == 200
        patched = client.patch(f"/api/models/{SHA}", json={"meta_json": {"description": "later"}})
        assert patched.status_code == 200
        assert get_state(app).images.count(SHA) == 2
        with sqlite3.connect(app.config["DATABASE"]) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- file-size limit -------------------------------------------------------------------------


FSIZE_LIMIT = 1_000_000


def _limited():
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def _request(port: int, method: str, path: str, body: bytes, content_type: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"sha256\"\r\n\r\n{SHA}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_an_upload_over_the_file_size_limit_gets_a_json_error_and_the_server_lives(tmp_path):
    data_dir = tmp_path / "data"
    seed_app = create_app({"TESTING": True, "DATA_DIR": str(data_dir)})
    _seed(seed_app.test_client(), seed_app.config["DATABASE"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIKAZE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "hikaze_manager", "--data-dir", str(data_dir), "--port", "0",
         "--models-dir", str(tmp_path)],
        cwd=PROJECT_ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=_limited)
    try:
        line = process.stdout.readline()
        assert "running at" in line, line + process.stderr.read()
        port = int(line.rsplit(":", 1)[1].strip(" /\n"))
        big = _noise_png(800, 600)  # about 1.4 MB: over the limit wherever it is spooled
        assert len(big) > FSIZE_LIMIT
        status, body = _request(port, "POST", "/api/images/upload", *_multipart(big))
        assert status == 507, body
        assert "limit" in body["error"] or "written" in body["error"] or "full" in body["error"]
        assert process.poll() is None, "SIGXFSZ killed the server"
        status, body = _request(port, "PATCH", f"/api/models/{SHA}", b'{"name": "still here"}',
                                "application/json")
        assert status == 200 and body["name"] == "still here"
        assert _request(port, "POST", "/api/images/upload", *_multipart(_noise_png(64, 48)))[0] == 200
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


# --- read-only data folder -------------------------------------------------------------------


def test_a_data_folder_that_cannot_be_written_starts_read_only(tmp_path):
    source = tmp_path / "library"
    seed_app = create_app({"TESTING": True, "DATA_DIR": str(source)})
    _seed(seed_app.test_client(), seed_app.config["DATABASE"])
    del seed_app
    view = tmp_path / "read-only-view"
    view.mkdir()
    with mounted("--bind", str(source), target=view):
        done = _run("mount", "-o", "remount,ro,bind", str(view))
        if done.returncode != 0:
            unavailable(f"this machine refuses a read-only remount: {done.stderr.strip()}")
        with pytest.raises(OSError):
            (view / "probe").write_bytes(b"x")  # really refused, even to root
        before = snapshot(source)

        app = create_app({"TESTING": True, "DATA_DIR": str(view)})  # no traceback
        client = app.test_client()
        reason = client.get("/api/panel/config").get_json()["read_only_reason"]
        assert reason and str(view) in reason and "read-only" in reason
        assert client.get(f"/api/models/{SHA}").get_json()["name"] == "C"  # reads work
        assert client.get("/api/tags").get_json()["tags"][0]["name"] == "kept"
        with client.get(f"/api/images/{SHA}_0.webp") as picture:
            assert picture.status_code == 200
        for response in (
            client.patch(f"/api/models/{SHA}", json={"name": "x"}),
            client.post("/api/tags_add", json={"newtags": ["new"]}),
            _upload(client, _noise_png(64, 48)),
            client.delete(f"/api/images/delete?sha256={SHA}&seq=0"),
            client.post("/api/scan"),
        ):
            assert response.status_code == 503
            assert response.get_json()["error"] == reason
        assert snapshot(source) == before


def test_an_unwritable_folder_without_a_library_still_starts_empty_and_read_only(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    view = tmp_path / "empty-view"
    view.mkdir()
    with mounted("--bind", str(empty), target=view):
        if _run("mount", "-o", "remount,ro,bind", str(view)).returncode != 0:
            unavailable("this machine refuses a read-only remount")
        client = create_app({"TESTING": True, "DATA_DIR": str(view / "data")}).test_client()
        assert client.get("/api/panel/config").get_json()["read_only_reason"]
        assert client.get("/api/tags").get_json() == {"tags": []}
        assert client.post("/api/tags_add", json={"newtags": ["x"]}).status_code == 503
    assert list(empty.iterdir()) == []
