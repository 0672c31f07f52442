"""HTTP handlers: one blueprint per module."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint of the API and the panel."""
    from . import file_metadata, images, jobs, legacy, library, manage, migration, panel

    for module in (library, manage, images, migration, legacy, jobs, panel, file_metadata):
        app.register_blueprint(module.bp)
