"""The web panel: ``/``, its static files, and what the panel needs to know about this server."""

from __future__ import annotations

from flask import Blueprint, current_app, send_from_directory

from ..db.upgrades import CURRENT_VERSION
from ..security import normalized_origin
from ..state import get_state

bp = Blueprint("panel", __name__)


@bp.get("/")
def index():
    response = send_from_directory(current_app.static_folder, "index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/api/panel/config")
def panel_config():
    """Origins the panel may talk to (the ComfyUI page) and whether the library is writable."""
    return {
        "allowed_origins": [
            normalized_origin(o) for o in current_app.config.get("ALLOWED_ORIGINS") or ()
        ],
        "read_only_reason": get_state().read_only_reason,
        "schema_version": CURRENT_VERSION,
    }
