"""ImageStore and the WebP pipeline, on real files and real Pillow images."""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from hikaze_manager.errors import NotFound
from hikaze_manager.services import images as images_service
from hikaze_manager.services.files import TMP_PREFIX
from hikaze_manager.services.image_processing import (
    ImageError,
    ImageTooLarge,
    UnsupportedImage,
    process_image,
    tier_size,
)
from hikaze_manager.services.images import ImageStore, picture_digest

SHA = "ab" * 32
TIER_NAMES = ("high", "medium", "low")
OTHER = "cd" * 32


def encode(im: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def gradient(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A non-flat image so encoders and resizers do real work."""
    w, h = size
    x = Image.linear_gradient("L").resize((w, h))
    y = x.transpose(Image.Transpose.ROTATE_90).resize((w, h))
    rgb = Image.merge("RGB", (x, y, Image.new("L", (w, h), 128)))
    return rgb.convert(mode) if mode != "RGB" else rgb


def opened(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def webp_chunks(data: bytes) -> list[bytes]:
    """The RIFF chunk ids of a WebP file."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        fourcc, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append(fourcc)
        pos += 8 + size + (size & 1)
    return chunks


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height``; the IDAT holds a few bytes only."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    images = tmp_path / "images"
    pending = images / "pending"
    pending.mkdir(parents=True)
    return ImageStore(images, pending)


def files_of(store: ImageStore) -> list[str]:
    return sorted(p.name for p in store.images_dir.iterdir() if p.is_file())


# --- processing -------------------------------------------------------------------------------


def test_tier_sizes_match_the_reference():
    tiers = process_image(encode(gradient((2000, 1500))))
    sizes = {tier: opened(data).size for tier, data in tiers.items()}
    assert sizes == {"high": (1632, 1224), "medium": (1077, 807), "low": (538, 403)}
    assert all(opened(data).format == "WEBP" for data in tiers.values())


def test_small_image_is_not_upscaled():
    tiers = process_image(encode(gradient((640, 480))))
    assert opened(tiers["high"]).size == (640, 480)
    assert opened(tiers["medium"]).size == (422, 316)
    assert opened(tiers["low"]).size == (211, 158)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 1), (1, 5000)])
def test_tiny_images_never_give_a_zero_sized_tier(size):
    tiers = process_image(encode(Image.new("RGB", size, "red")))
    for data in tiers.values():
        w, h = opened(data).size
        assert w >= 1 and h >= 1


def test_large_image_is_bounded_to_two_megapixels():
    tiers = process_image(encode(gradient((5000, 3000)), "JPEG", quality=90))
    w, h = opened(tiers["high"]).size
    assert (w, h) == (1825, 1095)  # int(5000*s), int(3000*s) with s = sqrt(2e6/15e6)
    assert w * h <= 2_000_000


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("RGB", "RGB"), ("RGBA", "RGBA"), ("LA", "RGBA"), ("L", "RGB"), ("CMYK", "RGB")],
)
def test_alpha_is_kept_and_other_modes_become_rgb(mode, expected):
    im = gradient((120, 80), mode)
    if "A" in mode:  # a real alpha channel (libwebp drops an all-opaque one)
        im.putalpha(Image.linear_gradient("L").resize(im.size))
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    tiers = process_image(encode(im, fmt))
    assert {opened(d).mode for d in tiers.values()} == {expected}


def test_alpha_values_survive():
    im = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    im.paste((0, 0, 255, 0), (0, 0, 32, 64))  # left half fully transparent
    high = opened(process_image(encode(im))["high"])
    assert high.mode == "RGBA"
    assert high.getpixel((8, 32))[3] < 10
    assert high.getpixel((56, 32))[3] > 245


def test_palette_with_and_without_transparency():
    plain = gradient((100, 60)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert opened(process_image(encode(plain))["high"]).mode == "RGB"
    clear = Image.new("P", (100, 60), 0)
    clear.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    clear.paste(1, (50, 0, 100, 60))
    high = opened(process_image(encode(clear, transparency=0))["high"])
    assert high.mode == "RGBA"
    assert high.getpixel((10, 10))[3] == 0
    assert high.getpixel((90, 10))[1:] == (255, 255) or high.getpixel((90, 10))[3] == 255


def test_exif_orientation_is_applied():
    # A landscape 400x200 JPEG whose EXIF says "rotate 90 CW to display" (orientation 6):
    # the left half is red, so after rotation the top half must be red.
    im = Image.new("RGB", (400, 200), "blue")
    im.paste((255, 0, 0), (0, 0, 200, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    tiers = process_image(encode(im, "JPEG", exif=exif.tobytes(), quality=95))
    high = opened(tiers["high"])
    assert high.size == (200, 400)
    r, g, b = high.getpixel((100, 50))
    assert r > 200 and b < 60
    r, g, b = high.getpixel((100, 350))
    assert b > 200 and r < 60
    assert opened(tiers["low"]).size == (66, 132)


def test_metadata_is_stripped():
    im = gradient((300, 200))
    exif = Image.Exif()
    exif[0x010F] = "SecretCamera"
    exif[0x0112] = 1
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(im, "JPEG", exif=exif.tobytes(), icc_profile=srgb, quality=90)
    assert b"SecretCamera" in data and opened(data).info.get("icc_profile")
    for tier_bytes in process_image(data).values():
        assert b"SecretCamera" not in tier_bytes
        chunks = webp_chunks(tier_bytes)
        assert not {b"EXIF", b"ICCP", b"XMP "} & set(chunks), chunks
        info = opened(tier_bytes).info
        assert "exif" not in info and "icc_profile" not in info and "xmp" not in info


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)


def rgb_icc_profile(red, green, blue, name: str) -> bytes:
    """A minimal ICC v2 matrix/TRC RGB profile with the given D50 primaries (gamma 2.2)."""
    text = name.encode() + b"\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 78
    curv = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", _xyz(*red)),
            (b"gXYZ", _xyz(*green)), (b"bXYZ", _xyz(*blue)), (b"rTRC", curv), (b"gTRC", curv),
            (b"bTRC", curv), (b"cprt", b"text" + b"\0" * 4 + b"none\0\0\0\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (struct.pack(">I", offset + len(data)) + b"lcms" + struct.pack(">I", 0x02100000)
              + b"mntrRGB XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 28
              + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + data


SRGB_D50 = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_non_srgb_profile_is_converted_before_it_is_stripped(mode):
    red, green, blue = SRGB_D50
    swapped = rgb_icc_profile(blue, green, red, "Swapped primaries")  # its "red" is sRGB blue
    im = Image.new(mode, (40, 30), (255, 0, 0, 200)[: len(mode)])
    tiers = process_image(encode(im, "PNG", icc_profile=swapped))
    for data in tiers.values():
        out = opened(data)
        assert "icc_profile" not in out.info
        r, g, b = out.convert("RGB").getpixel((out.width // 2, out.height // 2))
        assert b > 200 and r < 60, (r, g, b)
        assert out.mode == mode
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    srgb_tagged = encode(Image.new("RGB", (40, 30), (255, 0, 0)), "PNG", icc_profile=srgb)
    r, g, b = opened(process_image(srgb_tagged)["high"]).getpixel((20, 15))
    assert r > 240 and b < 20


def test_webp_source_with_metadata_is_stripped():
    exif = Image.Exif()
    exif[0x010F] = "SecretCamera"
    data = encode(gradient((200, 100)), "WEBP", exif=exif.tobytes(), xmp=b"<x:secret/>")
    assert b"SecretCamera" in data
    for tier_bytes in process_image(data).values():
        assert b"SecretCamera" not in tier_bytes and b"secret" not in tier_bytes


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (80, 40), c) for c in ("red", "lime", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    high = opened(process_image(buffer.getvalue())["high"])
    assert high.size == (80, 40)
    r, g, b = high.getpixel((40, 20))[:3]
    assert r > 200 and g < 60 and b < 60
    assert getattr(high, "n_frames", 1) == 1


def test_truncated_png_is_a_400():
    data = encode(gradient((400, 300)))
    with pytest.raises(ImageError) as info:
        process_image(data[: len(data) // 2])
    assert info.value.code == 400


@pytest.mark.parametrize(
    "data",
    [b"GIF89a" + b"\x00" * 3, b"not an image at all", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"],
    ids=["broken-gif", "text", "eps"],
)
def test_unsupported_or_garbage_is_a_client_error(data):
    with pytest.raises(ImageError) as info:
        process_image(data)
    assert info.value.code in (400, 415)


def test_other_formats_are_415():
    # EPS would run Ghostscript: not a decoder we trust with an upload.
    with pytest.raises(UnsupportedImage) as info:
        process_image(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    assert info.value.code == 415


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "PPM", "TGA", "PCX", "SGI"])
def test_other_still_formats_are_converted_like_the_rest(fmt):
    tiers = process_image(encode(Image.new("RGB", (40, 30), (200, 30, 90)), fmt))
    for tier, size in (("high", (40, 30)), ("medium", (26, 19)), ("low", (13, 9))):
        im = opened(tiers[tier])
        assert im.format == "WEBP" and im.size == size
        assert all(abs(a - b) <= 6 for a, b in zip(im.convert("RGB").getpixel((5, 5)), (200, 30, 90)))


def test_tiff_bomb_header_is_refused_before_decoding():
    buffer = io.BytesIO()
    Image.new("L", (9000, 9000)).save(buffer, "TIFF", compression="tiff_deflate")
    with pytest.raises(ImageTooLarge):  # 81 MP: above MAX_SOURCE_PIXELS, from the header
        process_image(buffer.getvalue())


@pytest.mark.parametrize("size", [(20000, 1), (1, 20000), (16384, 2)])
def test_sides_above_webps_limit_are_scaled_to_fit(size):
    tiers = process_image(encode(Image.new("RGB", size, "red")))
    high = opened(tiers["high"])
    assert max(high.size) == 16383 and min(high.size) >= 1
    assert all(max(opened(tiers[t]).size) < 16383 for t in ("medium", "low"))


def test_empty_is_400():
    with pytest.raises(ImageError) as info:
        process_image(b"")
    assert info.value.code == 400


def test_decompression_bomb_header_is_refused_fast():
    resource = pytest.importorskip("resource")
    bomb = png_header(20000, 20000)  # 400 MP claimed in about 80 bytes
    assert len(bomb) < 200
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge) as info:
        process_image(bomb)
    elapsed = time.perf_counter() - started
    assert info.value.code == 413
    # Refused from the header alone: decoding would need 1.2 GB of pixels and seconds of CPU.
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 100 * 1024
    assert elapsed < 1.0


def test_header_above_our_limit_but_below_pillows_is_refused():
    with pytest.raises(ImageTooLarge):
        process_image(png_header(9000, 9000))  # 81 MP: above MAX_SOURCE_PIXELS


def test_sixteen_bit_grey_is_scaled_not_clipped():
    im = Image.new("I;16", (32, 32), 32768)  # mid grey in 16 bits
    high = opened(process_image(encode(im))["high"])
    value = high.getpixel((16, 16))[0]
    assert 110 < value < 145


# --- sets on disk -----------------------------------------------------------------------------


def test_add_count_and_paths(store):
    assert store.count(SHA) == 0
    assert store.add_image(SHA, encode(gradient((50, 40)))) == 0
    assert store.add_image(SHA, encode(gradient((60, 40)))) == 1
    assert store.add_image(OTHER, encode(gradient((60, 40)))) == 0
    assert store.count(SHA) == 2 and store.count(OTHER) == 1
    assert store.counts() == {SHA: 2, OTHER: 1}
    for seq in (0, 1):
        for tier in ("high", "medium", "low"):
            assert store.set_path(SHA, seq, tier).is_file()
    assert opened(store.set_path(SHA, 1).read_bytes()).size == (60, 40)
    assert not [n for n in files_of(store) if n.startswith(TMP_PREFIX)]


def test_counts_ignore_sets_after_a_gap_and_next_seq_fills_it(store):
    # A legacy folder with a hole at 1: count is the unbroken run, as the gallery shows 0..n-1.
    for seq in (0, 2):
        for tier in ("high", "medium", "low"):
            store.set_path(SHA, seq, tier).parent.mkdir(parents=True, exist_ok=True)
            store.set_path(SHA, seq, tier).write_bytes(b"x")
    assert store.count(SHA) == 1 and store.counts()[SHA] == 1
    assert store.add_image(SHA, encode(gradient((20, 20)))) == 1
    assert store.count(SHA) == 3 and store.counts()[SHA] == 3


def test_counts_of_a_settled_folder_are_reused_until_the_folder_changes(store):
    store.add_image(SHA, encode(gradient((20, 20))))
    long_ago = time.time_ns() - 60 * 10**9
    os.utime(store.images_dir, ns=(long_ago, long_ago))
    assert store.counts() == {SHA: 1}
    # A set that appears without changing the folder's mtime is not seen: the cache is in use.
    for tier in ("high", "medium", "low"):
        store.set_path(OTHER, 0, tier).write_bytes(b"x")
    os.utime(store.images_dir, ns=(long_ago, long_ago))
    assert store.counts() == {SHA: 1}
    # Any real change moves the folder's mtime, and the next listing sees everything.
    store.add_image(SHA, encode(gradient((20, 20))))
    assert store.counts() == {SHA: 2, OTHER: 1}
    store.delete_image(SHA, 0)
    assert store.counts() == {SHA: 1, OTHER: 1}


@pytest.mark.parametrize("sha", ["../../../tmp/evil", "AB" * 32, "ab" * 31, "", "zz" * 32])
def test_invalid_sha_is_rejected_before_any_write(store, sha):
    with pytest.raises(ImageError):
        store.add_image(sha, encode(gradient((20, 20))))
    assert not store.images_dir.exists() or files_of(store) == []


def test_failed_write_leaves_no_partial_set_and_no_temp_file(store, monkeypatch):
    store.add_image(SHA, encode(gradient((20, 20))))
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if str(dst).endswith("_1_high.webp"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(images_service.os, "replace", failing_replace)
    with pytest.raises(OSError):
        store.add_image(SHA, encode(gradient((30, 20))))
    monkeypatch.undo()
    assert len(calls) == 3  # low and medium were placed, then high failed
    assert files_of(store) == [f"{SHA}_0_{t}.webp" for t in ("high", "low", "medium")]
    assert store.count(SHA) == 1


def test_failed_processing_writes_nothing(store):
    with pytest.raises(ImageError):
        store.add_image(SHA, b"\x89PNG\r\n\x1a\n garbage")
    assert not store.images_dir.exists() or files_of(store) == []


def test_parallel_adds_get_distinct_sequences(store):
    payloads = [encode(gradient((40 + i, 30))) for i in range(8)]
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(data: bytes):
        try:
            barrier.wait()
            results.append(store.add_image(SHA, data))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == list(range(8))
    assert store.count(SHA) == 8 and store.counts()[SHA] == 8
    widths = set()
    for seq in range(8):
        high = opened(store.set_path(SHA, seq, "high").read_bytes())
        low = opened(store.set_path(SHA, seq, "low").read_bytes())
        assert low.size == tier_size(high.size, "low")  # same image in every tier
        widths.add(high.size[0])
    assert widths == {40 + i for i in range(8)}
    assert not [n for n in files_of(store) if n.startswith(TMP_PREFIX)]


def _widths(store: ImageStore, sha: str) -> list[int]:
    return [opened(store.set_path(sha, s).read_bytes()).size[0] for s in range(store.count(sha))]


def test_delete_renumbers_later_sets(store):
    for width in (10, 11, 12, 13):
        store.add_image(SHA, encode(gradient((width, 8))))
    store.delete_image(SHA, 1)
    assert store.count(SHA) == 3
    assert _widths(store, SHA) == [10, 12, 13]
    for seq, width in enumerate([10, 12, 13]):
        medium = opened(store.set_path(SHA, seq, "medium").read_bytes())
        assert medium.size[0] == max(1, int(width * 0.66))
    assert not store.set_path(SHA, 3, "high").exists()
    assert not store.set_path(SHA, 3, "low").exists()
    store.delete_image(SHA, 2)  # the last one: nothing to shift
    assert _widths(store, SHA) == [10, 12]
    store.delete_image(SHA, 0)
    assert _widths(store, SHA) == [12]
    assert files_of(store) == [f"{SHA}_0_{t}.webp" for t in ("high", "low", "medium")]


def test_delete_missing_is_not_found(store):
    with pytest.raises(NotFound):
        store.delete_image(SHA, 0)
    store.add_image(SHA, encode(gradient((10, 10))))
    with pytest.raises(NotFound):
        store.delete_image(SHA, 1)
    with pytest.raises(ImageError):
        store.delete_image("../x", 0)


def test_readers_never_see_a_gap_or_a_mixed_set_during_deletes(store):
    """While sets are deleted and shifted, readers never miss a set below the count, and a set
    read under the model's lock (as the image endpoint reads) always has tiers of one upload."""
    # Neighbours (the only sets a shift could mix) differ in red; green numbers the uploads.
    for i in range(40):
        store.add_image(SHA, encode(Image.new("RGB", (40, 30), (255 * (i % 2), 6 * i, 0))))
    stop = threading.Event()
    problems: list[str] = []
    checked = [0]

    def red(data: bytes) -> int:
        return opened(data).convert("RGB").getpixel((0, 0))[0]

    def green(data: bytes) -> int:
        return opened(data).convert("RGB").getpixel((0, 0))[1]

    def reader():
        while not stop.is_set():
            for seq in range(store.count(SHA)):
                fh = store.open_tier(SHA, seq, ("medium",))
                if fh is None:
                    if seq < store.count(SHA):  # only the last set may go (the count shrinks)
                        problems.append(f"gap at seq {seq} below count {store.count(SHA)}")
                    continue
                fh.close()
                with store._lock(SHA):  # what open_tier relies on: outside it, sets are whole
                    try:
                        high = store.set_path(SHA, seq, "high").read_bytes()
                        low = store.set_path(SHA, seq, "low").read_bytes()
                    except FileNotFoundError:
                        continue  # the last set was dropped since the count was read
                checked[0] += 1
                if abs(red(high) - red(low)) > 60 or abs(green(high) - green(low)) > 20:
                    problems.append(f"seq {seq}: high {red(high)} with low {red(low)}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(36):
            store.delete_image(SHA, 0)
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert checked[0] > 0
    survivors = [round(green(store.set_path(SHA, s).read_bytes()) / 6) for s in range(4)]
    assert survivors == [36, 37, 38, 39]


def test_every_intermediate_state_of_a_delete_is_gapless(store, monkeypatch):
    """Snapshot the folder after every file operation of a delete: the sets are always a run
    0..m-1 with m the old or the new count, and each set's ``high`` is a whole upload's."""
    uploads = [encode(Image.new("RGB", (30 + i, 20), (40 * i, 0, 0))) for i in range(5)]
    for data in uploads:
        store.add_image(SHA, data)
    owner = {}  # tier bytes -> upload index
    for seq in range(5):
        for tier in ("high", "medium", "low"):
            owner[store.set_path(SHA, seq, tier).read_bytes()] = seq
    snapshots = []

    def check():
        present = [seq for seq in range(6) if store.set_path(SHA, seq, "high").exists()]
        assert present in ([0, 1, 2, 3, 4], [0, 1, 2, 3]), present
        snapshots.append([owner[store.set_path(SHA, seq).read_bytes()] for seq in present])

    for name in ("replace", "link", "unlink"):
        real = getattr(os, name)

        def wrapped(*args, _real=real, **kwargs):
            result = _real(*args, **kwargs)
            check()
            return result

        monkeypatch.setattr(images_service.os, name, wrapped)
    store.delete_image(SHA, 1)
    monkeypatch.undo()
    assert len(snapshots) >= 10
    assert snapshots[-1] == [0, 2, 3, 4]
    for seq, upload in enumerate([0, 2, 3, 4]):
        for tier in ("high", "medium", "low"):
            assert owner[store.set_path(SHA, seq, tier).read_bytes()] == upload
    assert not store.set_path(SHA, 4, "low").exists()


def test_a_delete_interrupted_half_way_leaves_a_duplicate_not_a_gap(store, monkeypatch):
    for i in range(4):
        store.add_image(SHA, encode(Image.new("RGB", (30 + i, 20), (60 * i, 0, 0))))
    calls = [0]
    real_replace = os.replace

    def crash_on_fourth(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 4:
            raise OSError("disk vanished")
        return real_replace(*args, **kwargs)

    monkeypatch.setattr(images_service.os, "replace", crash_on_fourth)
    with pytest.raises(OSError):
        store.delete_image(SHA, 0)
    monkeypatch.undo()
    assert store.count(SHA) == 4  # nothing below the count went missing
    assert all(store.set_path(SHA, seq, t).is_file() for seq in range(4) for t in TIER_NAMES)


def test_a_symlinked_tier_is_neither_served_nor_counted(store, tmp_path):
    secret = tmp_path / "passwd"
    secret.write_bytes(b"root:x:0:0")
    store.add_image(SHA, encode(gradient((20, 20))))
    store.set_path(SHA, 1, "high").symlink_to(secret)
    store.set_path(SHA, 0, "low").unlink()
    store.set_path(SHA, 0, "low").symlink_to(secret)
    assert store.count(SHA) == 1
    assert store.counts()[SHA] == 1
    assert store.open_tier(SHA, 1, ("high",)) is None
    with store.open_tier(SHA, 0, ("low", "medium")) as fh:  # falls back past the link
        assert fh.read() == store.set_path(SHA, 0, "medium").read_bytes()
    os.mkfifo(store.set_path(SHA, 2, "high"))  # would block a reader forever
    assert store.open_tier(SHA, 2, ("high",)) is None


# --- pending originals ------------------------------------------------------------------------


def test_save_pending_image_names(store):
    png = encode(gradient((10, 10)))
    other = encode(gradient((12, 10)))
    assert store.save_pending_image("model_1_17000_cat pic.png", png) == "model_1_17000_cat_pic.png"
    assert store.save_pending_image("model_1_17000_cat pic.png", png) == "model_1_17000_cat_pic.png"
    renamed = store.save_pending_image("model_1_17000_cat pic.png", other)
    assert renamed == "model_1_17000_cat_pic-1.png"
    assert store.save_pending_image("C:\\legacy\\images\\a.png", png) == "a.png"
    assert store.save_pending_image("../../etc/passwd", png) == "passwd"
    assert store.save_pending_image("..", png) == "image"
    assert store.save_pending_image(".hikaze-tmp-x", png) == "hikaze-tmp-x"
    assert (store.pending_dir / "model_1_17000_cat_pic-1.png").read_bytes() == other
    assert not [p for p in store.pending_dir.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_pending_image_path_stays_inside(store, tmp_path):
    png = encode(gradient((10, 10)))
    name = store.save_pending_image("a.png", png)
    assert store.pending_image_path(name) == store.pending_dir / "a.png"
    assert store.pending_image_path("/some/legacy/dir/a.png") == store.pending_dir / "a.png"
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (store.pending_dir / "link.png").symlink_to(secret)
    (store.pending_dir / "inner.png").symlink_to(store.pending_dir / "a.png")
    (store.pending_dir / "sub").mkdir()
    for bad in ["..", ".", "", "link.png", "sub", "a.png\x00", "*", "a*", "missing.png",
                str(secret), ".hikaze-tmp-a"]:
        assert store.pending_image_path(bad) is None, bad
    assert store.pending_image_path("inner.png") is None  # regular files only, even inside


def test_find_pending_image_matches_stem_without_glob(store):
    store.save_pending_image("7.png", encode(gradient((10, 10))))
    store.save_pending_image("[x].png", encode(gradient((10, 10))))
    assert store.find_pending_image("7") == store.pending_dir / "7.png"
    assert store.find_pending_image("7.png") == store.pending_dir / "7.png"
    assert store.find_pending_image("*") is None
    assert store.find_pending_image("?") is None
    assert store.find_pending_image("_x_") == store.pending_dir / "_x_.png"


def test_delete_pending_image(store, tmp_path):
    store.save_pending_image("a.png", b"bytes")
    outside = tmp_path / "keep.png"
    outside.write_bytes(b"keep")
    (store.pending_dir / "out.png").symlink_to(outside)
    assert store.delete_pending_image("a.png") is True
    assert store.delete_pending_image("a.png") is False
    assert store.delete_pending_image("../keep.png") is False
    assert store.delete_pending_image("out.png") is False
    assert outside.read_bytes() == b"keep"


@pytest.mark.parametrize("crash_at", range(1, 12))
def test_a_delete_killed_at_any_step_is_finished_by_start_up_recovery(store, monkeypatch, crash_at):
    """Stop a delete after ``crash_at`` file operations (as a kill would: no clean-up), then
    recover with a new store: every set is one whole picture and the delete is complete."""
    for i in range(5):
        store.add_image(SHA, encode(Image.new("RGB", (30 + i, 20), (50 * i, 0, 0))))
    owner = {store.set_path(SHA, s, t).read_bytes(): s for s in range(5) for t in TIER_NAMES}
    calls = [0]

    class Killed(BaseException):
        pass

    for name in ("replace", "link", "unlink"):
        real = getattr(os, name)

        def wrapped(*args, _real=real, **kwargs):
            calls[0] += 1
            if calls[0] == crash_at:
                raise Killed
            return _real(*args, **kwargs)

        monkeypatch.setattr(images_service.os, name, wrapped)
    with pytest.raises(Killed):
        store.delete_image(SHA, 1)
    monkeypatch.undo()
    for tmp in store.images_dir.glob(".hikaze-tmp-*"):
        tmp.unlink()  # what the start-up temp sweep does
    recovered = ImageStore(store.images_dir, store.pending_dir)
    recovered.recover()
    sets = [[owner[recovered.set_path(SHA, s, t).read_bytes()] for t in TIER_NAMES]
            for s in range(recovered.count(SHA))]
    if len(sets) == 5:  # killed before the journal was written: nothing changed
        assert sets == [[s] * 3 for s in range(5)]
    else:
        assert sets == [[0] * 3, [2] * 3, [3] * 3, [4] * 3]
    assert sorted(p.name for p in store.images_dir.iterdir() if p.is_file()) == sorted(
        f"{SHA}_{s}_{t}.webp" for s in range(len(sets)) for t in TIER_NAMES)


def test_deleting_a_set_after_a_gap_removes_only_that_set(store):
    for i in range(2):
        store.add_image(SHA, encode(Image.new("RGB", (30 + i, 20), (90 * i, 0, 0))))
    kept = store.set_path(SHA, 1).read_bytes()
    for tier in TIER_NAMES:  # set 3 beyond a gap, as older software could leave
        os.link(store.set_path(SHA, 0, tier), store.set_path(SHA, 3, tier))
    store.delete_image(SHA, 3)
    assert store.count(SHA) == 2 and store.set_path(SHA, 1).read_bytes() == kept
    assert not any(store.set_path(SHA, 3, t).exists() for t in TIER_NAMES)


def test_remove_picture_removes_the_set_showing_it_wherever_it_moved(store):
    datas = [encode(Image.new("RGB", (30 + i, 20), (60 * i, 0, 0))) for i in range(3)]
    for data in datas:
        store.add_image(SHA, data)
    wanted = picture_digest(process_image(datas[2]))
    store.delete_image(SHA, 0)  # the picture moved from set 2 to set 1
    assert store.find_picture(SHA, wanted) == [1]
    assert store.remove_picture(SHA, wanted) == 1
    assert store.count(SHA) == 1 and store.find_picture(SHA, wanted) == []
