"""File-metadata API: re-read headers, sidecars and previews of library models."""

from __future__ import annotations

from flask import Blueprint

from ..schemas.common import load_body
from ..openapi import api_doc
from ..schemas.file_metadata import RereadBodySchema, RereadReportSchema
from ..schemas.jobs import JobAcceptedSchema
from ..services.metadata.importing import reread
from ..state import get_state
from .common import run_or_submit, wants_async

bp = Blueprint("file_metadata", __name__, url_prefix="/api")


@bp.post("/models/reread_metadata")
@api_doc("Re-read the files of one or many models (typed values are kept); async runs a job",
         body=RereadBodySchema, response=RereadReportSchema, other_statuses={202: JobAcceptedSchema})
def reread_metadata():
    """Re-read the files of one or many models (``200`` report, or ``202`` and a job)."""
    data = load_body(RereadBodySchema())
    state = get_state()
    store, images = state.store, state.images
    shas = list(dict.fromkeys(data["sha256"]))

    def work(job):
        with store.connection() as conn:
            report = reread(conn, images, shas, job)
        return 200, RereadReportSchema().dump(report)

    return run_or_submit("reread_metadata", work, wants_async() or data["asynchronous"])
