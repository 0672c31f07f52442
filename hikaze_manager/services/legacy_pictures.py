"""Legacy migration, the pictures: v1 images become picture sets before the one DB transaction.

Each model set goes through :func:`image_journal.add_set`: announced in the journal before it is
written and settled by the migration's transaction. A picture already there (a failed run left
it: the database went away before its undo could run) is reused, never added twice, and the
failed run's announcement is settled with this run's commit. A failed run undoes its own sets;
what it cannot reach (the database is gone) a retry reuses or start-up recovery removes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from ..errors import ApiError
from . import image_journal
from .image_processing import sniff_mime

logger = logging.getLogger(__name__)

MODEL, PENDING = "model", "pending"
MAX_IMAGE_BYTES = 64 * 1024 * 1024


def _read_image(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(path)
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise ValueError(f"image file is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    return path.read_bytes()


def message(exc: BaseException) -> str:
    """The one-line reason of an error, for a report's problem."""
    return getattr(exc, "message", None) or str(exc) or exc.__class__.__name__


def import_images(conn, actions, images_dir: Path, store, report, job) -> None:
    """Write the pictures of ``actions``; record each in ``action.added``.

    ``action.added``: ``(MODEL, sha, Journaled)`` or ``(PENDING, name, existed before the run)``.
    """
    try:  # an identical original already there is reused by the store: not ours to undo
        pending_before = set(os.listdir(store.pending_dir))
    except FileNotFoundError:
        pending_before = set()
    known = {
        (record[0], record[1])
        for record in conn.execute(
            "SELECT sha256, image_sha256 FROM legacy_imports WHERE image_sha256 IS NOT NULL"
        )
    }
    for action in actions:
        if not action.want_image:
            continue
        if job is not None:
            job.check_cancelled()
            job.advance(files=1, message=f"image {action.row.image}")
        row = action.row
        try:
            data = _read_image(images_dir / row.image)
        except FileNotFoundError:
            report.images_missing += 1
            report.problem(row, f"image file not found: {images_dir / row.image}")
            continue
        except (OSError, ValueError) as exc:
            report.image_errors += 1
            report.problem(row, f"image {row.image} cannot be read: {exc}")
            continue
        if action.kind == PENDING and sniff_mime(data[:16]) is None:
            # Pending originals are kept as they are and served later: images only.
            report.image_errors += 1
            report.problem(row, f"image {row.image} is not a PNG, JPEG, WebP or GIF file")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if action.kind == MODEL and (action.sha256, digest) in known:
            action.image_sha256 = digest  # this very picture was imported before
            continue
        try:
            if action.kind == MODEL:
                journaled = image_journal.add_set(conn, store, action.sha256, data)
                action.added = (MODEL, action.sha256, journaled) if journaled else None
                known.add((action.sha256, digest))
            else:
                stored = store.save_pending_image(row.image, data)
                action.added = (PENDING, stored, stored in pending_before)
        except (ApiError, OSError) as exc:
            report.image_errors += 1
            report.problem(row, f"image {row.image} could not be imported: {message(exc)}")
            continue
        action.image_sha256 = digest
        report.images_processed += 1


def settled(added: list[tuple]) -> list[int]:
    """The journal ids the migration's commit settles for these written pictures."""
    return [write_id for item in added if item[0] == MODEL for write_id in item[2].settled]


def remove_images(conn, store, added: list[tuple]) -> None:
    """Undo this run's image writes, newest first (sets by their journal entry)."""
    reachable = True
    left = 0
    for item in reversed(added):
        try:
            if item[0] == MODEL:
                if item[2].own is None:
                    continue  # reused: not this run's to remove
                if not reachable:
                    left += 1
                else:
                    reachable = image_journal.undo_quietly(conn, store, item[2].own)
            elif not item[2]:
                store.delete_pending_image(item[1])
        except Exception:  # keep undoing the rest; the leftover is only an extra picture
            logger.exception("[Hikaze] could not remove image %r added by a legacy migration", item)
    if left:
        logger.warning("[Hikaze] %d more picture set(s) of the failed v1 migration stay announced:"
                       " a retry reuses them, the next start removes the others", left)
