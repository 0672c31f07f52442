"""HTTP handlers: one blueprint per module."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import BaseConverter

from ..db import ROW_ID_DIGITS


class RowIdConverter(BaseConverter):
    """``<rowid:x>``: 1 to 19 ASCII digits (``<int:>`` takes any Unicode digit and any length)."""

    regex = f"[0-9]{{1,{ROW_ID_DIGITS}}}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(int(value))


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint of the API and the panel."""
    from . import file_metadata, images, jobs, legacy, library, manage, migration, panel

    app.url_map.converters["rowid"] = RowIdConverter

    for module in (library, manage, images, migration, legacy, jobs, panel, file_metadata):
        app.register_blueprint(module.bp)
