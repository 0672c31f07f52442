"""ComfyUI-Lora-Manager's ``<stem>.metadata.json`` (also written by CivArchive and others)."""

from __future__ import annotations

import json

from .civitai_info import version_fields
from .textio import clean_text

SOURCE = "lora_manager"
SUFFIXES = (".metadata.json",)


def _basename(value) -> str:
    text = clean_text(value)
    return text.replace("\\", "/").rsplit("/", 1)[-1] if text else ""


def parse(data, stem: str, file_name: str) -> dict | None:
    """Fields of the sidecar; the CivitAI part fills what LM's own keys leave empty."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    civitai = data.get("civitai") if isinstance(data.get("civitai"), dict) else {}
    fields = version_fields(civitai, file_name) if civitai else {}
    fields.pop("sha256", None)
    fields.pop("sha256_any", None)
    name = clean_text(data.get("model_name"))
    own = {
        "name": "" if name == stem else name,
        "base_model": clean_text(data.get("base_model")),
        "description": clean_text(data.get("modelDescription")),
        "tags": [t for t in data.get("tags") or [] if isinstance(t, str) and t.strip()],
        "preview": _basename(data.get("preview_url")),
    }
    tips = data.get("usage_tips")
    try:
        tips = json.loads(tips) if isinstance(tips, str) and tips.strip() else tips
    except ValueError:
        tips = None
    strength = tips.get("strength") if isinstance(tips, dict) else None
    if isinstance(strength, (int, float)) and not isinstance(strength, bool) and strength:
        own["preferred_weight"] = float(strength)
    fields.update({key: value for key, value in own.items() if value not in ("", [], None)})
    sha = clean_text(data.get("sha256")).lower()
    if len(sha) == 64 and all(c in "0123456789abcdef" for c in sha):
        fields["sha256"] = sha
    size = data.get("size")
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        fields["size"] = size
    return fields
