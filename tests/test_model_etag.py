"""Lost updates: ``GET /api/models/{sha256}`` carries an ETag and a PATCH with a stale ``If-Match``
is a 412 that changes nothing, checked under the write lock (16 real clients keep all 16 tags)."""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from hikaze_manager.server import start_server

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


def test_an_image_upload_does_not_make_an_edit_stale(client, model):
    import io

    from PIL import Image

    etag = client.get(URL).headers["ETag"]
    picture = io.BytesIO()
    Image.new("RGB", (200, 150), "blue").save(picture, "PNG")
    uploaded = client.post("/api/images/upload", data={"sha256": SHA, "image": (io.BytesIO(picture.getvalue()), "a.png")},
                           content_type="multipart/form-data")
    assert uploaded.status_code == 200
    assert client.patch(URL, json={"name": "x"}, headers={"If-Match": etag}).status_code == 200


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
