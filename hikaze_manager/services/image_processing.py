"""Decoding uploads and encoding the WebP preview tiers: formats, size guards, orientation, colour."""

from __future__ import annotations

import io
import logging
import math
import os
import re

from ..errors import ApiError

# Pillow is imported by the functions that decode or encode (``from PIL import Image`` in each):
# importing it costs about a tenth of the start-up, and the first answer needs no picture.

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
WEBP_MAX_SIDE = 16383
# Still-image decoders built into Pillow that need no external program (EPS would run
# Ghostscript) and stop at the pixel guard below; multi-frame formats give their first frame.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "PPM", "TGA", "ICO",
                   "PCX", "SGI", "QOI")
# Magic bytes -> MIME type of the originals we serve (pending images).
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_ORIENTATION = {  # EXIF Orientation -> the Image.Transpose that makes the image upright
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")
MAX_NAME_LENGTH = 200


class ImageError(ApiError):
    """The upload is not an image we can use."""

    code = 400


class UnsupportedImage(ImageError):
    code = 415


class ImageTooLarge(ImageError):
    code = 413


# --- processing -------------------------------------------------------------------------------


def base_size(width: int, height: int) -> tuple[int, int]:
    """The high tier's size: at most ~2 MP and WebP's 16,383 px a side, never upscaled."""
    scale = 1.0
    if width * height > BASE_MAX_PIXELS:  # the reference's formula
        scale = math.sqrt(BASE_MAX_PIXELS / (width * height))
    scale = min(scale, WEBP_MAX_SIDE / width, WEBP_MAX_SIDE / height)
    if scale < 1.0:
        width, height = int(width * scale), int(height * scale)
    return max(1, min(width, WEBP_MAX_SIDE)), max(1, min(height, WEBP_MAX_SIDE))


def tier_size(base: tuple[int, int], tier: str) -> tuple[int, int]:
    """Size of ``tier`` for a base size; never zero on either side."""
    scale = TIER_SCALE[tier]
    return max(1, int(base[0] * scale)), max(1, int(base[1] * scale))


def _decoders() -> tuple[str, ...]:
    """The allowed formats this Pillow has (QOI came in 9.5; an unknown name is a KeyError)."""
    from PIL import Image

    Image.init()
    return tuple(name for name in ALLOWED_FORMATS if name in Image.OPEN)


def _open(data: bytes) -> Image.Image:
    """Open lazily (header only) and refuse what we won't decode."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError("The image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"The image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    try:
        im = Image.open(io.BytesIO(data), formats=_decoders())
    except UnidentifiedImageError:
        raise UnsupportedImage("Unsupported image format: use PNG, JPEG, WebP, GIF, BMP or TIFF") from None
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
    from PIL import Image

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
        pixels = pixels.transpose(Image.Transpose[method])
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
    from PIL import Image

    high = decode_base(data)
    base = high.size
    medium = high.resize(tier_size(base, "medium"), Image.Resampling.LANCZOS)
    low = medium.resize(tier_size(base, "low"), Image.Resampling.LANCZOS)
    images = {"high": high, "medium": medium, "low": low}
    return {tier: encode_webp(images[tier], TIER_QUALITY[tier]) for tier in TIERS}


def render_tier(data: bytes, tier: str = "high") -> bytes:
    """One WebP tier of an original (pending previews converted on request)."""
    from PIL import Image

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
