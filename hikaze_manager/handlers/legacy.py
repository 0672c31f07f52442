"""Legacy (v1) migration API: find v1 databases and bring one over (stage 1)."""

from __future__ import annotations

import os

from flask import Blueprint, current_app

from ..config import ROOT
from ..db import get_db
from ..schemas.common import load_body
from ..schemas.legacy import (
    LegacyCandidateSchema,
    LegacyMigrateSchema,
    LegacyMigrationReportSchema,
)
from ..services import legacy, legacy_reader
from ..state import get_state
from .common import run_or_submit, wants_async
from ..openapi import api_doc
from ..schemas.jobs import JobAcceptedSchema
from ..schemas.legacy import LegacyCandidateListSchema


bp = Blueprint("legacy", __name__, url_prefix="/api/migration")


def _config_list(key: str) -> list[str]:
    """A list from config; a plain string (e.g. from the environment) is split on ``os.pathsep``."""
    value = current_app.config.get(key)
    if not value:
        return []
    if isinstance(value, str):
        return [part for part in value.split(os.pathsep) if part.strip()]
    return [str(part) for part in value]


@bp.get("/legacy_candidates")
@api_doc("Hikaze v1 databases found on this machine", response=LegacyCandidateListSchema)
def list_legacy_candidates():
    # v1 lived next to us under ComfyUI/custom_nodes: look in every sibling of our folder.
    search_dirs = _config_list("LEGACY_SEARCH_DIRS") or [str(ROOT.parent)]
    extra = _config_list("LEGACY_DB_PATHS") + _config_list("LEGACY_DB_PATH")
    conn = get_db()
    candidates = []
    for path in legacy_reader.find_candidates(search_dirs, extra):
        info = legacy_reader.probe_candidate(path)
        if info is None:
            continue
        info["migrated_rows"] = 0
        if info["source"]:
            info["migrated_rows"] = conn.execute(
                "SELECT COUNT(*) FROM legacy_imports WHERE source = ?", (info["source"],)
            ).fetchone()[0]
        candidates.append(info)
    return {"candidates": LegacyCandidateSchema(many=True).dump(candidates)}


@bp.post("/migrate_legacy_db")
@api_doc("Bring a v1 library over (200 report, or 202 and a job)", body=LegacyMigrateSchema,
         response=LegacyMigrationReportSchema, other_statuses={202: JobAcceptedSchema})
def migrate_legacy_db():
    body = load_body(LegacyMigrateSchema())
    # Validate and read v1 now, so a wrong path is a 4xx even when the work runs as a job.
    db_path = legacy_reader.check_legacy_db_path(body["legacy_db_path"])
    images_dir = legacy_reader.resolve_images_dir(body["legacy_images_dir"], db_path)
    library = legacy_reader.read_legacy_library(db_path)
    state = get_state()
    db_store, images, backups = state.store, state.images, state.paths.backups_dir

    def work(job):
        with db_store.connection() as conn:
            report = legacy.migrate_legacy_library(conn, library, images_dir, images, backups, job)
        return 200, LegacyMigrationReportSchema().dump(report)

    return run_or_submit("legacy_migration", work, wants_async({"async": body["run_async"]}))
