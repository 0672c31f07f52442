"""Migration API."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("migration", __name__, url_prefix="/api")
