"""A1111's Lora card editor file ``<stem>.json`` (plus ``<stem>.txt`` descriptions)."""

from __future__ import annotations

import re

from .textio import clean_text, word_list

SOURCE = "a1111"
SUFFIXES = (".json",)
DESCRIPTION_SUFFIXES = (".txt", ".description.txt")
KNOWN_KEYS = ("description", "notes", "activation text", "preferred weight", "negative text",
              "sd version", "vae")
SD_VERSIONS = {"SD1", "SD2", "SDXL", "SD3"}
_LORA_CALL = re.compile(r"<lora:[^>]*>", re.IGNORECASE)


def parse(data, stem: str, file_name: str) -> dict | None:
    """Fields of the file; a ``<stem>.json`` without any A1111 key is someone else's, ignored."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if not any(key in data for key in KNOWN_KEYS):
        return None
    activation = _LORA_CALL.sub(" ", clean_text(data.get("activation text")))
    words = word_list(activation.replace(" || ", ",").replace("\n", ","), split=",")
    version = clean_text(data.get("sd version"))
    fields: dict = {
        "base_model": version if version in SD_VERSIONS else "",
        "trigger_words": words,
        "description": clean_text(data.get("description")),
        "negative_prompt": clean_text(data.get("negative text")),
    }
    weight = data.get("preferred weight")
    if isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight:
        fields["preferred_weight"] = float(weight)
    return {key: value for key, value in fields.items() if value not in ("", [], None)}


def parse_description(text: str) -> dict:
    """A plain ``<stem>.txt`` description."""
    text = text.strip()
    return {"description": text} if text else {}
