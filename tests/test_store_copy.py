"""Moving a SQLite library into PostgreSQL (issue 10, item 6): python -m hikaze_manager.copy_library.

The source library is built through the real app (scan, promote, tags, descriptions, uploaded
pictures made with Pillow), copied into a real PostgreSQL server, and the copy is checked through
the API of an app running on that server, as the same machine."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from hikaze_manager import copy_library as cli
from hikaze_manager import create_app
from hikaze_manager.db import connection, upgrades
from hikaze_manager.services.store_copy import CopyError, copy_library
from hikaze_manager.services.store_copy_tables import COPIED_TABLES, NOT_COPIED
from hikaze_manager.state import get_state

MACHINE = "studio-desk"


def picture(color: str, size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def upload(client, sha: str, data: bytes) -> None:
    response = client.post("/api/images/upload", data={"sha256": sha, "image": (io.BytesIO(data), "p.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()


def types_for(models_root: Path) -> dict:
    return {"checkpoints": {"roots": [str(models_root / "checkpoints")]},
            "loras": {"roots": [str(models_root / "loras")]}}


def write_model(models_root: Path, relative: str) -> tuple[Path, str]:
    path = models_root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(3000) + relative.encode()
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def build_library(data_dir: Path, models_root: Path) -> dict:
    """A library made the way a user makes one: scan, promote, tag, describe, upload pictures."""
    app = create_app({"TESTING": True, "DATA_DIR": str(data_dir), "MODEL_TYPES": types_for(models_root)})
    client = app.test_client()
    files = {name: write_model(models_root, name) for name in
             ("checkpoints/base.safetensors", "loras/style.safetensors", "loras/pending one.safetensors")}
    scan = client.post("/api/scan", json={})
    assert scan.status_code == 200, scan.get_json()
    pending = client.get("/api/migration/pending_models").get_json()["models"]
    by_name = {p["name"]: p["id"] for p in pending}
    promote = [by_name["base.safetensors"], by_name["style.safetensors"]]
    report = client.post("/api/migration/import_models", json={"id": promote}).get_json()
    assert sorted(report["success"]) == sorted(promote)
    tags = client.post("/api/tags_add", json={"newtags": ["Anime", "ñame ü", "unused"]}).get_json()["tags"]
    base_sha, style_sha = files["checkpoints/base.safetensors"][1], files["loras/style.safetensors"][1]
    patch = client.patch(f"/api/models/{style_sha}", json={
        "name": "Style LoRA", "tags": [tags[0]["id"], tags[1]["id"]],
        "meta_json": {"description": "Soft light, 柔らかい光", "community_links": "https://example.org/s",
                      "prompts": {"positive": "soft light", "negative": "harsh"}},
        "trigger_words": ["softlight"]})
    assert patch.status_code == 200, patch.get_json()
    assert client.patch(f"/api/models/{base_sha}", json={"tags": [tags[0]["id"]]}).status_code == 200
    for color in ("red", "green", "blue"):
        upload(client, style_sha, picture(color))
    upload(client, base_sha, picture("yellow", (80, 80)))
    pending_id = by_name["pending one.safetensors"]
    get_state(app).images.save_pending_image("pending_pic.png", picture("purple"))
    with connection(app.config["DATABASE"]) as conn:
        conn.execute("UPDATE pending_import SET meta_json = ? WHERE id = ?",
                     (json.dumps({"description": "waiting", "images": ["/media/pending_pic.png"]}), pending_id))
        conn.execute("INSERT INTO pending_model_tags(model_id, tag_id) VALUES (?, ?)", (pending_id, tags[2]["id"]))
    return {"app": app, "client": client, "base": base_sha, "style": style_sha, "pending_id": pending_id,
            "files": files, "tags": tags}


def api_view(client) -> dict:
    """Everything a user sees through the API: records, tags, pictures, pending rows."""
    models = {}
    for kind in ("checkpoints", "loras", "others"):
        for simple in client.get(f"/api/models?type={kind}").get_json()["models"]:
            record = client.get(f"/api/models/{simple['sha256']}").get_json()
            pictures = []
            for seq in range(record["meta_json"]["images_count"]):
                for quality in ("high", "medium", "low"):
                    with client.get(f"/api/images/{simple['sha256']}_{seq}?quality={quality}") as response:
                        assert response.status_code == 200
                        pictures.append(hashlib.sha256(response.data).hexdigest())
            record["pictures"] = pictures
            models[simple["sha256"]] = record
    pending = client.get("/api/migration/pending_models").get_json()["models"]
    return {"models": models, "tags": client.get("/api/tags").get_json()["tags"],
            "pending": [client.get(f"/api/migration/pending_model?id={p['id']}").get_json() for p in pending]}


def pg_dump(url: str) -> dict:
    """Every row of every table of the hikaze schemas (the machines' last_seen aside)."""
    dump = {}
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            " AND (table_schema = 'hikaze' OR table_schema LIKE 'm\\_%') ORDER BY 1, 2").fetchall()
        for schema, table in tables:
            rows = conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
            if table == "machines":
                rows = [row[:3] for row in rows]
            dump[f"{schema}.{table}"] = sorted(repr(row) for row in rows)
        dump["sequences"] = conn.execute(
            "SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2").fetchall()
    return dump


def version_of(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT value FROM hikaze.version").fetchone()[0]


def file_hashes(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def source(tmp_path):
    models_root = tmp_path / "models"
    (models_root / "checkpoints").mkdir(parents=True)
    (models_root / "loras").mkdir(parents=True)
    library = build_library(tmp_path / "data", models_root)
    library["data_dir"] = tmp_path / "data"
    library["models_root"] = models_root
    return library


@pytest.fixture
def pg_app():
    """Factory: an app on a PostgreSQL library as one machine; its connections closed afterwards."""
    apps = []

    def _make(url: str, data_dir: Path, models_root: Path, machine: str = MACHINE):
        app = create_app({"TESTING": True, "DATA_DIR": str(data_dir), "DATABASE_URL": url,
                          "MACHINE_NAME": machine, "MODEL_TYPES": types_for(models_root)})
        apps.append(app)
        return app

    yield _make
    for app in apps:
        state = get_state(app)
        state.lists.close()
        state.store.close()


def stored_pictures(url: str) -> dict:
    """``{(sha256, position, tier): sha256 of the bytes}`` of every picture row."""
    with psycopg.connect(url) as conn:
        return {(sha, pos, tier): hashlib.sha256(data).hexdigest()
                for sha, pos, tier, data in conn.execute("SELECT sha256, position, tier, data FROM hikaze.image_tiers")}


def picture_files(data_dir: Path) -> dict:
    """The same map from the files of a SQLite library's images folder."""
    found = {}
    for path in (data_dir / "images").glob("*.webp"):
        sha, seq, tier = path.stem.split("_")
        found[(sha, int(seq), tier)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def without_pictures(view: dict) -> dict:
    """The API view minus what the pictures decide (served from rows once the app stores them so)."""
    models = {sha: {k: v for k, v in record.items() if k != "pictures"} for sha, record in view["models"].items()}
    for record in models.values():
        record["meta_json"] = {k: v for k, v in record["meta_json"].items() if k != "images_count"}
    return {**view, "models": models}


def serves_pictures_from_rows(app) -> bool:
    """True when the app serves pictures from image_tiers rather than local files."""
    return get_state(app).images.images_dir is None


def run_cli(capsys, *args) -> tuple[int, str]:
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_copy_keeps_every_model_tag_description_picture_and_path(source, postgres_url, pg_app, tmp_path,
                                                                 capsys):
    before = api_view(source["client"])
    assert len(before["models"]) == 2 and len(before["models"][source["style"]]["pictures"]) == 9
    database = source["data_dir"] / "hikaze_model_manager.db"
    source_files = file_hashes(source["data_dir"]) | {"images": file_hashes(source["data_dir"] / "images")}
    target_dir = tmp_path / "pg-data"
    status, out = run_cli(capsys, "--data-dir", str(source["data_dir"]), "--database-url", postgres_url,
                          "--machine-name", MACHINE, "--target-data-dir", str(target_dir))
    assert status == 0, out
    assert "Verified." in out and "NOT" not in out
    for table in ("models", "tags", "model_tags", "model_metadata", "pictures", "pending_import",
                  "pending_model_tags", "file_hashes", "db_meta", "legacy_imports"):
        assert f"\n{table} " in out
    assert file_hashes(source["data_dir"]) | {"images": file_hashes(source["data_dir"] / "images")} == source_files
    assert database.exists()

    app = pg_app(postgres_url, target_dir, source["models_root"])
    after = api_view(app.test_client())
    assert without_pictures(after) == without_pictures(before)
    style = after["models"][source["style"]]
    assert style["path"] == str(source["files"]["loras/style.safetensors"][0])
    assert style["meta_json"]["description"] == "Soft light, 柔らかい光"
    assert [t["name"] for t in style["tags"]] == ["Anime", "ñame ü"]
    assert style["trigger_words"] == ["softlight"] and style["metadata_sources"]["description"] == "user"
    assert [t["name"] for t in after["tags"]] == ["Anime", "unused", "ñame ü"]
    assert [(p["id"], p["meta_json"]["description"]) for p in after["pending"]] == [(source["pending_id"], "waiting")]
    # Every picture file is a row with the same bytes, at the same position.
    assert stored_pictures(postgres_url) == picture_files(source["data_dir"])
    assert serves_pictures_from_rows(app)
    assert after == before
    # Pending pictures stay files: copied into the other data folder, byte for byte.
    assert (target_dir / "images" / "pending" / "pending_pic.png").read_bytes() == \
        (source["data_dir"] / "images" / "pending" / "pending_pic.png").read_bytes()
    # New tags and pending rows get ids after the copied ones.
    added = app.test_client().post("/api/tags_add", json={"newtags": ["fresh"]}).get_json()["tags"][0]
    assert added["id"] > max(t["id"] for t in before["tags"])


def test_second_run_changes_nothing(source, postgres_url, capsys):
    args = ("--data-dir", str(source["data_dir"]), "--database-url", postgres_url, "--machine-name", MACHINE)
    assert run_cli(capsys, *args)[0] == 0
    dump, version = pg_dump(postgres_url), version_of(postgres_url)
    report = copy_library(source["data_dir"], postgres_url, MACHINE)
    assert report.verified and report.added == 0
    assert all(t.added == t.filled == 0 and t.unchanged == t.source_rows - t.skipped for t in report.tables)
    status, out = run_cli(capsys, *args)
    assert status == 0 and "Verified. 0 row(s)" in out
    assert pg_dump(postgres_url) == dump
    assert version_of(postgres_url) == version


def test_dry_run_writes_nothing_and_reports_what_a_copy_would_do(source, postgres_url, capsys):
    before = pg_dump(postgres_url)
    status, out = run_cli(capsys, "--data-dir", str(source["data_dir"]), "--database-url", postgres_url,
                          "--machine-name", MACHINE, "--dry-run")
    assert status == 0 and out.startswith("Dry run: nothing was written.")
    assert pg_dump(postgres_url) == before
    report = copy_library(source["data_dir"], postgres_url, MACHINE, dry_run=True)
    models = next(t for t in report.tables if t.name == "models")
    assert (models.added, models.verified) == (2, True)


def test_live_wal_is_read_and_the_source_is_never_written(source, postgres_url):
    database = source["data_dir"] / "hikaze_model_manager.db"
    writer = sqlite3.connect(database, isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("UPDATE models SET name = 'Only in the WAL' WHERE sha256 = ?", (source["base"],))
        wal = database.with_name(database.name + "-wal")
        assert wal.stat().st_size > 0
        files = {p.name: p.read_bytes() for p in (database, wal)}
        report = copy_library(source["data_dir"], postgres_url, MACHINE)
        assert report.verified
        assert {p.name: p.read_bytes() for p in (database, wal)} == files
        assert writer.execute("SELECT name FROM models WHERE sha256 = ?", (source["base"],)).fetchone()[0] == \
            "Only in the WAL"  # the live writer is undisturbed
    finally:
        writer.close()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT name FROM hikaze.model_records WHERE sha256 = %s",
                            (source["base"],)).fetchone()[0] == "Only in the WAL"


def test_a_library_with_another_machines_data_keeps_it_and_merges(source, postgres_url, pg_app, tmp_path,
                                                                  capsys):
    gpu_models = tmp_path / "gpu-models"
    style_copy = gpu_models / "loras" / "sub" / "style copy.safetensors"
    style_copy.parent.mkdir(parents=True)
    (gpu_models / "checkpoints").mkdir()
    style_copy.write_bytes(source["files"]["loras/style.safetensors"][0].read_bytes())
    other_path, other_sha = write_model(gpu_models, "loras/other.safetensors")
    gpu = pg_app(postgres_url, tmp_path / "gpu-data", gpu_models, machine="gpu-box")
    client = gpu.test_client()
    assert client.post("/api/scan", json={}).status_code == 200
    ids = [p["id"] for p in client.get("/api/migration/pending_models").get_json()["models"]]
    assert len(client.post("/api/migration/import_models", json={"id": ids}).get_json()["success"]) == 2
    tags = client.post("/api/tags_add", json={"newtags": ["anime", "gpu-only"]}).get_json()["tags"]
    style = source["style"]
    for body in ({"name": "typed then cleared"}, {"name": ""},
                 {"meta_json": {"description": "typed on the GPU box"}, "tags": [t["id"] for t in tags]}):
        assert client.patch(f"/api/models/{style}", json=body).status_code == 200
    upload(client, style, picture("red"))  # the same picture as the source's first set
    upload(client, style, picture("orange"))
    gpu_before = api_view(client)

    status, out = run_cli(capsys, "--data-dir", str(source["data_dir"]), "--database-url", postgres_url,
                          "--machine-name", MACHINE)
    assert status == 0, out
    assert "models " + style[:8] in out or f"models {style} meta_json.description" in out
    assert "kept 'typed on the GPU box', source 'Soft light, 柔らかい光'" in out
    assert "tags anime name: kept 'anime', source 'Anime'" in out

    gpu_after = api_view(client)
    record = gpu_after["models"][style]
    assert record["path"] == str(style_copy)  # the other machine's path is its own
    assert gpu_after["models"][other_sha]["path"] == str(other_path)
    assert record["name"] == ""  # cleared by a person there: not filled
    assert record["meta_json"]["description"] == "typed on the GPU box"
    assert record["meta_json"]["community_links"] == "https://example.org/s"  # was empty: filled
    assert record["meta_json"]["prompts"] == {"positive": "soft light", "negative": "harsh"}
    assert record["trigger_words"] == ["softlight"]
    assert sorted(t["name"] for t in record["tags"]) == ["anime", "gpu-only", "ñame ü"]
    assert sorted(t["name"] for t in gpu_after["tags"]) == ["anime", "gpu-only", "unused", "ñame ü"]
    assert {t["name"]: t["id"] for t in gpu_after["tags"]}["anime"] == tags[0]["id"]
    assert gpu_after["pending"] == gpu_before["pending"] == []  # pending rows are per machine
    # Pictures: the other machine's two first, then the source's that were not there yet.
    positions = {(sha, pos, tier): digest for (sha, pos, tier), digest in stored_pictures(postgres_url).items()
                 if sha == style}
    files = picture_files(source["data_dir"])
    assert positions[(style, 0, "high")] == files[(style, 0, "high")]  # red, once
    assert [positions[(style, p, "high")] for p in (2, 3)] == [files[(style, s, "high")] for s in (1, 2)]
    assert len(positions) == 12
    assert record["pictures"] == [positions[(style, p, t)] for p in range(4) for t in ("high", "medium", "low")]

    desk = pg_app(postgres_url, tmp_path / "desk-data", source["models_root"]).test_client()
    desk_view = api_view(desk)
    assert desk_view["models"][style]["path"] == str(source["files"]["loras/style.safetensors"][0])
    assert desk_view["models"][source["base"]]["path"] == str(source["files"]["checkpoints/base.safetensors"][0])
    assert desk_view["models"][other_sha]["path"] == ""  # no copy on this machine
    assert desk_view["models"][style]["pictures"] == record["pictures"]  # pictures are shared
    assert [p["id"] for p in desk_view["pending"]] == [source["pending_id"]]

    dump = pg_dump(postgres_url)
    report = copy_library(source["data_dir"], postgres_url, MACHINE)
    assert report.verified and report.added == 0 and pg_dump(postgres_url) == dump


def test_a_wal_left_by_a_killed_server_is_read(source, postgres_url, tmp_path):
    database = source["data_dir"] / "hikaze_model_manager.db"
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("UPDATE models SET name = 'Committed, never checkpointed' WHERE sha256 = ?", (source["base"],))
    killed = tmp_path / "killed"
    killed.mkdir()
    for suffix in ("", "-wal"):  # what a SIGKILL leaves: the file and its WAL, no -shm
        (killed / f"hikaze_model_manager.db{suffix}").write_bytes(Path(f"{database}{suffix}").read_bytes())
    writer.close()
    before = sorted(p.name for p in killed.iterdir())
    report = copy_library(killed, postgres_url, MACHINE)
    assert report.verified
    assert sorted(p.name for p in killed.iterdir()) == before  # no -shm or -wal created beside it
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT name FROM hikaze.model_records WHERE sha256 = %s",
                            (source["base"],)).fetchone()[0] == "Committed, never checkpointed"


def test_a_reference_data_folder_is_upgraded_in_a_copy_and_moved(postgres_url, pg_app, tmp_path):
    from test_db import SHA_A, SHA_B, make_reference_data_folder

    data_dir = tmp_path / "reference"
    database = make_reference_data_folder(data_dir)
    with sqlite3.connect(database) as conn:  # a link to a model that is gone (no foreign keys in v2)
        conn.execute("INSERT INTO model_tags VALUES (?, 3)", ("f" * 64,))
        conn.execute("UPDATE sqlite_sequence SET seq = 40 WHERE name = 'tags'")  # tags 5..40 were deleted
    conn.close()
    files = {p.relative_to(data_dir): p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
    report = copy_library(data_dir, postgres_url, MACHINE)
    assert report.verified and report.source_version == 0
    assert {p.relative_to(data_dir): p.read_bytes() for p in data_dir.rglob("*") if p.is_file()} == files
    links = next(t for t in report.tables if t.name == "model_tags")
    assert (links.source_rows, links.skipped, links.added) == (4, 1, 3)

    client = pg_app(postgres_url, tmp_path / "pg-data", tmp_path / "models").test_client()
    record = client.get(f"/api/models/{SHA_A}").get_json()
    assert record["path"] == "/m/checkpoints/a.safetensors"
    assert record["meta_json"]["description"] == "desc A"
    assert record["tags"] == [{"id": 3, "name": "anime"}, {"id": 1, "name": "nsfw"}]
    assert client.get(f"/api/models/{SHA_B}").get_json()["tags"] == [{"id": 1, "name": "nsfw"}]
    assert client.get("/api/migration/pending_model?id=7").get_json()["tags"] == [
        {"id": 1, "name": "nsfw"}, {"id": 4, "name": "Style"}]
    assert stored_pictures(postgres_url) == {(SHA_A, 0, "high"): hashlib.sha256(b"RIFF").hexdigest()}
    # Ids the source handed out are never handed out again.
    assert client.post("/api/tags_add", json={"newtags": ["fresh"]}).get_json()["tags"][0]["id"] == 41


def test_the_password_is_never_printed(source, postgres_server, postgres_url, capsys):
    database = postgres_url.rsplit("/", 1)[1]
    url = postgres_server.new_role("mover", "pa55-w0rd-secret", database=database)
    status, out = run_cli(capsys, "--data-dir", str(source["data_dir"]), "--database-url", url,
                          "--machine-name", MACHINE)
    assert status == 0 and "mover:***@" in out and "pa55-w0rd-secret" not in out
    status, out = run_cli(capsys, "--data-dir", str(source["data_dir"]), "--machine-name", MACHINE,
                          "--database-url", url.replace("pa55-w0rd-secret", "wrong-secret"))
    assert status == 1 and "password authentication failed" in out
    assert "wrong-secret" not in out and "mover:***@" in out


def test_a_changed_picture_byte_fails_verification(source, postgres_url, capsys):
    args = ("--data-dir", str(source["data_dir"]), "--database-url", postgres_url, "--machine-name", MACHINE)
    assert run_cli(capsys, *args)[0] == 0
    with psycopg.connect(postgres_url) as conn:
        conn.execute("UPDATE hikaze.image_tiers SET data = data || '\\x00'::bytea"
                     " WHERE sha256 = %s AND position = 1 AND tier = 'medium'", (source["style"],))
    status, out = run_cli(capsys, *args)
    assert status == 1 and "NOT verified." in out
    assert [line for line in out.splitlines() if line.startswith("pictures ")][0].endswith("NO")


def test_every_table_of_the_current_schema_is_copied_or_named_as_not(tmp_path, postgres_url):
    with connection(tmp_path / "x.db") as conn:
        upgrades.apply(conn, tmp_path / "backups")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        conn.execute("CREATE TABLE added_later (x TEXT)")
    assert tables <= set(COPIED_TABLES) | set(NOT_COPIED)
    assert set(COPIED_TABLES) <= tables
    os.replace(tmp_path / "x.db", tmp_path / "hikaze_model_manager.db")
    report = copy_library(tmp_path, postgres_url, MACHINE)
    assert not report.verified
    assert report.problems == ["table added_later is not copied: this version does not know it"]


def test_unusable_sources_and_names_are_refused_before_anything_is_written(tmp_path, postgres_url, capsys):
    status, out = run_cli(capsys, "--data-dir", str(tmp_path / "nothing"), "--database-url", postgres_url)
    assert status == 1 and "no library database" in out
    newer = tmp_path / "newer"
    newer.mkdir()
    with connection(newer / "hikaze_model_manager.db") as conn:
        upgrades.apply(conn, tmp_path / "backups")
        conn.execute(f"PRAGMA user_version = {upgrades.CURRENT_VERSION + 1}")
    with pytest.raises(CopyError, match="newer than this Hikaze Manager"):
        copy_library(newer, postgres_url, MACHINE)
    with pytest.raises(CopyError, match="machine name"):
        copy_library(newer, postgres_url, " ")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM information_schema.schemata"
                            " WHERE schema_name = 'hikaze'").fetchone()[0] == 0


def test_what_the_library_changed_since_is_kept_and_reported(source, postgres_url, capsys):
    args = ("--data-dir", str(source["data_dir"]), "--database-url", postgres_url, "--machine-name", MACHINE)
    assert run_cli(capsys, *args)[0] == 0
    with psycopg.connect(postgres_url) as conn:  # the server on PostgreSQL relinked and renamed
        conn.execute("UPDATE hikaze.model_paths SET path = '/moved/base.safetensors' WHERE sha256 = %s",
                     (source["base"],))
        conn.execute("UPDATE hikaze.model_records SET name = 'Renamed' WHERE sha256 = %s", (source["style"],))
    dump = pg_dump(postgres_url)
    status, out = run_cli(capsys, *args)
    assert status == 0, out
    assert f"models {source['base']} path: kept '/moved/base.safetensors', source '" in out
    assert f"models {source['style']} name: kept 'Renamed', source 'Style LoRA'" in out
    models = [line.split() for line in out.splitlines() if line.startswith("models ")][0]
    assert models[1:7] == ["2", "0", "0", "2", "2", "0"] and models[-1] == "yes"
    assert "merged" in models
    assert pg_dump(postgres_url) == dump


def sequence_states(url: str) -> dict:
    """``last_value`` and ``is_called`` of every sequence (what the next id will be)."""
    with psycopg.connect(url) as conn:
        names = conn.execute("SELECT schemaname, sequencename FROM pg_sequences ORDER BY 1, 2").fetchall()
        return {f"{schema}.{name}": conn.execute(f'SELECT last_value, is_called FROM "{schema}"."{name}"').fetchone()
                for schema, name in names}


@pytest.fixture
def lived_in_target(postgres_url, pg_app, tmp_path):
    """A PostgreSQL library in use: one tag of its own (id 1) and a pending model of this machine."""
    models_root = tmp_path / "target-models"
    (models_root / "checkpoints").mkdir(parents=True)
    (models_root / "loras").mkdir(parents=True)
    app = pg_app(postgres_url, tmp_path / "target-data", models_root)
    client = app.test_client()
    assert client.post("/api/tags_add", json={"newtags": ["theirs"]}).get_json()["tags"][0]["id"] == 1
    write_model(models_root, "loras/theirs.safetensors")
    assert client.post("/api/scan", json={}).status_code == 200
    return client


@pytest.mark.parametrize("lived_in", [False, True], ids=["empty schema", "lived in"])
def test_a_dry_run_leaves_every_sequence_and_table_of_the_target_as_it_was(
        source, postgres_url, pg_app, tmp_path, capsys, lived_in, request):
    if lived_in:
        client = request.getfixturevalue("lived_in_target")
    else:  # the schema made by a server that never wrote: no sequence has handed out an id yet
        client = pg_app(postgres_url, tmp_path / "target-data", source["models_root"]).test_client()
    dump, sequences, version = pg_dump(postgres_url), sequence_states(postgres_url), version_of(postgres_url)
    status, out = run_cli(capsys, "--data-dir", str(source["data_dir"]), "--database-url", postgres_url,
                          "--machine-name", MACHINE, "--dry-run")
    assert status == 0 and out.startswith("Dry run: nothing was written."), out
    assert [line for line in out.splitlines() if line.startswith("tags ")][0].split()[2] == "3"
    assert sequence_states(postgres_url) == sequences
    assert pg_dump(postgres_url) == dump and version_of(postgres_url) == version
    # the next id is the one it was before the dry run
    fresh = client.post("/api/tags_add", json={"newtags": ["next"]}).get_json()["tags"][0]
    assert fresh["id"] == (2 if lived_in else 1)


@pytest.mark.parametrize("table, sql, key", [
    ("models", "UPDATE models SET name = ? WHERE sha256 = ?", "style"),
    ("tags", "UPDATE tags SET name = ? WHERE name = 'unused'", None),
])
def test_a_nul_character_in_the_source_fails_the_copy_cleanly_and_writes_nothing(
        source, postgres_url, lived_in_target, capsys, table, sql, key):
    with connection(source["data_dir"] / "hikaze_model_manager.db") as conn:
        conn.execute(sql, ("bad\x00name", source[key]) if key else ("bad\x00name",))
    dump, sequences = pg_dump(postgres_url), sequence_states(postgres_url)
    for dry_run in ((), ("--dry-run",)):
        status, out = run_cli(capsys, "--data-dir", str(source["data_dir"]), "--database-url", postgres_url,
                              "--machine-name", MACHINE, *dry_run)
        assert status == 1, out
        assert out.startswith("error: ") and "Traceback" not in out
        assert f"{table} row " in out and "U+0000" in out
        assert (source[key] if key else "id 3") in out, out  # the row's key
        assert pg_dump(postgres_url) == dump and sequence_states(postgres_url) == sequences
    with pytest.raises(CopyError, match="U\\+0000"):
        copy_library(source["data_dir"], postgres_url, MACHINE)


def test_a_copy_failing_halfway_leaves_the_sequences_as_they_were(source, postgres_url, lived_in_target,
                                                                  capsys):
    # SQLite keeps a text in an INTEGER column; PostgreSQL refuses it, after the tags were copied
    with connection(source["data_dir"] / "hikaze_model_manager.db") as conn:
        conn.execute("UPDATE models SET size_bytes = 'big' WHERE sha256 = ?", (source["style"],))
    dump, sequences = pg_dump(postgres_url), sequence_states(postgres_url)
    status, out = run_cli(capsys, "--data-dir", str(source["data_dir"]), "--database-url", postgres_url,
                          "--machine-name", MACHINE)
    assert status == 1 and out.startswith("error: ") and "bigint" in out, out
    assert sequence_states(postgres_url) == sequences
    assert pg_dump(postgres_url) == dump
    assert lived_in_target.post("/api/tags_add", json={"newtags": ["next"]}).get_json()["tags"][0]["id"] == 2
