"""Images API through the Flask test client (and one real waitress server), on real files."""

from __future__ import annotations

import http.client
import io
import json
import struct
import threading
import time
import uuid
import zlib

import pytest
from PIL import Image

from hikaze_manager.server import start_server
from hikaze_manager.services.files import TMP_PREFIX
from hikaze_manager.state import get_state

pytestmark = pytest.mark.both_stores  # the API suite runs on SQLite and on PostgreSQL

SHA = "0123456789abcdef" * 4
OTHER = "fedcba9876543210" * 4


def encode(im: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def picture(size=(300, 200), color="red", mode="RGB") -> bytes:
    im = Image.new(mode, size, color)
    im.paste("blue" if mode == "RGB" else 0, (0, 0, size[0] // 2, size[1] // 2))
    return encode(im)


def decoded(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def png_bomb(width: int, height: int) -> bytes:
    """A PNG of about 80 bytes whose IHDR claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def upload(client, sha: str, data: bytes, filename: str = "a.png"):
    return client.post(
        "/api/images/upload",
        data={"sha256": sha, "image": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )


def assert_json_error(response, code: int) -> str:
    assert response.status_code == code, (response.status_code, response.data[:200])
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
    return body["error"]


def image_files(app) -> list[str]:
    return sorted(p.name for p in get_state(app).paths.images_dir.iterdir() if p.is_file())


def fetch(client, url: str, **kwargs):
    """GET a file response and close it (send_file responses hold an open file)."""
    with client.get(url, **kwargs) as response:
        response.body = response.get_data()
        return response


@pytest.fixture
def model(add_model):
    add_model(SHA, "/models/checkpoints/a.safetensors", name="a")
    return SHA


def img_count(client, sha: str) -> int:
    response = client.get(f"/api/images/get_img_count?sha256={sha}")
    assert response.status_code == 200
    return response.get_json()["count"]


def counts_everywhere(client, sha: str) -> tuple[int, int, int]:
    """get_img_count, images_count of GET /api/models/{sha} and of the list by type."""
    detail = client.get(f"/api/models/{sha}").get_json()["meta_json"]["images_count"]
    listed = client.get("/api/models?type=checkpoints").get_json()["models"]
    in_list = next(m["images_count"] for m in listed if m["sha256"] == sha)
    return img_count(client, sha), detail, in_list


# --- upload, count, serve, delete -------------------------------------------------------------


def test_upload_serve_count_delete_round_trip(client, model, app):
    assert counts_everywhere(client, model) == (0, 0, 0)
    widths = [200, 210, 220]
    for expected_seq, width in enumerate(widths):
        response = upload(client, model, picture((width, 100)))
        assert response.status_code == 200
        assert response.get_json() == {
            "status": "success", "base_name": f"{model}_{expected_seq}",
            "seq": expected_seq, "count": expected_seq + 1,
        }
        assert counts_everywhere(client, model) == (expected_seq + 1,) * 3
    for seq, width in enumerate(widths):
        response = fetch(client, f"/api/images/{model}_{seq}.webp")
        assert response.status_code == 200
        assert decoded(response.body).size == (width, 100)

    response = client.delete(f"/api/images/delete?sha256={model}&seq=0")
    assert response.status_code == 200 and response.get_json() == {"status": "success"}
    assert counts_everywhere(client, model) == (2, 2, 2)
    assert [decoded(fetch(client, f"/api/images/{model}_{s}").body).size[0] for s in (0, 1)] == [
        210, 220]
    assert fetch(client, f"/api/images/{model}_2").status_code == 404
    assert not [n for n in image_files(app) if n.startswith(TMP_PREFIX)]


def test_uppercase_sha_is_accepted_and_stored_lower_case(client, model, app):
    response = upload(client, model.upper(), picture())
    assert response.status_code == 200
    assert response.get_json()["base_name"] == f"{model}_0"
    assert img_count(client, model.upper()) == 1
    assert fetch(client, f"/api/images/{model.upper()}_0.webp").status_code == 200


@pytest.mark.parametrize(
    ("path", "quality", "size"),
    [("{sha}", None, (1632, 1224)), ("{sha}.webp", "high", (1632, 1224)),
     ("{sha}_0", "medium", (1077, 807)), ("{sha}_0.webp", "low", (538, 403)),
     ("{sha}_0.webp", "LOW", (538, 403))],
)
def test_serving_tiers(client, model, path, quality, size):
    assert upload(client, model, picture((2000, 1500))).status_code == 200
    url = "/api/images/" + path.format(sha=model) + (f"?quality={quality}" if quality else "")
    response = fetch(client, url + ("&" if quality else "?") + "rev=7")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/webp"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-cache" in response.headers["Cache-Control"]
    assert response.headers.get("ETag") and response.headers.get("Last-Modified")
    assert int(response.headers["Content-Length"]) == len(response.body)
    assert decoded(response.body).size == size


def test_conditional_get_and_etag_change_after_renumbering(client, model):
    upload(client, model, picture((100, 50)))
    upload(client, model, picture((120, 50)))
    first = fetch(client, f"/api/images/{model}_0.webp")
    etag = first.headers["ETag"]
    again = fetch(client, f"/api/images/{model}_0.webp", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.body == b""
    since = fetch(client, f"/api/images/{model}_0.webp",
                  headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert since.status_code == 304
    assert client.delete(f"/api/images/delete?sha256={model}&seq=0").status_code == 200
    moved = fetch(client, f"/api/images/{model}_0.webp", headers={"If-None-Match": etag})
    assert moved.status_code == 200  # other bytes under the same URL: no stale 304
    assert moved.headers["ETag"] != etag
    assert decoded(moved.body).size == (120, 50)


def test_range_request(client, model):
    upload(client, model, picture())
    full = fetch(client, f"/api/images/{model}_0.webp").body
    part = fetch(client, f"/api/images/{model}_0.webp", headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.body == full[:10]
    beyond = fetch(client, f"/api/images/{model}_0.webp", headers={"Range": "bytes=999999-"})
    assert_json_error(beyond, 416)


def test_head_request(client, model):
    upload(client, model, picture())
    with client.head(f"/api/images/{model}_0.webp") as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "image/webp"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/api/images/{sha}_5.webp", 404),
        ("/api/images/{other}", 404),
        ("/api/images/{sha}_0.webp?quality=ultra", 400),
        ("/api/images/{sha}_x", 400),
        ("/api/images/{sha}_-1", 400),
        ("/api/images/{sha}_0.png", 400),
        ("/api/images/..%2F..%2Fhikaze_model_manager.db", 404),
        ("/api/images/abc_0.webp", 400),
        ("/api/images/upload", 400),
        ("/api/images/*", 400),
    ],
)
def test_image_errors(client, model, url, code):
    upload(client, model, picture())
    response = fetch(client, url.format(sha=model, other=OTHER))
    assert_json_error(response, code)


@pytest.mark.sqlite_only  # tier files of a reference data folder
def test_a_legacy_half_set_serves_the_nearest_tier(client, app):
    images = get_state(app).paths.images_dir
    high = encode(Image.new("RGB", (30, 20), "red"), "WEBP")
    (images / f"{SHA}_0_high.webp").write_bytes(high)
    response = fetch(client, f"/api/images/{SHA}_0.webp?quality=low")
    assert response.status_code == 200 and response.body == high


@pytest.mark.parametrize(
    ("query", "code"),
    [("", 400), ("?sha256=", 400), ("?sha256=xyz", 400), ("?sha256=*", 400),
     (f"?sha256={'a' * 63}", 400)],
)
def test_count_errors(client, query, code):
    assert_json_error(client.get("/api/images/get_img_count" + query), code)


def test_count_of_unknown_model_is_zero(client):
    assert img_count(client, OTHER) == 0


# --- upload errors ----------------------------------------------------------------------------


def test_upload_needs_an_existing_model(client, app):
    assert_json_error(upload(client, OTHER, picture()), 404)
    assert image_files(app) == []


@pytest.mark.parametrize("bad_sha", ["../../../tmp/evil", "x" * 64, "ab" * 31, "", "*"])
def test_upload_rejects_bad_sha_without_writing(client, app, tmp_path, bad_sha):
    assert_json_error(upload(client, bad_sha, picture()), 400)
    assert image_files(app) == []
    assert not list(tmp_path.rglob("evil*"))


def test_upload_missing_parts(client, model):
    response = client.post("/api/images/upload", data={"sha256": model},
                           content_type="multipart/form-data")
    assert "Missing" in assert_json_error(response, 400)
    response = client.post("/api/images/upload", data={"image": (io.BytesIO(picture()), "a.png")},
                           content_type="multipart/form-data")
    assert_json_error(response, 400)


def test_upload_must_be_multipart(client, model):
    response = client.post("/api/images/upload", json={"sha256": model, "image": "x"})
    assert_json_error(response, 415)
    response = client.post("/api/images/upload", data=picture(), content_type="image/png")
    assert_json_error(response, 415)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", 400),
        (b"hello, I am not an image", 415),
        (picture((400, 300))[:600], 400),
        (png_bomb(20000, 20000), 413),
        (png_bomb(9000, 9000), 413),
        (png_bomb(10000, 10000), 413),
    ],
    ids=["empty", "text", "truncated-png", "bomb-400MP", "81MP", "100MP-warning"],
)
def test_upload_bad_images(client, model, app, data, code):
    assert_json_error(upload(client, model, data), code)
    assert image_files(app) == []  # no set, no temp file
    assert img_count(client, model) == 0


def test_upload_body_above_the_limit_is_413_json(client, model, app):
    assert app.config["MAX_CONTENT_LENGTH"] == 64 * 1024 * 1024
    app.config["MAX_CONTENT_LENGTH"] = 50_000  # read per request by Flask
    big = encode(Image.effect_noise((300, 300), 64).convert("RGB"))
    assert len(big) > 50_000
    assert_json_error(upload(client, model, big), 413)
    assert image_files(app) == []


def test_supported_formats_upload(client, model):
    base = Image.new("RGB", (64, 48), "green")
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "blue")]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=40)
    for data in (encode(base), encode(base, "JPEG"), encode(base, "WEBP"), gif.getvalue(),
                 encode(Image.new("RGBA", (1, 1), (1, 2, 3, 4))),
                 encode(base.convert("P", palette=Image.Palette.ADAPTIVE)),
                 encode(base, "BMP"), encode(base, "TIFF"), encode(base, "TIFF", compression="jpeg"),
                 encode(Image.new("RGB", (20000, 1), "green"))):  # wider than WebP allows
        assert upload(client, model, data).status_code == 200
    assert img_count(client, model) == 10
    first_frame = decoded(fetch(client, f"/api/images/{model}_3").body)
    assert first_frame.getpixel((32, 24))[0] > 200  # red, the first frame


# --- delete errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "code"),
    [("", 400), ("?sha256={sha}", 400), ("?seq=0", 400), ("?sha256={sha}&seq=x", 400),
     ("?sha256={sha}&seq=-1", 400), ("?sha256=../../x&seq=0", 400), ("?sha256={sha}&seq=1.5", 400),
     ("?sha256={sha}&seq=1", 404), ("?sha256={other}&seq=0", 404)],
)
def test_delete_errors(client, model, app, query, code):
    upload(client, model, picture())
    before = image_files(app)
    assert_json_error(client.delete("/api/images/delete" + query.format(sha=model, other=OTHER)),
                      code)
    assert image_files(app) == before


# --- concurrency through a real server --------------------------------------------------------


def test_eight_parallel_uploads_through_waitress(app, model, client):
    handle = start_server(app, "127.0.0.1", 0, threads=8)
    results: list[tuple[int, dict]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def post(width: int):
        boundary = uuid.uuid4().hex
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"sha256\"\r\n\r\n{model}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            'filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode() + picture((width, 64)) + f"\r\n--{boundary}--\r\n".encode()
        conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=60)
        try:
            barrier.wait()
            conn.request("POST", "/api/images/upload", body,
                         {"Content-Type": f"multipart/form-data; boundary={boundary}"})
            response = conn.getresponse()
            results.append((response.status, json.loads(response.read())))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=post, args=(100 + i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=10)
        conn.request("GET", f"/api/images/get_img_count?sha256={model}")
        counted = json.loads(conn.getresponse().read())
        conn.close()
    finally:
        handle.stop()
    assert not errors
    assert [status for status, _ in results] == [200] * 8
    assert sorted(body["seq"] for _, body in results) == list(range(8))
    assert counted == {"count": 8}
    assert counts_everywhere(client, model) == (8, 8, 8)
    widths = set()
    for seq in range(8):
        sizes = [decoded(fetch(client, f"/api/images/{model}_{seq}?quality={q}").body).size
                 for q in ("high", "medium", "low")]
        assert sizes[1][0] == int(sizes[0][0] * 0.66) and sizes[2][0] == int(sizes[0][0] * 0.33)
        widths.add(sizes[0][0])
    assert widths == {100 + i for i in range(8)}
    assert not [n for n in image_files(app) if n.startswith(TMP_PREFIX)]


# --- pending images ---------------------------------------------------------------------------


@pytest.fixture
def pending(app, db_conn):
    """A pending folder with a PNG, a JPEG, a real WebP and a text file; row 7 points at the PNG."""
    folder = get_state(app).paths.pending_dir
    png = picture((400, 300))
    (folder / "model_1_1700000000000_cat.png").write_bytes(png)
    (folder / "photo.jpg").write_bytes(encode(Image.new("RGB", (50, 40), "red"), "JPEG"))
    (folder / "ready.webp").write_bytes(encode(Image.new("RGB", (30, 20), "red"), "WEBP"))
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.png").write_text("<html>not an image</html>")
    meta = {"images": ["C:\\old\\images\\model_1_1700000000000_cat.png"], "description": ""}
    db_conn.execute("INSERT INTO pending_import(id, path, name, meta_json) VALUES (7, ?, ?, ?)",
                    ("/m/a.safetensors", "a", json.dumps(meta)))
    db_conn.execute("INSERT INTO pending_import(id, path, name, meta_json) VALUES (8, ?, ?, ?)",
                    ("/m/b.safetensors", "b", json.dumps({"images": []})))
    db_conn.execute("INSERT INTO pending_import(id, path, name, meta_json) VALUES (9, ?, ?, ?)",
                    ("/m/c.safetensors", "c", "not json"))
    return {"folder": folder, "png": png}


def test_pending_by_id_serves_the_original(client, pending):
    response = fetch(client, "/api/images/pending/7")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.body == pending["png"]
    for missing in ("8", "9", "10", "99999999999999999999999"):
        assert_json_error(fetch(client, f"/api/images/pending/{missing}"), 404)


@pytest.mark.parametrize(
    ("name", "mimetype"),
    [("model_1_1700000000000_cat.png", "image/png"), ("model_1_1700000000000_cat", "image/png"),
     ("photo.jpg", "image/jpeg"), ("photo", "image/jpeg"), ("ready", "image/webp")],
)
def test_pending_by_name_serves_the_original(client, pending, name, mimetype):
    response = fetch(client, f"/api/images/pending/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == mimetype
    assert decoded(response.body).format in ("PNG", "JPEG", "WEBP")
    etag = response.headers["ETag"]
    assert fetch(client, f"/api/images/pending/{name}",
                 headers={"If-None-Match": etag}).status_code == 304


def test_pending_webp_converts_the_original(client, pending):
    response = fetch(client, "/api/images/pending/model_1_1700000000000_cat.webp")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/webp"
    assert decoded(response.body).size == (400, 300)
    etag = response.headers["ETag"]
    again = fetch(client, "/api/images/pending/model_1_1700000000000_cat.webp",
                  headers={"If-None-Match": etag})
    assert again.status_code == 304
    low = fetch(client, "/api/images/pending/model_1_1700000000000_cat.webp?quality=low")
    assert decoded(low.body).size == (132, 99)
    by_id = fetch(client, "/api/images/pending/7.webp")
    assert by_id.status_code == 200 and decoded(by_id.body).format == "WEBP"


def test_pending_webp_serves_a_literal_webp_as_is(client, pending):
    response = fetch(client, "/api/images/pending/ready.webp")
    assert response.status_code == 200
    assert response.body == (pending["folder"] / "ready.webp").read_bytes()


@pytest.mark.parametrize(
    "name",
    ["notes.txt", "notes", "fake.png", "fake.webp", "missing.png", "missing", "missing.webp"],
)
def test_pending_non_images_and_missing_are_404(client, pending, name):
    assert_json_error(fetch(client, f"/api/images/pending/{name}"), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/api/images/pending/..%2F..%2Fhikaze_model_manager.db",
        "/api/images/pending/..%2F..%2F..%2F..%2F..%2Fetc%2Fhostname",
        "/api/images/pending/%2e%2e%2f%2e%2e%2fhikaze_model_manager.db",
        "/api/images/pending/..",
        "/api/images/pending/%2e%2e",
        "/api/images/pending/..%5C..%5Chikaze_model_manager.db",
        "/api/images/pending/*",
        "/api/images/pending/%2A",
        "/api/images/pending/model_1*",
        "/api/images/pending/%3F",
        "/api/images/pending/[m]odel_1_1700000000000_cat.png",
        "/api/images/pending/photo.jpg%00.png",
        "/api/images/pending//etc/passwd",
        "/api/images/pending/%2Fetc%2Fpasswd",
        "/api/images/pending/.hidden",
        "/api/images/pending/*.webp",
        "/api/images/pending/..%2F..%2Fhikaze_model_manager.webp",
        "/api/images/pending/outside.png",
        "/api/images/pending/outside",
        "/api/images/pending/outside.webp",
    ],
)
def test_pending_traversal_never_serves_other_files(client, pending, app, tmp_path, path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(picture((10, 10)))
    (pending["folder"] / "outside.png").symlink_to(secret)
    response = fetch(client, path)
    assert response.status_code in (400, 404)
    assert response.mimetype == "application/json"
    assert response.body != secret.read_bytes()
    assert b"SQLite" not in response.body and b"root:" not in response.body


@pytest.mark.sqlite_only  # the images folder on disk
def test_a_symlink_in_the_images_folder_is_never_followed(client, model, app, tmp_path):
    secret = tmp_path / "passwd"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    images_dir = get_state(app).paths.images_dir
    (images_dir / f"{model}_9_high.webp").symlink_to(secret)
    (images_dir / f"{model}_0_high.webp").symlink_to(secret)
    for url in (f"/api/images/{model}_9.webp", f"/api/images/{model}_9", f"/api/images/{model}"):
        response = fetch(client, url)
        assert response.status_code == 404, url
        assert b"root:" not in response.body
    assert img_count(client, model) == 0
    pending_dir = get_state(app).paths.pending_dir
    pending_dir.mkdir(parents=True, exist_ok=True)
    real = pending_dir / "real.png"
    real.write_bytes(picture((10, 10)))
    (pending_dir / "inside.png").symlink_to(real)  # even a link to a file inside is refused
    assert fetch(client, "/api/images/pending/inside.png").status_code == 404
    assert fetch(client, "/api/images/pending/inside.webp").status_code == 404
    assert fetch(client, "/api/images/pending/real.png").status_code == 200


def _solid(rgb) -> bytes:
    return encode(Image.new("RGB", (48, 32), rgb))


def _shown(data: bytes):
    """The palette colour (levels 30..230 step 50) a solid WebP shows, or None."""
    im = decoded(data).convert("RGB")
    rgb = im.getpixel((im.width // 2, im.height // 2))
    snapped = tuple(min((30, 80, 130, 180, 230), key=lambda lv: abs(lv - v)) for v in rgb)
    return snapped if all(abs(a - b) <= 12 for a, b in zip(rgb, snapped)) else None


def test_uploads_deletes_and_reads_racing_on_one_model_keep_every_set_whole(app, model):
    """Real waitress, 3 uploaders, 2 deleters and 2 readers on one model; every picture a colour
    of its own. Readers never get a tier that is not a whole upload; at the end the sets are a
    run 0..n-1, each of one picture, n = uploads - deletes, no colour twice, no temp file."""
    handle = start_server(app, "127.0.0.1", 0, threads=8)
    levels = (30, 80, 130, 180, 230)
    palette = [(r, g, b) for r in levels for g in levels for b in levels]
    uploaded, deleted, problems = [], [0], []
    lock = threading.Lock()
    done = threading.Event()

    def call(method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=60)
        try:
            conn.request(method, path, body, headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def uploader(offset):
        for rgb in palette[offset::3][:8]:
            boundary = uuid.uuid4().hex
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"sha256\"\r\n\r\n"
                    f"{model}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                    f"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + \
                _solid(rgb) + f"\r\n--{boundary}--\r\n".encode()
            status, _ = call("POST", "/api/images/upload", body,
                             {"Content-Type": f"multipart/form-data; boundary={boundary}"})
            with lock:
                (uploaded.append(rgb) if status == 200 else problems.append(("upload", status)))

    def deleter():
        attempts, deadline = 0, time.monotonic() + 60
        while attempts < 6 and time.monotonic() < deadline:
            status, body = call("GET", f"/api/images/get_img_count?sha256={model}")
            count = json.loads(body)["count"]
            if count == 0:  # the uploads have not begun (a loaded machine): not an attempt
                time.sleep(0.02)
                continue
            attempts += 1
            status, body = call("DELETE", f"/api/images/delete?sha256={model}&seq={count - 1 - attempts % count}")
            if status == 200:
                with lock:
                    deleted[0] += 1
            elif status != 404:  # lost a race to another deleter: fine
                problems.append(("delete", status, body))

    def reader():
        while not done.is_set():
            for seq in range(4):
                for quality in ("high", "medium", "low"):
                    status, body = call("GET", f"/api/images/{model}_{seq}.webp?quality={quality}")
                    if status == 200 and _shown(body) not in palette:
                        problems.append(("read", seq, quality, _shown(body)))

    try:
        workers = [threading.Thread(target=uploader, args=(i,)) for i in range(3)]
        workers += [threading.Thread(target=deleter) for _ in range(2)]
        readers = [threading.Thread(target=reader) for _ in range(2)]
        for thread in workers + readers:
            thread.start()
        for thread in workers:
            thread.join(120)
        done.set()
        for thread in readers:
            thread.join(60)
    finally:
        handle.stop()
    assert problems == []
    assert len(uploaded) == 24 and deleted[0] > 0
    store = get_state(app).images
    count = store.count(model)
    assert count == len(uploaded) - deleted[0]
    colours = []
    client = app.test_client()
    for seq in range(count):
        shown = {_shown(fetch(client, f"/api/images/{model}_{seq}.webp?quality={t}").body)
                 for t in ("high", "medium", "low")}
        assert len(shown) == 1 and shown <= set(uploaded), (seq, shown)
        colours.append(shown.pop())
    assert len(set(colours)) == count  # no picture twice
    if get_state(app).store.kind == "sqlite":  # the sets are files: three per set, no temp file
        names = image_files(app)
        assert len(names) == 3 * count and not any(n.startswith(TMP_PREFIX) for n in names)


def test_a_picture_asked_with_a_stale_if_match_is_a_json_error_not_the_bytes(client, model):
    upload(client, model, picture((100, 50)))
    etag = fetch(client, f"/api/images/{model}_0.webp").headers["ETag"]
    stale = fetch(client, f"/api/images/{model}_0.webp", headers={"If-Match": '"not-it"'})
    assert stale.status_code == 412 and stale.headers["Content-Type"] == "application/json"
    assert "error" in json.loads(stale.body)
    assert fetch(client, f"/api/images/{model}_0.webp", headers={"If-Match": etag}).status_code == 200
