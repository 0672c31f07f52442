"""Metadata the files already carry: safetensors headers, other managers' sidecars, previews.

One module per format (``lora_manager``, ``stability_matrix``, ``a1111``, ``civitai_info``,
``model_manager``, ``safetensors``, ``previews``); each sidecar module has ``SOURCE``, ``SUFFIXES``
and ``parse(data, stem, file_name)``. :func:`read_file_metadata` reads everything beside one
model file into a JSON-able dict (stored with the pending entry); :func:`merge.resolve` applies
precedence once the file's SHA-256 is known; ``store`` writes it into the library.
"""

from __future__ import annotations

import os

from . import a1111, civitai_info, lora_manager, model_manager, previews, safetensors, stability_matrix
from .textio import SidecarError, loads_lenient, read_text

JSON_FORMATS = (lora_manager, stability_matrix, a1111, civitai_info)


def _stem(file_name: str) -> str:
    dot = file_name.rfind(".")
    return file_name[:dot] if dot > 0 else file_name


def _problem(found: dict, file: str, message: str) -> None:
    found["problems"].append({"file": file, "problem": message})


def _read_json_sidecars(found: dict, listing: previews.Listing, stem: str, file_name: str) -> None:
    for module in JSON_FORMATS:
        for suffix in module.SUFFIXES:
            name = listing.find(stem + suffix)
            if name is None or name == file_name:
                continue
            try:
                fields = module.parse(loads_lenient(read_text(listing.path(name))), stem, file_name)
            except (SidecarError, ValueError) as exc:
                _problem(found, name, str(exc))
                continue
            if fields:
                fields["file"] = name
                found["sidecars"][module.SOURCE] = fields
            break


def _read_text_sidecars(found: dict, listing: previews.Listing, stem: str) -> None:
    md = listing.find(stem + ".md")
    if md is not None:
        try:
            fields = model_manager.parse_markdown(read_text(listing.path(md)))
        except SidecarError as exc:
            _problem(found, md, str(exc))
        else:
            if fields:
                fields["file"] = md
                found["sidecars"][model_manager.SOURCE] = fields
    for suffix in a1111.DESCRIPTION_SUFFIXES:
        name = listing.find(stem + suffix)
        if name is None:
            continue
        try:
            extra = a1111.parse_description(read_text(listing.path(name)))
        except SidecarError as exc:
            _problem(found, name, str(exc))
            continue
        entry = found["sidecars"].setdefault(a1111.SOURCE, {"file": name})
        if extra and not entry.get("description"):
            entry["description"] = extra["description"]
        break


def _read_header(found: dict, path: str) -> None:
    try:
        header = safetensors.read_header(path)
    except safetensors.HeaderError as exc:
        _problem(found, os.path.basename(path), str(exc))
        return
    except OSError as exc:
        _problem(found, os.path.basename(path), f"cannot read header: {exc.strerror or exc}")
        return
    for warning in header.warnings:
        _problem(found, os.path.basename(path), warning)
    found["header_fields"] = safetensors.extract(header.metadata)
    found["header_metadata"] = safetensors.stored_metadata(header.metadata)
    found["training_tags"] = safetensors.training_tags(header.metadata)


def read_file_metadata(path: str, size: int | None = None,
                       listings: previews.ListingCache | None = None) -> dict:
    """Everything known about ``path`` from the file's header and the files beside it.

    Never raises for bad files: problems are collected in ``problems`` (file + message).
    A sidecar whose size claim disagrees is kept here and refused by :func:`merge.resolve`.
    """
    folder, file_name = os.path.split(path)
    stem = _stem(file_name)
    listing = (listings or previews.ListingCache()).get(folder)
    found: dict = {"sidecars": {}, "problems": [], "header_fields": None,
                   "header_metadata": None, "training_tags": [], "preview": None}
    if safetensors.is_safetensors_name(file_name):
        _read_header(found, path)
    _read_json_sidecars(found, listing, stem, file_name)
    _read_text_sidecars(found, listing, stem)
    hints = [found["sidecars"].get(s, {}).get("preview", "") for s in
             (lora_manager.SOURCE, stability_matrix.SOURCE)]
    name = previews.find_preview(listing, stem, hints)
    if name is not None:
        found["preview"] = {"file": name}
    elif (found["header_fields"] or {}).get("thumbnail"):
        found["preview"] = {"embedded": found["header_fields"]["thumbnail"]}
    return found


def preview_bytes(path: str, preview: dict | None) -> bytes | None:
    """The picture bytes of a preview recorded by :func:`read_file_metadata`, if still there."""
    if not preview:
        return None
    if preview.get("file"):
        return previews.read_preview(path, preview["file"])
    if preview.get("embedded"):
        return safetensors.thumbnail_bytes(path, preview["embedded"])
    return None


PENDING_KEY = "file_metadata"
MAX_NAMED_PROBLEMS = 200


class ReadReport:
    """What a scan or re-read found in files: counts, and each broken or refused file by name."""

    def __init__(self) -> None:
        self.models = 0
        self.sidecars = 0
        self.previews = 0
        self.problem_count = 0
        self.problems: list[dict] = []

    def add(self, path: str, found: dict, rejected: list[dict] | None = None) -> None:
        """Count one model's findings; ``rejected`` are sidecars refused as another file's."""
        self.models += 1
        self.sidecars += len(found.get("sidecars") or {})
        self.previews += 1 if found.get("preview") else 0
        folder = os.path.dirname(path)
        entries = [(p["file"], p["problem"]) for p in found.get("problems") or []]
        entries += [(r["file"], r["reason"]) for r in rejected or []]
        for file, problem in entries:
            self.problem_count += 1
            if len(self.problems) < MAX_NAMED_PROBLEMS:
                self.problems.append({"model": path, "file": os.path.join(folder, file),
                                      "problem": problem})

    def as_dict(self) -> dict:
        """The report's ``metadata`` part."""
        return {"models": self.models, "sidecars": self.sidecars, "previews": self.previews,
                "problems": self.problem_count, "problem_files": self.problems}


def read_for_pending(path: str, size: int | None, listings: previews.ListingCache,
                     report: ReadReport) -> dict:
    """Read one new model's files for its pending entry; size-mismatched sidecars are reported."""
    from .merge import resolve

    found = read_file_metadata(path, size, listings)
    report.add(path, found, resolve(found, None, size)["rejected"])
    return found


def pending_found(meta_text: str | None) -> dict | None:
    """What the scan stored with a pending entry, or None (scanned before this feature)."""
    import json

    from .textio import JSON_NUL, strip_nul

    try:
        meta = json.loads(meta_text) if meta_text else None
    except ValueError:
        return None
    if JSON_NUL in meta_text:  # scanned before NUL was dropped on reading: drop it now
        strip_nul(meta)
    found = meta.get(PENDING_KEY) if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else None
