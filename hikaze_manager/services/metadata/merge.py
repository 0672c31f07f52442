"""Precedence between sources and the "describes another file" check (metadata-formats.md §8)."""

from __future__ import annotations

from ..tags import normalize_tag_name
from .textio import clean_text

# Sidecar order; the header and the file name come after every sidecar.
SOURCE_ORDER = ("lora_manager", "stability_matrix", "a1111", "civitai_info", "model_manager")
HEADER, FILE_NAME = "header", "file_name"
FIELDS = ("name", "base_model", "trigger_words", "description", "link", "tags", "author",
          "nsfw", "preferred_weight", "prompt", "negative_prompt")
MAX_TAGS, MAX_TAG_LENGTH = 20, 64
_PLACEHOLDERS = ("none", "unknown")
_FAMILIES = (
    ("SDXL", ("sdxl", "stable-diffusion-xl", "pony", "illustrious", "noobai")),
    ("SD3", ("sd3", "sd 3", "stable-diffusion-3")),
    ("SD1", ("sd1", "sd 1", "sd_v1", "sd_1", "stable-diffusion-v1")),
    ("SD2", ("sd2", "sd 2", "sd_v2", "stable-diffusion-v2")),
    ("FLUX", ("flux", "chroma")),
)


def base_family(base_model: str, header: dict | None = None) -> str:
    """SDXL, SD3, SD1, SD2, FLUX, OTHER, or UNKNOWN (no base model and no kohya keys)."""
    text = clean_text(base_model).lower()
    if text:
        for family, needles in _FAMILIES:
            if any(needle in text for needle in needles):
                return family
        return "OTHER"
    header = header or {}
    if header.get("ss_v2"):
        return "SD2"
    return "SD1" if header.get("kohya") else "UNKNOWN"


def clean_tags(value) -> list[str]:
    """Imported tags: trimmed, no empties or placeholders, no duplicates ignoring case, capped."""
    result: list[str] = []
    seen: set[str] = set()
    for raw in value if isinstance(value, list) else []:
        name = normalize_tag_name(raw) if isinstance(raw, str) else ""
        key = name.casefold()
        if not name or key in _PLACEHOLDERS or len(name) > MAX_TAG_LENGTH or key in seen:
            continue
        seen.add(key)
        result.append(name)
        if len(result) == MAX_TAGS:
            break
    return result


def mismatch(fields: dict, sha256: str | None, size: int | None) -> str | None:
    """Why a sidecar describes another file (hash, AutoV2 or size disagree), or None."""
    claimed = fields.get("sha256")
    if sha256 and claimed and claimed != sha256:
        return f"its SHA-256 {claimed[:10]}… is not this file's {sha256[:10]}…"
    autov2 = fields.get("autov2")
    if sha256 and autov2 and not sha256.startswith(autov2.lower()):
        return f"its AutoV2 {autov2} is not this file's {sha256[:10]}"
    claimed_size = fields.get("size")
    if size and claimed_size and claimed_size != size:
        return f"its size {claimed_size} is not this file's {size}"
    return None


def resolve(found: dict, sha256: str | None, size: int | None) -> dict:
    """Per field the first non-empty value by source order, with the source it came from.

    ``found`` is what :func:`read_file_metadata` stored. Returns ``{"values", "sources",
    "rejected", "unverified"}``; rejected sidecars contribute nothing.
    """
    values: dict = {}
    sources: dict = {}
    rejected: list[dict] = []
    unverified: list[str] = []
    ordered = [(name, found.get("sidecars", {}).get(name)) for name in SOURCE_ORDER]
    ordered.append((HEADER, found.get("header_fields")))
    for source, fields in ordered:
        if not fields:
            continue
        fields = dict(fields)
        if source != HEADER:
            reason = mismatch(fields, sha256, size)
            if reason:
                rejected.append({"source": source, "file": fields.get("file", ""),
                                 "reason": f"describes another file: {reason}"})
                continue
            any_hash = fields.get("sha256_any")
            if sha256 and any_hash and sha256 not in any_hash and "sha256" not in fields:
                unverified.append(source)
        for key in FIELDS:
            value = fields.get(key)
            if key == "tags":
                value = clean_tags(value)
            if key not in values and value not in (None, "", [], {}):
                values[key] = value
                sources[key] = source
    return {"values": values, "sources": sources, "rejected": rejected, "unverified": unverified}
