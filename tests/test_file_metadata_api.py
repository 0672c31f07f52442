"""Metadata from files end to end through the API: scan -> pending -> promotion -> library record,
precedence, sidecars of another file, broken sidecars in the scan report, previews as pictures,
"user edits win" on PATCH and re-read, the re-read job, the schema upgrade of a v2 data folder."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from hikaze_manager import create_app
from hikaze_manager.db import connection, upgrades
from hikaze_manager.services.metadata.store import trigger_words_for
from hikaze_manager.state import get_state
from metadata_support import SAMPLES, copy_sample, sample_metadata, write_safetensors
from test_db import SHA_A, make_reference_data_folder

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

IMPORT = "/api/migration/import_models"
REREAD = "/api/models/reread_metadata"


def png_bytes(color="red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), color).save(buffer, "PNG")
    return buffer.getvalue()


def scan_and_promote(client, db_conn):
    report = client.post("/api/scan", json={}).get_json()
    ids = [r[0] for r in db_conn.execute("SELECT id FROM pending_import ORDER BY id")]
    promoted = client.post(IMPORT, json={"id": ids})
    assert promoted.status_code == 207
    return report, promoted.get_json()


def record(client, sha):
    response = client.get(f"/api/models/{sha}")
    assert response.status_code == 200
    return response.get_json()


def test_scan_promotion_imports_header_sidecars_and_preview(client, db_conn, models_root):
    loras = models_root / "loras"
    sha, autov3 = write_safetensors(loras / "pepper.safetensors",
                                    sample_metadata("civitai_seed_pepper_carrot_sdxl.json"))
    (loras / "pepper.metadata.json").write_text(json.dumps(
        {"model_name": "Pepper & Carrot", "sha256": sha, "base_model": "Illustrious",
         "civitai": {"trainedWords": ["pepper", "carrot"], "modelId": 5, "id": 6}}))
    (loras / "pepper.preview.png").write_bytes(png_bytes())
    report, promoted = scan_and_promote(client, db_conn)
    assert report["added"] == 1
    assert report["metadata"]["sidecars"] == 1 and report["metadata"]["previews"] == 1
    assert promoted["success"] and "warnings" not in promoted
    rec = record(client, sha)
    assert rec["name"] == "Pepper & Carrot"
    assert (rec["base_model"], rec["base_family"]) == ("Illustrious", "SDXL")
    assert rec["trigger_words"] == ["pepper", "carrot"]
    assert rec["meta_json"]["community_links"] == "https://civitai.com/models/5?modelVersionId=6"
    assert rec["meta_json"]["images_count"] == 1  # the preview beside the file became a picture
    assert (rec["autov2"], rec["autov3"]) == (sha[:10], autov3)
    assert rec["training_tags"][0] == {"tag": "1girl", "count": 96}
    assert rec["header_metadata"]["ss_output_name"] == "Pepper__Carrot"
    assert rec["metadata_sources"]["name"] == "lora_manager"
    assert rec["metadata_sources"]["trigger_words"] == "lora_manager"
    assert rec["imported_info"]["resolution"] == "1024x1024"
    listed = client.get("/api/models?type=loras").get_json()["models"][0]
    assert (listed["base_model"], listed["base_family"]) == ("Illustrious", "SDXL")
    assert trigger_words_for(db_conn, [sha, "f" * 64]) == {sha: ["pepper", "carrot"], "f" * 64: []}
    # The model file and the sidecars are never written.
    assert json.loads((loras / "pepper.metadata.json").read_text())["model_name"] == "Pepper & Carrot"


def test_precedence_lm_over_sm_over_header(client, db_conn, models_root):
    loras = models_root / "loras"
    sha, _ = write_safetensors(loras / "x.safetensors", {"modelspec.title": "Header title",
                                                         "modelspec.trigger_phrase": "hdr",
                                                         "modelspec.architecture": "flux-1-dev"})
    (loras / "x.cm-info.json").write_text(json.dumps(
        {"ModelName": "SM name", "TrainedWords": ["sm word"], "BaseModel": "Pony",
         "Hashes": {"SHA256": sha.upper()}}))
    (loras / "x.metadata.json").write_text(json.dumps({"model_name": "x", "tags": ["t"]}))
    scan_and_promote(client, db_conn)
    rec = record(client, sha)
    assert rec["name"] == "SM name"  # LM's model_name is the stem: a placeholder
    assert rec["trigger_words"] == ["sm word"]
    assert (rec["base_model"], rec["base_family"]) == ("Pony", "SDXL")
    assert rec["metadata_sources"] == {"name": "stability_matrix", "base_model": "stability_matrix",
                                       "trigger_words": "stability_matrix", "tags": "lora_manager"}
    assert [t["name"] for t in rec["tags"]] == ["t"]


def test_sidecar_of_another_file_is_not_applied_and_reported(client, db_conn, models_root):
    loras = models_root / "loras"
    sha, _ = write_safetensors(loras / "Pencil-Sketch-Illustrious.safetensors", {})
    copy_sample("derived/stability_matrix/Pencil-Sketch-Illustrious.cm-info.json",
                loras / "Pencil-Sketch-Illustrious.cm-info.json")
    _, promoted = scan_and_promote(client, db_conn)
    rec = record(client, sha)
    assert rec["name"] == "Pencil-Sketch-Illustrious.safetensors"
    assert rec["trigger_words"] == [] and rec["base_model"] == ""
    assert any("Pencil-Sketch-Illustrious.cm-info.json not applied: describes another file"
               in w["warning"] for w in promoted["warnings"])
    assert rec["metadata_report"]["rejected"][0]["source"] == "stability_matrix"


def test_broken_sidecars_never_stop_a_scan_and_are_named(client, db_conn, models_root):
    loras = models_root / "loras"
    write_safetensors(loras / "a.safetensors", {})
    write_safetensors(loras / "b.safetensors", {})
    (loras / "a.civitai.info").write_bytes(b'{"id":, "name": "x"}')
    (loras / "b.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({"activation text": "bw"}).encode())
    (loras / "c.safetensors").write_bytes(b"<html>404</html>")
    (loras / "d.metadata.json").write_text(json.dumps({"model_name": "Old D", "size": 1}))
    write_safetensors(loras / "d.safetensors", {})
    response = client.post("/api/scan", json={})
    assert response.status_code == 200
    report = response.get_json()
    assert report["added"] == 4
    named = {p["file"].rsplit("/", 1)[-1]: p["problem"] for p in report["metadata"]["problem_files"]}
    assert "invalid JSON" in named["a.civitai.info"]
    assert "not a safetensors file" in named["c.safetensors"]
    assert "describes another file" in named["d.metadata.json"]
    assert report["metadata"]["problems"] == 3
    pending = db_conn.execute("SELECT meta_json FROM pending_import WHERE path LIKE '%b.safetensors'")
    stored = json.loads(pending.fetchone()[0])["file_metadata"]
    assert stored["sidecars"]["a1111"]["trigger_words"] == ["bw"]  # a BOM is fine


def test_user_edits_win_over_import_and_reread(client, db_conn, models_root):
    loras = models_root / "loras"
    sha, _ = write_safetensors(loras / "u.safetensors", {"ss_output_name": "run", "ss_v2": "False"})
    sidecar = loras / "u.metadata.json"
    sidecar.write_text(json.dumps({"model_name": "Imported", "base_model": "SD 1.5",
                                   "modelDescription": "imported desc",
                                   "civitai": {"trainedWords": ["a"]}}))
    scan_and_promote(client, db_conn)
    assert record(client, sha)["name"] == "Imported"
    patched = client.patch(f"/api/models/{sha}", json={
        "name": "Mine", "trigger_words": [" x ", "y", "x", ""][:3], "base_model": "SDXL 1.0"})
    assert patched.status_code == 200
    body = patched.get_json()
    assert body["trigger_words"] == ["x", "y"] and body["base_family"] == "SDXL"
    assert body["metadata_sources"]["name"] == "user"
    # A PATCH of the unchanged whole record marks nothing else user-owned.
    again = client.patch(f"/api/models/{sha}", json=body).get_json()
    assert again["metadata_sources"]["description"] == "lora_manager"
    sidecar.write_text(json.dumps({"model_name": "Imported 2", "base_model": "Flux.1 D",
                                   "modelDescription": "newer desc",
                                   "civitai": {"trainedWords": ["b"]}}))
    response = client.post(REREAD, json={"sha256": [sha]})
    assert response.status_code == 200
    assert response.get_json()["updated"] == [sha]
    rec = record(client, sha)
    assert (rec["name"], rec["trigger_words"], rec["base_model"]) == ("Mine", ["x", "y"], "SDXL 1.0")
    assert rec["meta_json"]["description"] == "newer desc"  # imported before: refreshed
    # Clearing a field is a user edit too: a re-read does not fill it again.
    client.patch(f"/api/models/{sha}", json={"meta_json": {"description": ""}})
    client.post(REREAD, json={"sha256": [sha]})
    assert record(client, sha)["meta_json"]["description"] == ""


def test_existing_values_without_a_source_count_as_typed(client, db_conn, add_model, models_root):
    path = models_root / "loras" / "old.safetensors"
    sha, _ = write_safetensors(path, {"modelspec.title": "From header",
                                      "modelspec.description": "header desc"})
    add_model(sha, str(path), name="Typed long ago", type="loras",
              meta_json=json.dumps({"description": "typed desc"}))
    (models_root / "loras" / "old.png").write_bytes(png_bytes("blue"))
    report = client.post(REREAD, json={"sha256": [sha, "e" * 64]}).get_json()
    assert report["failed"] == [{"sha256": "e" * 64, "error": "Model not found"}]
    rec = record(client, sha)
    assert rec["name"] == "Typed long ago" and rec["meta_json"]["description"] == "typed desc"
    assert rec["meta_json"]["images_count"] == 1  # it had no picture: the preview is added
    client.post(REREAD, json={"sha256": [sha]})
    assert record(client, sha)["meta_json"]["images_count"] == 1  # never twice


def test_reread_as_a_background_job(client, db_conn, add_model, models_root):
    shas = []
    for i in range(3):
        path = models_root / "loras" / f"j{i}.safetensors"
        sha, _ = write_safetensors(path, {"ss_output_name": f"job {i}"})
        shas.append(add_model(sha, str(path), name=path.name, type="loras"))
    response = client.post(REREAD, json={"sha256": shas, "async": True})
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    job = get_state(client.application).jobs.wait(job_id, timeout=30)
    snapshot = client.get(f"/api/jobs/{job.id}").get_json()
    assert snapshot["state"] == "succeeded"
    assert snapshot["progress"]["files_done"] == snapshot["progress"]["files_total"] == 3
    assert sorted(snapshot["result"]["updated"]) == sorted(shas)
    assert record(client, shas[1])["name"] == "job 1"


def test_bad_requests_are_400_and_change_nothing(client, add_model, models_root):
    sha = add_model("a" * 64, str(models_root / "x.safetensors"), name="n")
    for body in ({}, {"sha256": []}, {"sha256": ["xyz"]}, {"sha256": "a" * 64},
                 {"sha256": [sha], "async": "yes"}, {"sha256": [sha], "other": 1}):
        response = client.post(REREAD, json=body)
        assert response.status_code == 400, body
        assert "error" in response.get_json()
    for body in ({"trigger_words": "a, b"}, {"trigger_words": [1]}, {"base_model": "x" * 300},
                 {"trigger_words": ["ok"], "tags": [999]}):
        response = client.patch(f"/api/models/{sha}", json=body)
        assert response.status_code == 400, body
    assert record(client, sha)["trigger_words"] == []


def test_v2_data_folder_upgrades_and_keeps_its_data(tmp_path):
    db_path = make_reference_data_folder(tmp_path / "data")
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data")})
    with connection(db_path) as conn:
        assert upgrades.user_version(conn) == upgrades.CURRENT_VERSION
        columns = {r[1] for r in conn.execute("PRAGMA table_info(models)")}
        assert {"base_model", "base_family"} <= columns
        assert conn.execute("SELECT COUNT(*) FROM model_metadata").fetchone()[0] == 0
    rec = app.test_client().get(f"/api/models/{SHA_A}").get_json()
    assert rec["meta_json"]["description"] == "desc A"
    assert rec["base_family"] == "UNKNOWN" and rec["trigger_words"] == []
    # Running the step again (e.g. after another step added the same columns) is harmless.
    with connection(db_path) as conn:
        upgrades._file_metadata(conn)


def _real_shaped(relative: str, sha: str) -> dict:
    """A sample sidecar with its hashes and size pointed at the test's file (so it is applied)."""
    data = json.loads((SAMPLES / relative).read_text(encoding="utf-8"))
    data.pop("size", None)
    if "Hashes" in data:
        data["Hashes"] = {"SHA256": sha.upper()}
    if "sha256" in data:
        data["sha256"] = sha
    for entry in data.get("files") or []:
        entry["hashes"] = {"SHA256": sha.upper()}
        entry.pop("sizeKB", None)
    return data


def tag_names(rec) -> list[str]:
    return sorted(t["name"] for t in rec["tags"])


def test_sidecar_tags_nsfw_and_author_reach_the_library(client, db_conn, models_root):
    loras = models_root / "loras"
    sha, _ = write_safetensors(loras / "anime.safetensors", {"modelspec.author": "header author"})
    lm = _real_shaped("lora_manager/lora-civitai.metadata.json", sha)
    lm["tags"] = [" anime ", "Anime", "None", "", "Unknown", "x" * 65, *lm["tags"]]
    (loras / "anime.metadata.json").write_text(json.dumps(lm))
    sm = _real_shaped("derived/stability_matrix/pp-enchanted-whimsy.cm-info.json", sha)
    sm.update({"Tags": ["sm tag"], "Nsfw": True})
    (loras / "anime.cm-info.json").write_text(json.dumps(sm))
    scan_and_promote(client, db_conn)
    rec = record(client, sha)
    # LM comes first and has tags: SM's tags are not mixed in; SM's nsfw still gives NSFW.
    assert tag_names(rec) == ["NSFW", "anime", "cel shading", "illustration", "style"]
    assert rec["metadata_sources"]["tags"] == "lora_manager"
    assert rec["author"] == "PixelPawsAI" and rec["metadata_sources"]["author"] == "stability_matrix"
    linked = db_conn.execute("SELECT COUNT(*) FROM model_tags WHERE model_hash = ?", (sha,))
    assert linked.fetchone()[0] == 5
    # The panel's NSFW filter shares the one tag whatever the case.
    assert [t["name"] for t in client.get("/api/tags").get_json()["tags"]].count("NSFW") == 1


def test_info_tags_and_at_most_twenty(client, db_conn, models_root):
    checkpoints = models_root / "checkpoints"
    sha, _ = write_safetensors(checkpoints / "frog.safetensors", {})
    info = _real_shaped("civitai_info/civitai_docs_v1318_froggy_style.civitai.info", sha)
    info["model"]["tags"] = [f"tag {i}" for i in range(30)]
    info["creator"] = {"username": "frogger"}
    (checkpoints / "frog.civitai.info").write_text(json.dumps(info))
    scan_and_promote(client, db_conn)
    rec = record(client, sha)
    assert len(rec["tags"]) == 20 and "NSFW" not in tag_names(rec)  # model.nsfw is false
    assert rec["author"] == "frogger"


def test_user_tag_and_author_edits_win_over_reread(client, db_conn, models_root):
    loras = models_root / "loras"
    sha, _ = write_safetensors(loras / "u.safetensors", {})
    sidecar = loras / "u.cm-info.json"
    sidecar.write_text(json.dumps({"ModelName": "U", "Tags": ["imported"],
                                   "AuthorUsername": "someone", "Hashes": {"SHA256": sha}}))
    scan_and_promote(client, db_conn)
    assert tag_names(record(client, sha)) == ["imported"]
    mine = client.post("/api/tags_add", json={"newtags": ["mine"]}).get_json()["tags"][0]["id"]
    patched = client.patch(f"/api/models/{sha}", json={"tags": [mine], "author": " Me "})
    assert patched.status_code == 200
    body = patched.get_json()
    assert body["author"] == "Me" and body["metadata_sources"]["tags"] == "user"
    assert body["metadata_sources"]["author"] == "user"
    sidecar.write_text(json.dumps({"ModelName": "U", "Tags": ["newer"], "Nsfw": True,
                                   "AuthorUsername": "other", "Hashes": {"SHA256": sha}}))
    assert client.post(REREAD, json={"sha256": [sha]}).status_code == 200
    rec = record(client, sha)
    assert tag_names(rec) == ["mine"] and rec["author"] == "Me"


def test_batch_tag_edit_makes_tags_the_users(client, db_conn, models_root):
    loras = models_root / "loras"
    sha, _ = write_safetensors(loras / "b.safetensors", {})
    sidecar = loras / "b.cm-info.json"
    sidecar.write_text(json.dumps({"Tags": ["one"], "Hashes": {"SHA256": sha}}))
    scan_and_promote(client, db_conn)
    response = client.post("/api/models/tags", json={"sha256": [sha], "remove": ["one"]})
    assert response.status_code == 200, response.get_json()
    sidecar.write_text(json.dumps({"Tags": ["two"], "Nsfw": True, "Hashes": {"SHA256": sha}}))
    client.post(REREAD, json={"sha256": [sha]})
    rec = record(client, sha)
    assert rec["tags"] == [] and rec["metadata_sources"]["tags"] == "user"


def test_nsfw_added_on_reread_while_tags_are_imported(client, db_conn, models_root):
    loras = models_root / "loras"
    sha, _ = write_safetensors(loras / "n.safetensors", {"modelspec.tags": "a, b, Unknown"})
    scan_and_promote(client, db_conn)
    assert tag_names(record(client, sha)) == ["a", "b"]
    (loras / "n.cm-info.json").write_text(json.dumps({"Nsfw": True, "Tags": ["c"],
                                                      "Hashes": {"SHA256": sha}}))
    assert client.post(REREAD, json={"sha256": [sha]}).get_json()["updated"] == [sha]
    assert tag_names(record(client, sha)) == ["NSFW", "a", "b"]  # has tags: only NSFW is added
