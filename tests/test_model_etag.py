"""Lost updates: ``GET /api/models/{sha256}`` carries an ETag and a PATCH with a stale ``If-Match``
is a 412 that changes nothing, checked under the write lock (16 real clients keep all 16 tags)."""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from hikaze_manager.server import start_server
from hikaze_manager.state import get_state

from snapshot_support import app_snapshot

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

SHA = "b" * 64
URL = f"/api/models/{SHA}"


@pytest.fixture
def model(add_model):
    return add_model(SHA, "/m/b.safetensors", name="B")


def test_get_has_a_strong_etag_and_answers_304_when_it_matches(client, model):
    first = client.get(URL)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert client.get(URL).headers["ETag"] == etag  # from the content: stable
    again = client.get(URL, headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_a_stale_if_match_is_412_and_changes_nothing(app, client, model):
    etag = client.get(URL).headers["ETag"]
    changed = client.patch(URL, json={"name": "first"}, headers={"If-Match": etag})
    assert changed.status_code == 200
    new_etag = changed.headers["ETag"]
    assert new_etag != etag and client.get(URL).headers["ETag"] == new_etag
    before = app_snapshot(app)
    stale = client.patch(URL, json={"name": "second"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert "changed by someone else" in stale.get_json()["error"]
    assert app_snapshot(app) == before
    assert client.get(URL).get_json()["name"] == "first"


@pytest.mark.parametrize("header", [None, "*", '"nope", {current}'])
def test_no_header_star_and_a_list_holding_the_current_tag_still_write(client, model, header):
    headers = {}
    if header is not None:
        headers["If-Match"] = header.format(current=client.get(URL).headers["ETag"])
    assert client.patch(URL, json={"name": "ok"}, headers=headers).status_code == 200
    assert client.get(URL).get_json()["name"] == "ok"


def test_a_weak_tag_never_matches(client, model):
    etag = client.get(URL).headers["ETag"]
    assert client.patch(URL, json={"name": "x"}, headers={"If-Match": "W/" + etag}).status_code == 412


def _upload(client):
    import io

    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (200, 150), "blue").save(picture, "PNG")
    image = (io.BytesIO(picture.getvalue()), "a.png")
    uploaded = client.post("/api/images/upload", data={"sha256": SHA, "image": image},
                           content_type="multipart/form-data")
    assert uploaded.status_code == 200


def test_the_etag_changes_with_the_picture_count_and_a_stale_one_is_answered_in_full(client, model):
    first = client.get(URL)
    _upload(client)  # e.g. from another machine: the count in the body changes, so must the ETag
    second = client.get(URL, headers={"If-None-Match": first.headers["ETag"]})
    assert second.status_code == 200
    assert second.get_json()["meta_json"]["images_count"] == 1
    assert second.headers["ETag"] != first.headers["ETag"]
    unchanged = client.get(URL, headers={"If-None-Match": second.headers["ETag"]})
    assert unchanged.status_code == 304 and unchanged.data == b""
    assert unchanged.headers["ETag"] == second.headers["ETag"]


def test_a_picture_upload_makes_an_old_if_match_stale_and_the_fresh_etag_writes(client, model):
    etag = client.get(URL).headers["ETag"]
    _upload(client)
    stale = client.patch(URL, json={"name": "x"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    current = stale.get_json()["details"]["etag"]
    assert f'"{current}"' == client.get(URL).headers["ETag"]  # the 412 names the current ETag
    saved = client.patch(URL, json={"name": "x"}, headers={"If-Match": f'"{current}"'})
    assert saved.status_code == 200 and saved.get_json()["name"] == "x"


def test_the_etag_is_a_digest_of_the_exact_body(client, model):
    import hashlib

    response = client.get(URL)
    assert response.headers["ETag"] == f'"{hashlib.sha256(response.data).hexdigest()[:32]}"'
    patched = client.patch(URL, json={"name": "y"})
    assert patched.headers["ETag"] == f'"{hashlib.sha256(patched.data).hexdigest()[:32]}"'
    assert patched.data == client.get(URL).data


_METADATA = "INSERT INTO model_metadata(sha256) VALUES (?)"
# Fields of the body that no PATCH writes: a scan, a re-read of metadata or another machine does.
_OTHER_WRITES = {
    "size_bytes": "UPDATE models SET size_bytes = 12345 WHERE sha256 = ?",
    "created_at": "UPDATE models SET created_at = 1800000000000 WHERE sha256 = ?",
    "base_family": "UPDATE models SET base_family = 'SDXL' WHERE sha256 = ?",
    "training_tags": "UPDATE model_metadata SET training_tags = '[\"cat\"]' WHERE sha256 = ?",
    "header_metadata": "UPDATE model_metadata SET header_metadata = '{\"a\": \"b\"}' WHERE sha256 = ?",
    "autov2": "UPDATE model_metadata SET autov2 = 'abcdef0123' WHERE sha256 = ?",
    "autov3": "UPDATE model_metadata SET autov3 = 'ABCDEF012345' WHERE sha256 = ?",
    "imported_info": "UPDATE model_metadata SET extra = '{\"civitai\": 1}' WHERE sha256 = ?",
    "metadata_report": "UPDATE model_metadata SET report = '{\"read\": [\"x\"]}' WHERE sha256 = ?",
}


@pytest.mark.parametrize("field", sorted(_OTHER_WRITES))
def test_any_change_of_the_body_changes_the_etag_and_stales_an_if_match(client, db_conn, model, field):
    db_conn.execute(_METADATA, (SHA,))
    first = client.get(URL)
    db_conn.execute(_OTHER_WRITES[field], (SHA,))
    second = client.get(URL, headers={"If-None-Match": first.headers["ETag"]})
    assert second.status_code == 200
    assert second.get_json()[field] != first.get_json()[field]
    assert second.headers["ETag"] != first.headers["ETag"]
    stale = client.patch(URL, json={"name": "x"}, headers={"If-Match": first.headers["ETag"]})
    assert stale.status_code == 412
    assert client.get(URL).get_json()["name"] == "B"


def test_a_model_is_read_once_until_the_next_commit(app, client, db_conn, model):
    """The body is kept between requests (its reads cost more than the rest of a request) and
    never past a commit, from any connection."""
    details = get_state(app).details
    first = client.get(URL)
    count = details.builds
    again = client.get(URL)
    assert again.data == first.data and again.headers["ETag"] == first.headers["ETag"]
    assert details.builds == count
    db_conn.execute("UPDATE models SET name = 'C' WHERE sha256 = ?", (SHA,))
    assert client.get(URL).get_json()["name"] == "C" and details.builds == count + 1


@pytest.mark.sqlite_only  # picture files written beside the server
def test_a_picture_written_by_another_process_is_counted_at_once(app, client, model):
    first = client.get(URL)
    folder = get_state(app).paths.images_dir
    for tier in ("low", "medium", "high"):
        (folder / f"{SHA}_0_{tier}.webp").write_bytes(b"RIFF")
    second = client.get(URL, headers={"If-None-Match": first.headers["ETag"]})
    assert second.status_code == 200 and second.get_json()["meta_json"]["images_count"] == 1


def test_renaming_one_of_its_tags_changes_the_etag(client, model):
    tag = client.post("/api/tags_add", json={"newtags": ["old"]}).get_json()["tags"][0]
    assert client.patch(URL, json={"tags": [tag["id"]]}).status_code == 200
    etag = client.get(URL).headers["ETag"]
    renamed = client.post("/api/tags/rename", json={"id": tag["id"], "name": "new"})
    assert renamed.status_code == 200, renamed.get_json()
    assert client.get(URL).get_json()["tags"] == [{"id": tag["id"], "name": "new"}]
    assert client.get(URL, headers={"If-None-Match": etag}).status_code == 200


def _request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})} if payload else {}
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.msg, json.loads(response.read() or b"null")
    finally:
        conn.close()


def test_sixteen_clients_adding_one_tag_each_keep_all_sixteen(app, client, model):
    names = [f"writer {i}" for i in range(16)]
    tag_ids = {t["name"]: t["id"] for t in client.post(
        "/api/tags_add", json={"newtags": names}).get_json()["tags"]}
    handle = start_server(app, "127.0.0.1", 0, threads=8)
    conflicts = []
    errors = []
    start = threading.Barrier(16)

    def writer(name):
        try:
            start.wait()
            for _ in range(200):
                status, headers, record = _request(handle.port, "GET", URL)
                assert status == 200
                ids = [t["id"] for t in record["tags"]] + [tag_ids[name]]
                status, _, body = _request(handle.port, "PATCH", URL, {"tags": ids},
                                           {"If-Match": headers["ETag"]})
                if status == 200:
                    return
                assert status == 412, body
                conflicts.append(name)
            raise AssertionError(f"{name} never got its write in")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in names]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        handle.stop()
    assert not errors, errors
    assert sorted(t["name"] for t in client.get(URL).get_json()["tags"]) == sorted(names)
    assert conflicts, "16 simultaneous writers should have met at least one stale If-Match"


def test_a_get_with_a_stale_if_match_is_a_json_error_not_the_record(client, model):
    etag = client.get(URL).headers["ETag"]
    stale = client.get(URL, headers={"If-Match": '"not-it"'})
    assert stale.status_code == 412
    assert list(stale.get_json()) == ["error"] and "If-Match" in stale.get_json()["error"]
    assert client.get(URL, headers={"If-Match": etag}).status_code == 200
