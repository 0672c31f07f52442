"""StabilityMatrix's ``<stem>.cm-info.json`` (ConnectedModelInfo, PascalCase)."""

from __future__ import annotations

from .civitai_info import civitai_link
from .textio import clean_text, word_list

SOURCE = "stability_matrix"
SUFFIXES = (".cm-info.json",)


def parse(data, stem: str, file_name: str) -> dict | None:
    """Fields of the sidecar."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    hashes = data.get("Hashes") if isinstance(data.get("Hashes"), dict) else {}
    thumb = clean_text(data.get("ThumbnailImageUrl")).replace("\\", "/").rsplit("/", 1)[-1]
    fields = {
        "name": clean_text(data.get("UserTitle")) or clean_text(data.get("ModelName")),
        "base_model": clean_text(data.get("BaseModel")),
        "trigger_words": word_list(data.get("TrainedWords")),
        "description": clean_text(data.get("ModelDescription"))
                       or clean_text(data.get("VersionDescription")),
        "link": civitai_link(data.get("ModelId"), data.get("VersionId")),
        "tags": word_list(data.get("Tags")),
        "author": clean_text(data.get("AuthorUsername")),
        "preview": thumb,
    }
    if isinstance(data.get("Nsfw"), bool):
        fields["nsfw"] = data["Nsfw"]
    sha = clean_text(hashes.get("SHA256")).lower()
    if len(sha) == 64:
        fields["sha256"] = sha
    return {key: value for key, value in fields.items() if value not in ("", [], None)}
