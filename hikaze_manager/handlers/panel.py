"""The web panel: ``/`` and its static files."""

from __future__ import annotations

from flask import Blueprint, current_app, send_from_directory

bp = Blueprint("panel", __name__)


@bp.get("/")
def index():
    response = send_from_directory(current_app.static_folder, "index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response
