"""Carrying file metadata into the library: at promotion, and on "re-read metadata from files"."""

from __future__ import annotations

import logging
import os
import sqlite3

from . import ReadReport, pending_found, preview_bytes, read_file_metadata, safetensors, store

logger = logging.getLogger(__name__)


def found_for(path: str, meta_text: str | None) -> dict:
    """What the scan stored for a pending entry; read now for entries scanned before it did."""
    found = pending_found(meta_text)
    return found if found is not None else read_file_metadata(path)


def preview_picture(images, sha256: str, path: str, found: dict | None) -> tuple[bytes | None, str | None]:
    """The bytes of the preview beside the model, if the model has no picture yet.

    Returns ``(data, warning)``; a preview that cannot be read only costs a warning.
    """
    preview = (found or {}).get("preview")
    if not preview or images.count(sha256) > 0:
        return None, None
    data = preview_bytes(path, preview)
    if not data:
        return None, f"preview {preview.get('file') or preview.get('embedded')!r} could not be read"
    return data, None


def add_preview(images, sha256: str, path: str, found: dict | None) -> tuple[int | None, str | None]:
    """Add the preview beside a library model as its first picture, if it has none yet.

    Returns ``(seq, warning)``; a picture that cannot be used only costs a warning.
    """
    data, warning = preview_picture(images, sha256, path, found)
    if data is None:
        return None, warning
    try:
        # "no picture yet" again under the store's lock: concurrent re-reads add it once
        return images.add_processed(sha256, images.process(sha256, data), first_only=True), None
    except Exception as exc:  # ImageError, UnsupportedImage, OSError: import the rest anyway
        return None, f"preview not imported: {_message(exc)}"


def _message(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc) or exc.__class__.__name__


def autov3_for(conn: sqlite3.Connection, sha256: str, path: str) -> str | None:
    """AutoV3 of a safetensors file not yet known (a second pass over the data section)."""
    if not safetensors.is_safetensors_name(path) or store.autov3_known(conn, sha256):
        return None
    return safetensors.autov3(path)


def warnings_of(summary: dict) -> list[str]:
    """Report lines for sidecars refused or not verified."""
    lines = [f"{r['file'] or r['source']} not applied: {r['reason']}" for r in summary["rejected"]]
    lines += [f"{source} sidecar could not be matched to this file's hash (imported, unverified)"
              for source in summary["unverified"]]
    return lines


def reread(conn: sqlite3.Connection, images, sha256s: list[str], job=None) -> dict:
    """Re-read header, sidecars and previews of library models; user-typed values stay."""
    report: dict = {"total": len(sha256s), "updated": [], "unchanged": [], "failed": [],
                    "warnings": []}
    read_report = ReadReport()
    if job is not None:
        job.set_totals(files=len(sha256s))
    for sha in sha256s:
        if job is not None:
            job.check_cancelled()
        row = conn.execute("SELECT path FROM models WHERE sha256 = ?", (sha,)).fetchone()
        if row is None:
            report["failed"].append({"sha256": sha, "error": "Model not found"})
        elif not row["path"] or not os.path.isfile(row["path"]):
            report["failed"].append({"sha256": sha, "error": "Model file not found"})
        else:
            path = row["path"]
            found = read_file_metadata(path)
            summary = store.apply_import(conn, sha, found, autov3=autov3_for(conn, sha, path))
            read_report.add(path, found, summary["rejected"])
            seq, warning = add_preview(images, sha, path, found)
            lines = warnings_of(summary) + ([warning] if warning else [])
            report["warnings"].extend({"sha256": sha, "warning": line} for line in lines)
            changed = summary["applied"] or seq is not None
            report["updated" if changed else "unchanged"].append(sha)
        if job is not None:
            job.advance(files=1)
    report["metadata"] = read_report.as_dict()
    return report
