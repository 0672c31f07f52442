"""ComfyUI-Model-Manager's ``<stem>.md``: YAML front matter, ``# Trigger Words``, description."""

from __future__ import annotations

from .textio import clean_text, word_list

SOURCE = "model_manager"
SUFFIXES = (".md",)


def _front_matter(lines: list[str]) -> tuple[dict, int]:
    """The simple ``key: value`` front matter PyYAML's dump writes (one nesting level read)."""
    if not lines or lines[0].strip() != "---":
        return {}, 0
    data: dict = {}
    parent = None
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return data, index + 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.strip().partition(":")
        if not sep:
            continue
        value = value.strip().strip("'\"")
        if line[:1] in " \t" and isinstance(parent, dict):
            parent[key.strip()] = value
        else:
            parent = {} if value == "" else None
            data[key.strip()] = parent if parent is not None else value
    return {}, 0  # no closing marker: not front matter


def parse_markdown(text: str) -> dict:
    """Fields of the file: front matter values, trigger words, and the rest as description."""
    lines = text.splitlines()
    front, start = _front_matter(lines)
    body = lines[start:]
    fields: dict = {
        "base_model": clean_text(front.get("baseModel")),
        "author": clean_text(front.get("author")),
    }
    page = clean_text(front.get("modelPage"))
    if page.startswith("https://"):
        fields["link"] = page
    hashes = front.get("hashes") if isinstance(front.get("hashes"), dict) else {}
    sha = clean_text(hashes.get("SHA256")).lower()
    if len(sha) == 64:
        fields["sha256"] = sha
    description: list[str] = []
    index = 0
    while index < len(body):
        line = body[index]
        if line.strip().lower() == "# trigger words":
            index += 1
            while index < len(body) and not body[index].strip():
                index += 1
            if index < len(body) and body[index].strip().lower() != "no trigger words":
                fields["trigger_words"] = word_list(body[index], split=",")
            index += 1
            continue
        description.append(line)
        index += 1
    text_body = "\n".join(description).strip()
    if text_body:
        fields["description"] = text_body
    return {key: value for key, value in fields.items() if value not in ("", [], None)}
