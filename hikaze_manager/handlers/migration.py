"""Migration API: scan the model folders, the pending queue, promotion of pending models."""

from __future__ import annotations

from flask import Blueprint, request

from ..db import get_db
from ..errors import ServiceUnavailable
from ..schemas.common import json_body
from ..schemas.migration import (
    BatchPromotionReportSchema,
    ImportModelsSchema,
    PendingModelQuerySchema,
    PendingModelRecordSchema,
    PendingModelSimpleRecordSchema,
    ScanBodySchema,
    ScanReportSchema,
    load_or_400,
)
from ..security import writes
from ..services import pending
from ..services.promotion import normalize_strategy, promote_pending
from ..services.scan import scan_models
from ..state import get_state
from .cached import cached_json
from .common import run_or_submit, wants_async
from ..openapi import api_doc
from ..schemas.jobs import JobAcceptedSchema
from ..schemas.migration import PendingModelListSchema


bp = Blueprint("migration", __name__, url_prefix="/api")

NO_TYPES_MESSAGE = (
    "Model type cache is empty; start ComfyUI once to initialize types cache "
    "(or run standalone with --comfyui-dir or --models-dir)."
)


@bp.route("/scan", methods=["GET", "POST"])
@api_doc("Queue new model files as pending (GET kept for compatibility)", methods=["GET"],
         response=ScanReportSchema, errors=(409, 503), other_statuses={202: JobAcceptedSchema})
@api_doc("Queue new model files as pending; {\"async\": true} runs it as a job", methods=["POST"],
         body=ScanBodySchema, body_required=False, response=ScanReportSchema,
         other_statuses={202: JobAcceptedSchema})
@writes
def scan():
    """Queue new model files as pending (``GET`` kept for compatibility; it writes)."""
    options = {"asynchronous": False}
    if request.method == "POST" and (request.content_length or request.is_json):
        options = load_or_400(ScanBodySchema(), json_body())
    state = get_state()
    index = state.model_types.refresh()  # read ComfyUI's folders now, not once at start-up
    if not index.has_roots():
        raise ServiceUnavailable(NO_TYPES_MESSAGE)
    store = state.store

    def work(job):
        with store.connection() as conn:
            report = scan_models(conn, index, job)
        return 200, ScanReportSchema().dump(report)

    return run_or_submit("scan", work, wants_async() or options["asynchronous"])


@bp.get("/migration/pending_models")
@api_doc("Every pending model", response=PendingModelListSchema)
def pending_models():
    return cached_json("pending_models", (), lambda: {
        "models": PendingModelSimpleRecordSchema(many=True).dump(pending.list_pending(get_db()))
    })


@bp.get("/migration/pending_model")
@api_doc("One pending model in full", query=PendingModelQuerySchema,
         response=PendingModelRecordSchema)
def pending_model():
    pending_id = load_or_400(PendingModelQuerySchema(), request.args)["id"]
    return PendingModelRecordSchema().dump(pending.get_pending(get_db(), pending_id))


@bp.post("/migration/import_models")
@api_doc("Promote pending models (207 report, or 202 and a job)", body=ImportModelsSchema,
         response=BatchPromotionReportSchema, status=207,
         other_statuses={202: JobAcceptedSchema})
def import_models():
    """Promote pending models; ``207`` with a ``BatchPromotionReport`` (or ``202`` and a job)."""
    data = load_or_400(ImportModelsSchema(), json_body())
    strategy = normalize_strategy(data["conflict_strategy"])
    state = get_state()
    store, images, ids = state.store, state.images, data["id"]

    def work(job):
        with store.connection() as conn:
            report = promote_pending(conn, ids, strategy, images, job)
        return 207, BatchPromotionReportSchema().dump(report)

    return run_or_submit("import_models", work, wants_async() or data["asynchronous"])
