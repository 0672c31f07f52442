"""The web panel: ``/``, its static files, and what the panel needs to know about this server."""

from __future__ import annotations

from flask import Blueprint, current_app, send_from_directory

from ..db.upgrades import CURRENT_VERSION
from ..security import normalized_origin
from ..state import get_state
from ..openapi import api_doc, build_spec
from ..schemas.jobs import PanelConfigSchema


bp = Blueprint("panel", __name__)


@bp.get("/")
@api_doc("The web panel", response={"type": "string"}, content="text/html")
def index():
    response = send_from_directory(current_app.static_folder, "index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/api/panel/config")
@api_doc("What the panel needs to know about this server", response=PanelConfigSchema)
def panel_config():
    """Origins the panel may talk to (the ComfyUI page) and whether the library is writable."""
    return {
        "allowed_origins": [
            normalized_origin(o) for o in current_app.config.get("ALLOWED_ORIGINS") or ()
        ],
        "read_only_reason": get_state().read_only_reason,
        "schema_version": CURRENT_VERSION,
    }


@bp.get("/api/openapi.json")
@api_doc("This OpenAPI 3 document", response={"type": "object"})
def openapi_document():
    """Built once per app: the routes do not change while it runs."""
    document = current_app.extensions.get("hikaze_openapi")
    if document is None:
        document = current_app.extensions["hikaze_openapi"] = build_spec(current_app)
    return document
