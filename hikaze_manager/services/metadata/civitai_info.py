"""Civitai Helper's ``<stem>.civitai.info``: the CivitAI model-version JSON, kept verbatim."""

from __future__ import annotations

from .textio import clean_text, word_list

SOURCE = "civitai_info"
SUFFIXES = (".civitai.info",)


def civitai_link(model_id, version_id=None) -> str:
    """The CivitAI page of a model (and version), from numeric ids only."""
    if isinstance(model_id, bool) or not isinstance(model_id, int) or model_id <= 0:
        return ""
    link = f"https://civitai.com/models/{model_id}"
    if isinstance(version_id, int) and not isinstance(version_id, bool) and version_id > 0:
        link += f"?modelVersionId={version_id}"
    return link


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def version_fields(data: dict, file_name: str = "") -> dict:
    """Fields of a CivitAI model-version object (also embedded by LoRA Manager)."""
    model = _dict(data.get("model"))
    fields: dict = {
        "name": clean_text(model.get("name")),
        "base_model": clean_text(data.get("baseModel")),
        "trigger_words": word_list(data.get("trainedWords")),
        "description": clean_text(model.get("description")) or clean_text(data.get("description")),
        "link": civitai_link(data.get("modelId"), data.get("id")),
        "tags": word_list(model.get("tags")),
        "author": clean_text(_dict(data.get("creator")).get("username")),
    }
    if isinstance(model.get("nsfw"), bool):
        fields["nsfw"] = model["nsfw"]
    for image in data.get("images") or []:
        prompt = clean_text(_dict(_dict(image).get("meta")).get("prompt"))
        if prompt:
            fields["prompt"] = prompt
            negative = clean_text(_dict(image.get("meta")).get("negativePrompt"))
            if negative:
                fields["negative_prompt"] = negative
            break
    files = [f for f in data.get("files") or [] if isinstance(f, dict)]
    hashes = [clean_text(_dict(f.get("hashes")).get("SHA256")).lower() for f in files]
    hashes = [h for h in hashes if len(h) == 64]
    if hashes:
        fields["sha256_any"] = hashes
    named = [f for f in files if file_name and f.get("name") == file_name]
    if named:
        sha = clean_text(_dict(named[0].get("hashes")).get("SHA256")).lower()
        if len(sha) == 64:
            fields["sha256"] = sha
    return {key: value for key, value in fields.items() if value not in ("", [], None)}


def parse(data, stem: str, file_name: str) -> dict | None:
    """Fields of the sidecar; ``{}`` (not on CivitAI) and zixaphir skeletons give nothing."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if not data:
        return None
    helper = _dict(_dict(data.get("extensions")).get("sd_civitai_helper"))
    if data.get("skeleton_file") or helper.get("skeleton_file"):
        return None
    return version_fields(data, file_name)
