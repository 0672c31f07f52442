"""Management API: batch edits, tag administration, duplicates, missing files, the file trash."""

from __future__ import annotations

import functools

from flask import Blueprint, current_app

from ..db import get_db, transaction
from ..errors import BadRequest, Forbidden, NotFound
from ..openapi import api_doc
from ..schemas.common import load_body
from ..schemas.manage import (
    DuplicatesReportSchema,
    MissingListSchema,
    ModelsRemoveSchema,
    ModelsSetTypeSchema,
    ModelTagsEditSchema,
    RemoveReportSchema,
    SetTypeReportSchema,
    SortKeysSchema,
    TagChangeReportSchema,
    TagDeleteSchema,
    TagEditReportSchema,
    TagMergeSchema,
    TagRenameSchema,
    TagUsageListSchema,
    TrashEntrySchema,
    TrashFileSchema,
    TrashListSchema,
    TrashRestoreSchema,
)
from ..security import LOOPBACK_NAMES, host_name, writes
from ..services import batch, duplicates, tag_admin, trash
from ..state import get_state

bp = Blueprint("manage", __name__, url_prefix="/api")


def file_route(view):
    """Routes that move model files: refused while the server is exposed without a token.

    The app-wide guards (Host allow-list, Origin, JSON content type, the token for remote clients)
    already apply; this closes the one gap of a server bound beyond loopback with no token set.
    """

    @functools.wraps(view)
    def guarded(*args, **kwargs):
        bind = host_name(str(current_app.config.get("HOST") or "127.0.0.1"))
        if bind not in LOOPBACK_NAMES and not current_app.config.get("AUTH_TOKEN"):
            raise Forbidden("file actions need an access token when the server is reachable "
                            "from other machines")
        return view(*args, **kwargs)

    return guarded


# -- batch edits of library models


@bp.post("/models/tags")
@api_doc("Add and remove tags on many models at once, all or nothing", body=ModelTagsEditSchema,
         response=TagEditReportSchema)
def edit_model_tags():
    body = load_body(ModelTagsEditSchema())
    report = batch.edit_tags(get_db(), body["sha256"], body["add"], body["remove"])
    return TagEditReportSchema().dump(report)


@bp.post("/models/set_type")
@api_doc("Set the type of many models, all or nothing", body=ModelsSetTypeSchema,
         response=SetTypeReportSchema)
def set_models_type():
    body = load_body(ModelsSetTypeSchema())
    return SetTypeReportSchema().dump(batch.set_type(get_db(), body["sha256"], body["type"]))


@bp.post("/models/remove")
@api_doc("Remove models from the library (rows, tag links, pictures; files stay)",
         body=ModelsRemoveSchema, response=RemoveReportSchema)
def remove_models():
    body = load_body(ModelsRemoveSchema())
    report = batch.remove_models(get_db(), get_state().images, body["sha256"])
    return RemoveReportSchema().dump(report)


@bp.get("/models/sort_keys")
@api_doc("File modification times and pending sizes, for sorting", response=SortKeysSchema)
def sort_keys():
    return SortKeysSchema().dump(duplicates.sort_keys(get_db()))


# -- tag administration


@bp.get("/tags/usage")
@api_doc("Every tag with how many models and pending models carry it",
         response=TagUsageListSchema)
def tag_usage():
    return TagUsageListSchema().dump({"tags": tag_admin.tag_usage(get_db())})


@bp.post("/tags/rename")
@api_doc("Rename a tag (onto an existing name: merge); dry_run counts only", body=TagRenameSchema,
         response=TagChangeReportSchema)
def rename_tag():
    body = load_body(TagRenameSchema())
    report = tag_admin.rename_tag(get_db(), body["id"], body["name"], body["dry_run"])
    return TagChangeReportSchema().dump(report)


@bp.post("/tags/merge")
@api_doc("Merge tags into one; dry_run counts only", body=TagMergeSchema,
         response=TagChangeReportSchema)
def merge_tags():
    body = load_body(TagMergeSchema())
    report = tag_admin.merge_tags(get_db(), body["source"], body["target"], body["dry_run"])
    return TagChangeReportSchema().dump(report)


@bp.post("/tags/delete")
@api_doc("Delete tags from every model; dry_run counts only", body=TagDeleteSchema,
         response=TagChangeReportSchema)
def delete_tags():
    body = load_body(TagDeleteSchema())
    return TagChangeReportSchema().dump(tag_admin.delete_tags(get_db(), body["id"], body["dry_run"]))


# -- read-only reports


@bp.get("/library/duplicates")
@api_doc("Same content at several paths, and same name with other content",
         response=DuplicatesReportSchema)
def list_duplicates():
    return DuplicatesReportSchema().dump(duplicates.find_duplicates(get_db()))


@bp.get("/library/missing")
@api_doc("Library models whose file is gone", response=MissingListSchema)
def list_missing():
    return MissingListSchema().dump({"models": duplicates.find_missing(get_db())})


# -- the file trash


def _retention_days() -> float:
    try:
        return max(0.0, float(current_app.config.get("TRASH_RETENTION_DAYS", 30)))
    except (TypeError, ValueError):
        return 30.0


@bp.get("/files/trash")
@api_doc("Model files in the trash (expired ones are purged first)", response=TrashListSchema)
@writes  # listing purges expired entries: same-origin only, like every write
@file_route
def list_trash():
    index = get_state().model_types.current()
    return TrashListSchema().dump(trash.list_trash(index, _retention_days()))


@bp.post("/files/trash")
@api_doc("Move a model file and its sidecars into the trash (confirm names the file)",
         body=TrashFileSchema, response=TrashEntrySchema, errors=(409,))
@file_route
def trash_file():
    body = load_body(TrashFileSchema())
    conn = get_db()
    sha = body.get("sha256")
    path = body.get("path")
    if sha is not None:
        row = conn.execute("SELECT path FROM models WHERE sha256 = ?", (sha,)).fetchone()
        if row is None:
            raise NotFound("Model not found")
        if not row[0]:  # a shared library's model that only other machines have
            raise NotFound("The model has no file on this machine")
        path = row[0]
    elif body["remove_from_library"]:
        raise BadRequest("remove_from_library needs sha256")
    entry = trash.trash_file(path, body["confirm"], get_state().model_types.current(), sha)
    entry["removed_from_library"] = False
    # a pending row for a file that is now in the trash could only fail to import; a restore and
    # a scan bring it back
    with transaction(conn):
        conn.executemany("DELETE FROM pending_import WHERE path = ?", [(f,) for f in entry["files"]])
    if sha is not None and body["remove_from_library"]:
        batch.remove_models(conn, get_state().images, [sha])
        entry["removed_from_library"] = True
    return TrashEntrySchema().dump(entry)


@bp.post("/files/restore")
@api_doc("Put a trashed file and its sidecars back", body=TrashRestoreSchema,
         response=TrashEntrySchema, errors=(409,))
@file_route
def restore_file():
    body = load_body(TrashRestoreSchema())
    return TrashEntrySchema().dump(trash.restore(body["id"], get_state().model_types.current()))
