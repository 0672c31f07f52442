"""Deleting a model file: moved (renamed) with its sidecars into the model folder's trash, restorable."""

from __future__ import annotations

import os
import time

import pytest

from hikaze_manager import create_app

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL


def _trash(client, **body):
    return client.post("/api/files/trash", json=body)


def test_trash_moves_file_and_sidecars_and_restore_puts_them_back(
        client, db_conn, models_root, make_model_file, add_model):
    path, sha = make_model_file("loras/sub/style.safetensors")
    inode = path.stat().st_ino
    sidecars = [path.with_name(n) for n in ("style.civitai.info", "style.preview.png", "style.txt",
                                            "style.json", "style.cm-info.json")]
    for side in sidecars:
        side.write_text("side")
    unrelated = path.with_name("styles.txt")
    unrelated.write_text("not ours")
    add_model(sha, str(path), type="loras")
    r = _trash(client, sha256=sha, confirm="wrong.safetensors")
    assert r.status_code == 400 and "style.safetensors" in r.get_json()["error"]
    assert path.is_file()
    r = _trash(client, sha256=sha, confirm="style.safetensors")
    assert r.status_code == 200, r.get_json()
    entry = r.get_json()
    assert not path.exists() and not any(s.exists() for s in sidecars) and unrelated.exists()
    assert sorted(entry["files"]) == sorted(str(p) for p in [path, *sidecars])
    trash_dir = models_root / "loras" / ".hikaze-trash" / entry["id"]
    moved = [p for p in trash_dir.iterdir() if p.name.endswith("style.safetensors")]
    assert [p.stat().st_ino for p in moved] == [inode]  # renamed, not copied
    assert db_conn.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 1  # library untouched
    # the scan does not see the trash
    report = client.post("/api/scan", json={}).get_json()
    assert report["added"] == 0
    listed = client.get("/api/files/trash").get_json()["entries"]
    assert [e["id"] for e in listed] == [entry["id"]]
    r = client.post("/api/files/restore", json={"id": entry["id"]})
    assert r.status_code == 200
    assert path.stat().st_ino == inode and all(s.read_text() == "side" for s in sidecars)
    assert not trash_dir.exists()
    assert client.get("/api/files/trash").get_json()["entries"] == []
    assert client.post("/api/files/restore", json={"id": entry["id"]}).status_code == 404


def test_trash_with_removal_from_library(client, db_conn, make_model_file, add_model):
    path, sha = make_model_file("checkpoints/x.safetensors")
    add_model(sha, str(path))
    r = _trash(client, sha256=sha, confirm="x.safetensors", remove_from_library=True)
    assert r.status_code == 200 and r.get_json()["removed_from_library"] is True
    assert db_conn.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 0


def test_restore_refuses_to_overwrite(client, make_model_file):
    path, _ = make_model_file("checkpoints/dup.safetensors", b"one")
    entry = _trash(client, path=str(path), confirm="dup.safetensors").get_json()
    path.write_bytes(b"two")
    r = client.post("/api/files/restore", json={"id": entry["id"]})
    assert r.status_code == 409 and path.read_bytes() == b"two"


def test_only_files_inside_model_folders_and_no_symlinks(client, tmp_path, models_root):
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"secret")
    link = models_root / "checkpoints" / "link.safetensors"
    link.symlink_to(outside)
    escape = models_root / "checkpoints" / ".." / ".." / "outside.safetensors"
    for body, code in [
        ({"path": str(outside), "confirm": "outside.safetensors"}, 400),
        ({"path": str(escape), "confirm": "outside.safetensors"}, 400),
        ({"path": str(link), "confirm": "link.safetensors"}, 400),
        ({"path": str(models_root / "checkpoints"), "confirm": "checkpoints"}, 400),
        ({"path": str(models_root / "nope.safetensors"), "confirm": "nope.safetensors"}, 404),
    ]:
        r = _trash(client, **body)
        assert r.status_code == code, (body, r.get_json())
    assert outside.read_bytes() == b"secret" and link.is_symlink()


def test_file_routes_answer_only_our_panel(client, make_model_file):
    path, _ = make_model_file("checkpoints/keep.safetensors")
    body = {"path": str(path), "confirm": "keep.safetensors"}
    r = client.post("/api/files/trash", json=body, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post("/api/files/trash", data="path=x", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415
    assert path.is_file()


def test_exposed_server_needs_a_token_for_file_routes(app_config, make_model_file):
    path, _ = make_model_file("checkpoints/keep.safetensors")
    body = {"path": str(path), "confirm": "keep.safetensors"}
    exposed = create_app({**app_config, "HOST": "0.0.0.0"}).test_client()
    assert exposed.post("/api/files/trash", json=body).status_code == 403
    assert path.is_file()
    with_token = create_app({**app_config, "HOST": "0.0.0.0", "AUTH_TOKEN": "s3cret"}).test_client()
    remote = {"REMOTE_ADDR": "192.168.1.20"}
    r = with_token.post("/api/files/trash", json=body, environ_base=remote)
    assert r.status_code == 401 and path.is_file()
    r = with_token.post("/api/files/trash", json=body, environ_base=remote,
                        headers={"X-Hikaze-Token": "s3cret"})
    assert r.status_code == 200 and not path.exists()


def test_expired_entries_are_purged(app_config, make_model_file):
    path, _ = make_model_file("checkpoints/old.safetensors")
    client = create_app({**app_config, "TRASH_RETENTION_DAYS": 0.0000001}).test_client()
    entry = client.post("/api/files/trash", json={"path": str(path), "confirm": "old.safetensors"})
    assert entry.status_code == 200
    time.sleep(0.05)
    listed = client.get("/api/files/trash").get_json()
    assert listed["entries"] == [] and listed["purged"] == 1
    assert not path.exists() and not any((path.parent / ".hikaze-trash").iterdir())


def test_retention_comes_from_the_command_line(monkeypatch):
    from hikaze_manager.__main__ import build_config, parse_args

    assert build_config(parse_args(["--trash-days", "3"]))["TRASH_RETENTION_DAYS"] == 3.0


def test_trash_listing_purges_so_it_refuses_cross_site_requests(client):
    r = client.get("/api/files/trash", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert client.get("/api/files/trash", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_trashing_a_pending_file_drops_its_pending_row(client, db_conn, make_model_file):
    path, _ = make_model_file("loras/queued.safetensors")
    client.post("/api/scan", json={})
    assert db_conn.execute("SELECT COUNT(*) FROM pending_import").fetchone()[0] == 1
    entry = client.post("/api/files/trash", json={"path": str(path), "confirm": "queued.safetensors"})
    assert entry.status_code == 200
    assert db_conn.execute("SELECT COUNT(*) FROM pending_import").fetchone()[0] == 0
    client.post("/api/files/restore", json={"id": entry.get_json()["id"]})
    assert client.post("/api/scan", json={}).get_json()["added"] == 1
