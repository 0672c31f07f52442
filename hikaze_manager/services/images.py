"""Preview images: WebP tier sets ``<sha256>_<seq>_<high|medium|low>.webp`` and pending originals.

A set exists when its ``high`` file exists. Sets of a model are numbered ``0..n-1`` without gaps;
``count`` is the length of that run. Sets are written to temp files and renamed into place with
``high`` last, under a per-sha lock, so a set on disk is always complete and sequence numbers are
never handed out twice.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import shutil
import tempfile
import threading
from collections import Counter, OrderedDict, defaultdict
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import ApiError, NotFound
from .files import TMP_PREFIX

logger = logging.getLogger(__name__)

TIERS = ("high", "medium", "low")
TIER_SCALE = {"high": 1.0, "medium": 0.66, "low": 0.33}
TIER_QUALITY = {"high": 80, "medium": 60, "low": 45}
WEBP_METHOD = 4
BASE_MAX_PIXELS = 2_000_000
# Stricter than Pillow's own guard (MAX_IMAGE_PIXELS, ~89 MP) so that guard's warning never fires
# for an image we accept; a header above this is refused before any pixel is decoded.
MAX_SOURCE_PIXELS = 64_000_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
# Magic bytes -> MIME type of the originals we serve (pending images).
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_ORIENTATION = {  # EXIF Orientation -> the transpose that makes the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SET_FILE = re.compile(r"^([0-9a-f]{64})_(\d+)_high\.webp$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")
MAX_NAME_LENGTH = 200
WEBP_CACHE_BYTES = 32 * 1024 * 1024


class ImageError(ApiError):
    """The upload is not an image we can use."""

    code = 400


class UnsupportedImage(ImageError):
    code = 415


class ImageTooLarge(ImageError):
    code = 413


# --- processing -------------------------------------------------------------------------------


def base_size(width: int, height: int) -> tuple[int, int]:
    """The high tier's size: at most ~2 MP, never upscaled (the reference's formula)."""
    if width * height > BASE_MAX_PIXELS:
        scale = math.sqrt(BASE_MAX_PIXELS / (width * height))
        width, height = int(width * scale), int(height * scale)
    return max(1, width), max(1, height)


def tier_size(base: tuple[int, int], tier: str) -> tuple[int, int]:
    """Size of ``tier`` for a base size; never zero on either side."""
    scale = TIER_SCALE[tier]
    return max(1, int(base[0] * scale)), max(1, int(base[1] * scale))


def _open(data: bytes) -> Image.Image:
    """Open lazily (header only) and refuse what we won't decode."""
    if not data:
        raise ImageError("The image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"The image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedImage("Unsupported image format: use PNG, JPEG, WebP or GIF") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge("The image has too many pixels") from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise ImageError(f"Cannot read the image: {exc}") from None
    width, height = im.size
    if width < 1 or height < 1:
        im.close()
        raise ImageError("The image has no pixels")
    if width * height > MAX_SOURCE_PIXELS:
        im.close()
        raise ImageTooLarge(
            f"The image has {width}x{height} pixels; the limit is {MAX_SOURCE_PIXELS:,} pixels"
        )
    return im


def _rgb_or_rgba(im: Image.Image) -> Image.Image:
    """RGBA when the source has any transparency (RGBA, LA, P/L/RGB with tRNS), else RGB."""
    if im.mode in ("RGB", "RGBA"):
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey: scale to 8 bits instead of clipping everything above 255 to white.
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    return im.convert("RGBA" if im.has_transparency_data else "RGB")


def _to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert from an embedded non-sRGB ICC profile, since the profile itself is stripped."""
    if not icc:
        return im
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in (ImageCms.getProfileDescription(source) or "").lower().replace(" ", ""):
            return im
        return ImageCms.profileToProfile(im, source, _srgb_profile(), outputMode=im.mode)
    except Exception:  # a broken or exotic profile: keep the pixels as they are
        return im


_SRGB = None


def _srgb_profile():
    global _SRGB
    if _SRGB is None:
        from PIL import ImageCms

        _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return _SRGB


def decode_base(data: bytes) -> Image.Image:
    """Decode the first frame into an upright RGB/RGBA image of the base size (<= ~2 MP)."""
    with _open(data) as im:
        base = base_size(*im.size)
        if im.format in ("JPEG", "MPO"):
            im.draft(None, base)  # DCT scaling: decode at 1/2, 1/4 or 1/8 when still >= base
        try:
            im.load()
            orientation = im.getexif().get(0x0112, 1)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageTooLarge("The image has too many pixels") from None
        except Exception as exc:
            raise ImageError(f"The image is corrupt or truncated: {exc}") from None
        icc = im.info.get("icc_profile")
        pixels = _rgb_or_rgba(im)
        if pixels.size != base:
            pixels = pixels.resize(base, Image.Resampling.LANCZOS, reducing_gap=3.0)
        elif pixels is im:
            pixels = im.copy()
    method = _ORIENTATION.get(orientation)
    if method is not None:  # after the resize: moves 2 MP instead of the full image
        pixels = pixels.transpose(method)
    pixels = _to_srgb(pixels, icc)
    pixels.info = {}
    return pixels


def encode_webp(im: Image.Image, quality: int) -> bytes:
    """WebP bytes without EXIF, ICC or XMP."""
    im.info = {}
    buffer = io.BytesIO()
    im.save(buffer, "WEBP", quality=quality, method=WEBP_METHOD)
    return buffer.getvalue()


def process_image(data: bytes) -> dict[str, bytes]:
    """The three WebP tiers of an uploaded image: ``{"high": ..., "medium": ..., "low": ...}``."""
    high = decode_base(data)
    base = high.size
    medium = high.resize(tier_size(base, "medium"), Image.Resampling.LANCZOS)
    low = medium.resize(tier_size(base, "low"), Image.Resampling.LANCZOS)
    images = {"high": high, "medium": medium, "low": low}
    return {tier: encode_webp(images[tier], TIER_QUALITY[tier]) for tier in TIERS}


def render_tier(data: bytes, tier: str = "high") -> bytes:
    """One WebP tier of an original (pending previews converted on request)."""
    image = decode_base(data)
    if tier != "high":
        image = image.resize(tier_size(image.size, tier), Image.Resampling.LANCZOS)
    return encode_webp(image, TIER_QUALITY[tier])


def sniff_mime(head: bytes) -> str | None:
    """MIME type of an allowed original from its first bytes; None for anything else."""
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def safe_file_name(name: str, default: str = "image") -> str:
    """A plain file name: basename only, ``[A-Za-z0-9._-]``, no leading dot, bounded length."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME_CHARS.sub("_", name).lstrip(".")
    if len(name) > MAX_NAME_LENGTH:
        stem, ext = os.path.splitext(name)
        ext = ext[:16]
        name = stem[: MAX_NAME_LENGTH - len(ext)] + ext
    return name or default


def is_plain_name(name: str) -> bool:
    """True for a single path segment we are willing to look up (no separators, NUL, dot-files)."""
    return (
        bool(name)
        and len(name) <= 255
        and not name.startswith(".")
        and not any(c in name for c in "/\\\x00")
        and not any(c in name for c in "*?[]")
    )


# --- the store ------------------------------------------------------------------------------


class ImageStore:
    """The image sets of every model and the pending originals; one instance per app."""

    def __init__(self, images_dir: str | Path, pending_dir: str | Path):
        self.images_dir = Path(images_dir)
        self.pending_dir = Path(pending_dir)
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        self._pending_lock = threading.Lock()
        # Pillow releases the GIL while decoding/resizing/encoding: bound the CPU taken from
        # the server (perf-anchors section 7: one thumbnail worker while the UI is serving).
        self._workers = threading.BoundedSemaphore(max(1, (os.cpu_count() or 2) - 1))
        self._webp_cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._webp_cache_bytes = 0
        self._webp_cache_lock = threading.Lock()

    # -- paths and counts

    def set_path(self, sha256: str, seq: int, tier: str = "high") -> Path:
        """Where tier ``tier`` of set ``seq`` lives (whether or not it exists)."""
        if not _SHA.match(sha256 or ""):
            raise ImageError("sha256 must be 64 lower-case hexadecimal characters")
        if tier not in TIER_SCALE:
            raise ImageError(f"quality must be one of {', '.join(TIERS)}")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ImageError("seq must be a non-negative integer")
        return self.images_dir / f"{sha256}_{seq}_{tier}.webp"

    def _lock(self, sha256: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[sha256]

    def counts(self) -> Counter:
        """Number of image sets per sha256 (the run 0..n-1), from one directory listing."""
        seqs: dict[str, set[int]] = defaultdict(set)
        try:
            with os.scandir(self.images_dir) as entries:
                for entry in entries:
                    match = _SET_FILE.match(entry.name)
                    if match:
                        seqs[match.group(1)].add(int(match.group(2)))
        except FileNotFoundError:
            pass
        counter: Counter = Counter()
        for sha, present in seqs.items():
            n = 0
            while n in present:
                n += 1
            if n:
                counter[sha] = n
        return counter

    def count(self, sha256: str) -> int:
        """Number of image sets of one model: stat ``high`` of 0, 1, ... until one is missing."""
        sha256 = (sha256 or "").lower()
        if not _SHA.match(sha256):
            return 0
        n = 0
        while (self.images_dir / f"{sha256}_{n}_high.webp").is_file():
            n += 1
        return n

    # -- writing and deleting sets

    def add_image(self, sha256: str, data: bytes) -> int:
        """Process ``data`` into a new set of ``sha256``; returns its seq."""
        self.set_path(sha256, 0)  # validates the sha before any work
        with self._workers:
            tiers = process_image(data)
        return self.add_processed(sha256, tiers)

    def add_processed(self, sha256: str, tiers: dict[str, bytes]) -> int:
        """Write already-encoded tiers as the next set, atomically; returns its seq."""
        self.images_dir.mkdir(parents=True, exist_ok=True)
        temps: dict[str, str] = {}
        placed: list[Path] = []
        try:
            for tier in TIERS:  # the slow part (write + fsync) happens outside the lock
                temps[tier] = self._write_temp(tiers[tier])
            with self._lock(sha256):
                seq = self.count(sha256)
                for tier in ("low", "medium", "high"):  # high last: it makes the set exist
                    final = self.set_path(sha256, seq, tier)
                    os.replace(temps[tier], final)
                    del temps[tier]
                    placed.append(final)
                _fsync_dir(self.images_dir)
            return seq
        except BaseException:
            for path in reversed(placed):
                _unlink(path)
            for tmp in temps.values():
                _unlink(Path(tmp))
            raise

    def _write_temp(self, data: bytes) -> str:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".webp", dir=self.images_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            _unlink(Path(tmp))
            raise
        return tmp

    def delete_image(self, sha256: str, seq: int) -> None:
        """Delete set ``seq`` and move every later set down by one.

        Readers see complete sets only: the target disappears when its ``high`` goes (first), and
        each later set ``k`` is linked to ``k-1`` tier by tier and appears there, while vanishing
        from ``k``, in the single rename of its ``high`` (last).
        """
        target = self.set_path(sha256, seq)
        with self._lock(sha256):
            if not target.is_file():
                raise NotFound(f"Image sequence {seq} not found for {sha256}")
            for tier in ("high", "medium", "low"):
                _unlink(self.set_path(sha256, seq, tier))
            k = seq + 1
            while self.set_path(sha256, k).is_file():
                for tier in ("low", "medium"):
                    source = self.set_path(sha256, k, tier)
                    dest = self.set_path(sha256, k - 1, tier)
                    if source.is_file():
                        self._link_or_copy(source, dest)
                    else:
                        _unlink(dest)
                os.replace(self.set_path(sha256, k), self.set_path(sha256, k - 1))
                for tier in ("low", "medium"):
                    _unlink(self.set_path(sha256, k, tier))
                k += 1
            _fsync_dir(self.images_dir)

    def _link_or_copy(self, source: Path, dest: Path) -> None:
        """Make ``dest`` a copy of ``source`` atomically (hard link when the file system allows)."""
        tmp = self.images_dir / f"{TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{dest.name}"
        _unlink(tmp)
        try:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        except BaseException:
            _unlink(tmp)
            raise

    # -- pending originals

    def save_pending_image(self, name: str, data: bytes) -> str:
        """Store an original under the pending folder; returns the file name used.

        The name is reduced to a safe basename. The same name with identical bytes is reused;
        different bytes get ``<stem>-<n><ext>``.
        """
        safe = safe_file_name(name)
        stem, ext = os.path.splitext(safe)
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        with self._pending_lock:
            candidate, n = safe, 1
            while True:
                path = self.pending_dir / candidate
                if not os.path.lexists(path):
                    break
                if path.is_file() and not path.is_symlink() and _same_bytes(path, data):
                    return candidate
                candidate = f"{stem}-{n}{ext}"
                n += 1
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=self.pending_dir)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                _unlink(Path(tmp))
                raise
            return candidate

    def pending_image_path(self, name: str) -> Path | None:
        """The pending file called ``basename(name)``, if it is a regular file inside the folder."""
        if not isinstance(name, str):
            return None
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        if not is_plain_name(base):
            return None
        return self._inside_pending(self.pending_dir / base)

    def find_pending_image(self, name: str) -> Path | None:
        """``name`` exactly, else the first ``name.*`` (by name) in the pending folder; no glob."""
        if not is_plain_name(name):
            return None
        exact = self._inside_pending(self.pending_dir / name)
        if exact is not None:
            return exact
        prefix = name + "."
        try:
            with os.scandir(self.pending_dir) as entries:
                names = sorted(e.name for e in entries if e.name.startswith(prefix))
        except FileNotFoundError:
            return None
        for candidate in names:
            path = self._inside_pending(self.pending_dir / candidate)
            if path is not None:
                return path
        return None

    def delete_pending_image(self, name: str) -> bool:
        """Delete a pending original (a symlink itself, never its target); True if removed."""
        path = self.pending_image_path(name)
        if path is None:
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def pending_webp(self, data: bytes, tier: str, key: tuple) -> bytes:
        """WebP tier of a pending original, converted once per ``key`` (file identity), cached."""
        cache_key = (*key, tier)
        with self._webp_cache_lock:
            cached = self._webp_cache.get(cache_key)
            if cached is not None:
                self._webp_cache.move_to_end(cache_key)
                return cached
        with self._workers:
            webp = render_tier(data, tier)
        with self._webp_cache_lock:
            if cache_key not in self._webp_cache and len(webp) <= WEBP_CACHE_BYTES // 4:
                self._webp_cache[cache_key] = webp
                self._webp_cache_bytes += len(webp)
                while self._webp_cache_bytes > WEBP_CACHE_BYTES:
                    _, old = self._webp_cache.popitem(last=False)
                    self._webp_cache_bytes -= len(old)
        return webp

    def _inside_pending(self, path: Path) -> Path | None:
        root = os.path.realpath(self.pending_dir)
        real = os.path.realpath(path)
        if os.path.commonpath((root, real)) != root or real == root:
            return None
        if not os.path.isfile(real) or path.name.startswith(TMP_PREFIX):
            return None
        return path


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(folder: Path) -> None:
    """Persist renames in ``folder`` (no-op where directories can't be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
