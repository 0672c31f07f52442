"""Images API."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("images", __name__, url_prefix="/api")
