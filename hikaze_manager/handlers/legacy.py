"""Legacy (v1) migration API."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("legacy", __name__, url_prefix="/api/migration")
